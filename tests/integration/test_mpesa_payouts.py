"""A payout that may have reached Daraja is never sent again by itself.

Daraja is not known to refuse a repeated OriginatorConversationID, so resending a
payout whose first request may have arrived could pay the member twice for one debit.
Paying late is better: such a payout waits for its result, a status answer, or staff
(``payout.resolve``, maker-checker). Only a request that provably never left is sent
again.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from db.models import Hold
from db.models_mpesa import B2CPayout
from tests.integration.test_mpesa_core import EVENTS, POLICY, NeverSwapped, _apply_event, member

T0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
_PHONES = itertools.count(1)


def at(deps: CoreDeps, when: datetime) -> CoreDeps:
    return replace(deps, now=lambda: when)


def withdrawal(s: Session, deps: CoreDeps) -> int:
    member_id = member(s, deps, f"+25471250{next(_PHONES):04d}", savings_kes=1_000)
    w = mpesa.request_withdrawal(
        s, deps, member_id=member_id, amount_cents=20_000, policy=POLICY,
        sim_swap=NeverSwapped(), idempotency_key=f"review-{member_id}",
    )  # fmt: skip
    return w.payout_id


def status(s: Session, payout_id: int) -> str:
    row = s.get(B2CPayout, payout_id)
    assert row is not None
    s.refresh(row)
    return row.status


def hold_status(s: Session, payout_id: int) -> str:
    row = s.get_one(B2CPayout, payout_id)
    hold = s.get_one(Hold, row.hold_id)
    s.refresh(hold)
    return hold.status


def not_found(s: Session, deps: CoreDeps, payout_id: int) -> str:
    ocid = s.get_one(B2CPayout, payout_id).originator_conversation_id
    answer = mpesa.StatusOutcome(
        query_id="q-1", original_originator_conversation_id=ocid, found=False,
        completed=False, failed=False, detail="2032 Transaction not found",
    )  # fmt: skip
    return mpesa.settle_status(s, deps, answer)


def test_a_payout_whose_worker_died_during_the_call_is_asked_about_never_resent(
    any_session: Session, deps: CoreDeps
) -> None:
    s, now = any_session, at(deps, T0)
    payout_id = withdrawal(s, now)
    assert mpesa.claim_b2c(s, now, payout_id) is not None  # then the worker died mid-call
    later = at(deps, T0 + timedelta(minutes=10))
    due = mpesa.due_for_reconciliation(s, later, older_than=timedelta(minutes=3))
    assert due.b2c_to_send == []
    assert due.b2c_stuck == 1
    assert status(s, payout_id) == "unknown"
    assert [p for p, _ in due.b2c_to_query] == [payout_id]
    assert mpesa.claim_b2c(s, later, payout_id) is None
    assert hold_status(s, payout_id) == "pending"  # the money stays held, not released


def test_a_not_found_status_answer_parks_the_payout_for_staff(
    any_session: Session, deps: CoreDeps
) -> None:
    s, now = any_session, at(deps, T0)
    payout_id = withdrawal(s, now)
    assert mpesa.claim_b2c(s, now, payout_id) is not None
    mpesa.record_b2c_send_error(
        s, now, payout_id, refused=False, may_have_taken_effect=True, detail="read timeout"
    )
    assert not_found(s, now, payout_id) == "review"
    assert status(s, payout_id) == "review"
    assert hold_status(s, payout_id) == "pending"
    later = at(deps, T0 + timedelta(hours=2))
    due = mpesa.due_for_reconciliation(s, later, older_than=timedelta(minutes=3))
    assert payout_id not in due.b2c_to_send
    assert payout_id not in [p for p, _ in due.b2c_to_query]
    assert mpesa.claim_b2c(s, later, payout_id) is None
    assert [p.payout_id for p in mpesa.list_payouts(s, status="review")] == [payout_id]
    # The result still settles it if it comes at last.
    ocid = s.get_one(B2CPayout, payout_id).originator_conversation_id
    paid = mpesa.B2COutcome(ocid, 0, "ok", "AG_1", "QRV0000001")
    assert mpesa.settle_b2c(s, later, paid) == "paid"
    assert hold_status(s, payout_id) == "posted"
    assert verify_ledger(s).ok


def test_a_request_that_never_left_is_sent_again(any_session: Session, deps: CoreDeps) -> None:
    s, now = any_session, at(deps, T0)
    payout_id = withdrawal(s, now)
    assert mpesa.claim_b2c(s, now, payout_id) is not None
    mpesa.record_b2c_send_error(
        s, now, payout_id, refused=False, may_have_taken_effect=False, detail="refused to connect"
    )
    assert status(s, payout_id) == "requested"
    job = mpesa.claim_b2c(s, now, payout_id)
    assert job is not None and job.resent  # same id, and told an earlier call was made


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(st.sampled_from(EVENTS), max_size=14))
def test_no_order_of_events_sends_a_payout_again_once_it_may_have_reached_daraja(
    db_session: Session, deps: CoreDeps, events: list[str]
) -> None:
    """Whatever happens, a payout is handed to a sender again only after a send that
    provably never left (refused to connect, our own credentials refused)."""
    s = db_session
    payout_id = withdrawal(s, deps)
    maybe_reached = False
    for event in events:
        before = status(s, payout_id)
        _apply_event(s, deps, payout_id, event)
        after = status(s, payout_id)
        if event == "claim" and before == "requested":
            assert not maybe_reached, "a payout that may have reached Daraja was sent again"
            maybe_reached = after == "sending"
        elif event == "send_unsent" and before == "sending":
            maybe_reached = False
    assert verify_ledger(s).ok
    savings_id = members.member_account_ids(s, s.get_one(B2CPayout, payout_id).member_id)["savings"]
    assert ledger.get_balance(s, savings_id).balance_cents in (100_000, 100_000 - 21_000)
