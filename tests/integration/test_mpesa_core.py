"""The M-Pesa verbs on PostgreSQL and on the embedded SQLite default (the demo's database)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import FeeBand, MpesaPolicy
from core.savings import accounts as savings
from db.models_mpesa import B2CPayout, MpesaCallback
from workers.runner import InProcessJobs

POLICY = MpesaPolicy(tariff=(FeeBand(100_000, 1_000), FeeBand(7_000_000, 5_000)))


@dataclass(frozen=True)
class NeverSwapped:
    ok: bool = True
    swapped: bool | None = False
    last_swap_at: datetime | None = None
    error: str | None = None

    def check(self, msisdn: str) -> NeverSwapped:
        return self


def member(session: Session, deps: CoreDeps, phone: str, savings_kes: int = 0) -> int:
    m = members.register_member(
        session,
        deps,
        full_name="Grace Akinyi",
        msisdn=phone,
        national_id=phone[-8:],
        consent=True,
    )
    members.set_status(session, m.id, "active")
    if savings_kes:
        savings.credit_member(
            session,
            deps,
            savings.Credit(
                member_id=m.id,
                target="savings",
                amount_cents=Money.of(savings_kes).cents,
                source=savings.CreditSource.CASH,
                idempotency_key=f"seed-{m.id}",
                business_key=f"deposit_received:seed-{m.id}",
            ),
        )
    return m.id


def test_paybill_withdrawal_and_callback_bookkeeping_on_both_databases(
    any_session: Session, deps: CoreDeps
) -> None:
    s = any_session
    member_id = member(s, deps, "+254712000301", savings_kes=2_000)
    number = members.get_member(s, member_id).member_number
    assert number is not None
    callback_id = mpesa.store_callback(
        s, deps, kind="c2b_confirmation", headers={"X": "1"}, body=b"{}"
    )
    payment = mpesa.C2BIn("QAB1234567", datetime.now(UTC), 30_000, f"{number}D", "174379")
    assert mpesa.record_c2b(s, deps, payment, callback_id=callback_id) == "credited"
    assert mpesa.record_c2b(s, deps, payment) == "duplicate"
    stored = s.get(MpesaCallback, callback_id)
    assert stored is not None and (stored.status, stored.ref) == ("processed", "QAB1234567")
    ids = members.member_account_ids(s, member_id)
    assert ledger.get_balance(s, ids["deposits"]).balance_cents == 30_000
    parked = mpesa.C2BIn("QAB7654321", datetime.now(UTC), 5_000, "nobody", "174379")
    assert mpesa.record_c2b(s, deps, parked) == "suspense"

    w = mpesa.request_withdrawal(
        s,
        deps,
        member_id=member_id,
        amount_cents=50_000,
        policy=POLICY,
        sim_swap=NeverSwapped(),
        idempotency_key="sqlite-w",
    )
    assert (w.fee_cents, w.total_cents) == (1_000, 51_000)
    job = mpesa.claim_b2c(s, deps, w.payout_id)
    assert job is not None and not job.resent
    assert mpesa.claim_b2c(s, deps, w.payout_id) is None
    row = s.get(B2CPayout, w.payout_id)
    assert row is not None
    outcome = mpesa.B2COutcome(row.originator_conversation_id, 0, "ok", "AG_1", "QXY0000001")
    assert mpesa.settle_b2c(s, deps, outcome) == "paid"
    assert mpesa.settle_b2c(s, deps, outcome) == "duplicate"
    assert ledger.get_balance(s, ids["savings"]).balance_cents == 200_000 - 51_000
    assert verify_ledger(s).ok


def test_the_in_process_runner_runs_jobs_by_dotted_path_and_survives_a_failing_job() -> None:
    jobs = InProcessJobs()
    try:
        jobs.enqueue("workers.runner.resolve", "workers.runner.resolve")
        jobs.enqueue("workers.runner.resolve", "not.a.job")  # raises inside: logged only
        jobs.drain()
    finally:
        jobs.close()
    try:
        InProcessJobs(synchronous=True).enqueue("os.system", "true")
    except ValueError as exc:
        assert "workers/" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("jobs outside workers/ must be refused")


def test_reconciliation_moves_stale_requests_on(any_session: Session, deps: CoreDeps) -> None:
    from dataclasses import replace
    from datetime import timedelta

    from db.models_mpesa import StkRequest

    s = any_session
    member_id = member(s, deps, "+254712000302", savings_kes=1_000)
    queued = mpesa.start_deposit(
        s,
        deps,
        member_id=member_id,
        target="savings",
        amount_cents=5_000,
        policy=POLICY,
        idempotency_key="q",
    )
    sending = mpesa.start_deposit(
        s,
        deps,
        member_id=member_id,
        target="savings",
        amount_cents=6_000,
        policy=POLICY,
        idempotency_key="s",
    )
    assert mpesa.claim_stk_push(s, deps, sending.request_id) is not None
    w = mpesa.request_withdrawal(
        s,
        deps,
        member_id=member_id,
        amount_cents=20_000,
        policy=POLICY,
        sim_swap=NeverSwapped(),
        idempotency_key="w",
    )
    assert mpesa.claim_b2c(s, deps, w.payout_id) is not None  # then the worker died
    later = replace(deps, now=lambda: datetime.now(UTC) + timedelta(minutes=5))
    due = mpesa.due_for_reconciliation(s, later, older_than=timedelta(minutes=3))
    assert (due.stk_expired, due.stk_unknown, due.b2c_stuck) == (1, 1, 1)
    assert due.b2c_to_send == []  # the call may have reached Daraja: asked about, not resent
    assert [p for p, _ in due.b2c_to_query] == [w.payout_id]
    statuses = {r.id: r.status for r in s.query(StkRequest)}
    assert statuses == {queued.request_id: "failed", sending.request_id: "unknown"}
    assert mpesa.claim_b2c(s, deps, w.payout_id) is None
    much_later = replace(deps, now=lambda: datetime.now(UTC) + timedelta(hours=3))
    assert mpesa.due_for_reconciliation(s, much_later, older_than=timedelta(0)).stk_expired == 1
    stk = s.get(StkRequest, sending.request_id)
    assert stk is not None and stk.status == "failed"
    assert verify_ledger(s).ok


_PHONES = itertools.count(1)
EVENTS = (
    "claim",
    "accepted",
    "send_unknown",
    "send_refused",
    "send_unsent",
    "result_ok",
    "result_fail",
    "timeout",
    "status_completed",
    "status_failed",
    "status_not_found",
    "reconcile",
)


def _apply_event(s: Session, deps: CoreDeps, payout_id: int, event: str) -> None:
    from datetime import timedelta

    row = s.get(B2CPayout, payout_id)
    assert row is not None
    ocid = row.originator_conversation_id
    if event == "claim":
        mpesa.claim_b2c(s, deps, payout_id)
    elif event == "accepted":
        if row.status == "sending":
            mpesa.record_b2c_accepted(s, deps, payout_id, conversation_id="AG_x")
    elif event.startswith("send_"):
        mpesa.record_b2c_send_error(
            s,
            deps,
            payout_id,
            refused=event == "send_refused",
            may_have_taken_effect=event == "send_unknown",
            detail=event,
        )
    elif event.startswith("result_") or event == "timeout":
        outcome = mpesa.B2COutcome(ocid, 0 if event == "result_ok" else 2040, event, "AG_x", "QRC1")
        mpesa.settle_b2c(s, deps, outcome, timeout=event == "timeout")
    elif event.startswith("status_"):
        mpesa.settle_status(
            s,
            deps,
            mpesa.StatusOutcome(
                query_id="q",
                original_originator_conversation_id=ocid,
                found=event != "status_not_found",
                completed=event == "status_completed",
                failed=event == "status_failed",
                receipt="QRC2",
            ),
        )
    else:
        mpesa.due_for_reconciliation(s, deps, older_than=timedelta(seconds=-1))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(st.sampled_from(EVENTS), max_size=14))
def test_any_order_of_payout_events_posts_or_releases_the_hold_at_most_once(
    db_session: Session, deps: CoreDeps, events: list[str]
) -> None:
    """Whatever arrives in whatever order (results, timeouts, status answers, crashes and
    resends), a payout's hold is posted or released at most once, a final status never
    changes, and the ledger matches the payout's status."""
    from db.models import Hold, JournalEntry

    s = db_session
    phone = f"+25471240{next(_PHONES):04d}"  # one fresh member per example
    member_id = member(s, deps, phone, savings_kes=1_000)
    w = mpesa.request_withdrawal(
        s,
        deps,
        member_id=member_id,
        amount_cents=20_000,
        policy=POLICY,
        sim_swap=NeverSwapped(),
        idempotency_key=f"p{member_id}",
    )
    final_status = None
    for event in events:
        _apply_event(s, deps, w.payout_id, event)
        row = s.get(B2CPayout, w.payout_id)
        assert row is not None
        if final_status is not None:
            assert row.status == final_status  # settled stays settled
        if row.status in ("succeeded", "failed"):
            final_status = row.status
    row = s.get(B2CPayout, w.payout_id)
    assert row is not None
    hold = s.get(Hold, row.hold_id)
    assert hold is not None
    savings_id = members.member_account_ids(s, member_id)["savings"]
    balance = ledger.get_balance(s, savings_id)
    posted = s.scalar(
        select(func.count())
        .select_from(JournalEntry)
        .where(JournalEntry.idempotency_key == f"mpesa:b2c:{row.originator_conversation_id}")
    )
    expected = {"succeeded": ("posted", 1), "failed": ("released", 0)}.get(
        row.status, ("pending", 0)
    )
    assert (hold.status, posted) == expected
    assert balance.balance_cents == 100_000 - (21_000 if row.status == "succeeded" else 0)
    assert balance.held_cents == (21_000 if hold.status == "pending" else 0)
