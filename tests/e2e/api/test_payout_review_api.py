"""Payouts only staff can settle, over the API: listed, resolved by maker-checker once.

A payout whose request may have reached M-Pesa and that a status query reports "not
found" is never sent again by itself (it could pay twice); staff look in the org
portal and one asks to resend it, release the hold or record it paid, another approves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy
from core.savings import accounts as savings
from db.models import Hold, Member, OutboxMessage
from db.models_mpesa import B2CPayout
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

URL = "/api/v1/mpesa/payouts"


@dataclass(frozen=True)
class NeverSwapped:
    ok: bool = True
    swapped: bool | None = False
    last_swap_at: None = None
    error: None = None

    def check(self, msisdn: str) -> NeverSwapped:
        return self


def parked_payout(
    session_factory: sessionmaker[Session], deps: CoreDeps, member: Member, key: str
) -> B2CPayout:
    """A KES 500 withdrawal whose send timed out and whose status M-Pesa did not find."""
    with unit_of_work(session_factory) as s:
        savings.credit_member(
            s, deps,
            savings.Credit(
                member_id=member.id, target="savings", amount_cents=Money.of(2_000).cents,
                source=savings.CreditSource.CASH, idempotency_key=f"seed-{key}",
                business_key=f"deposit_received:seed-{key}",
            ),
        )  # fmt: skip
        s.commit()
        w = mpesa.request_withdrawal(
            s, deps, member_id=member.id, amount_cents=500_00, policy=MpesaPolicy(),
            sim_swap=NeverSwapped(), idempotency_key=key,
        )  # fmt: skip
        assert mpesa.claim_b2c(s, deps, w.payout_id) is not None
        mpesa.record_b2c_send_error(
            s, deps, w.payout_id, refused=False, may_have_taken_effect=True, detail="timeout"
        )
        row = s.get_one(B2CPayout, w.payout_id)
        answer = mpesa.StatusOutcome(
            "q", row.originator_conversation_id, found=False, completed=False, failed=False,
            detail="2032 not found",
        )  # fmt: skip
        assert mpesa.settle_status(s, deps, answer) == "review"
        s.expunge(row)
        return row


def available(session_factory: sessionmaker[Session], member: Member) -> int:
    with unit_of_work(session_factory) as s:
        account_id = members.member_account_ids(s, member.id)["savings"]
        return ledger.get_balance(s, account_id).available_cents


def resolve(
    api: FlaskClient, maker: Staffer, checker: Staffer, payout_id: int, **body: object
) -> dict[str, object]:
    asked = api.post(f"{URL}/{payout_id}/resolution", headers=auth(maker), json=body)
    assert asked.status_code == 202, asked.json
    assert asked.json["action"] == "payout.resolve"
    done = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(checker), json={})
    assert done.status_code == 200 and done.json is not None
    return dict(done.json)


def test_a_parked_payout_is_listed_and_released_once_by_two_people(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    row = parked_payout(session_factory, deps, member, "rel-1")
    maker, checker, auditor = make_staff("manager"), make_staff("manager"), make_staff("auditor")
    listed = api.get(URL, headers=auth(auditor)).json["items"]
    assert [(p["id"], p["status"], p["reference"]) for p in listed] == [
        (row.id, "review", row.reference)
    ]
    assert "*" in listed[0]["msisdn_masked"]
    assert available(session_factory, member) == 2_000_00 - 500_00 - row.fee_cents  # held
    # Asking alone does nothing; the maker cannot approve it.
    asked = api.post(
        f"{URL}/{row.id}/resolution", headers=auth(maker),
        json={"resolution": "release", "note": "not in the org portal"},
    )  # fmt: skip
    assert asked.status_code == 202
    own = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(maker), json={})
    assert own.status_code == 403
    assert api.post(
        f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(checker), json={}
    ).json["status"] == "approved"  # fmt: skip
    assert available(session_factory, member) == 2_000_00
    with unit_of_work(session_factory) as s:
        payout = s.get_one(B2CPayout, row.id)
        assert payout.status == "failed"
        assert s.get_one(Hold, payout.hold_id).status == "released"
        told = s.scalars(
            select(OutboxMessage.template).where(OutboxMessage.member_id == member.id)
        ).all()
        assert "withdrawal_failed" in told
        assert verify_ledger(s).ok
    assert api.get(URL, headers=auth(auditor)).json["items"] == []
    # Settled: a second request for it is refused.
    again = api.post(
        f"{URL}/{row.id}/resolution", headers=auth(maker), json={"resolution": "resend"}
    )
    assert again.status_code == 409
    assert again.json["code"] == "payout_not_in_review"


def test_a_parked_payout_recorded_paid_posts_the_hold_with_its_receipt(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    row = parked_payout(session_factory, deps, member, "paid-1")
    maker, checker = make_staff("manager"), make_staff("manager")
    no_receipt = api.post(
        f"{URL}/{row.id}/resolution", headers=auth(maker), json={"resolution": "paid"}
    )
    assert no_receipt.status_code == 422
    result = resolve(api, maker, checker, row.id, resolution="paid", receipt="QPD1234567")
    assert result["status"] == "approved"
    with unit_of_work(session_factory) as s:
        payout = s.get_one(B2CPayout, row.id)
        assert (payout.status, payout.receipt) == ("succeeded", "QPD1234567")
        account_id = members.member_account_ids(s, member.id)["savings"]
        balance = ledger.get_balance(s, account_id)
        assert (balance.balance_cents, balance.held_cents) == (
            2_000_00 - 500_00 - row.fee_cents,
            0,
        )
        assert verify_ledger(s).ok


def test_a_parked_payout_resent_goes_out_again_flagged_as_a_resend(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    row = parked_payout(session_factory, deps, member, "resend-1")
    maker, checker = make_staff("manager"), make_staff("manager")
    resolve(api, maker, checker, row.id, resolution="resend", note="not in the org portal")
    with unit_of_work(session_factory) as s:
        assert s.get_one(B2CPayout, row.id).status == "requested"
        job = mpesa.claim_b2c(s, deps, row.id)
    assert job is not None and job.resent  # same id; a refusal now means "maybe paid"
    assert job.originator_conversation_id == row.originator_conversation_id


def test_a_result_that_arrives_first_makes_the_approval_fail_and_change_nothing(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    row = parked_payout(session_factory, deps, member, "late-1")
    maker, checker = make_staff("manager"), make_staff("manager")
    asked = api.post(
        f"{URL}/{row.id}/resolution", headers=auth(maker), json={"resolution": "release"}
    )
    assert asked.status_code == 202
    with unit_of_work(session_factory) as s:  # M-Pesa's result comes at last: it was paid
        paid = mpesa.B2COutcome(row.originator_conversation_id, 0, "ok", "AG_9", "QLT1234567")
        assert mpesa.settle_b2c(s, deps, paid) == "paid"
    done = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(checker), json={})
    assert done.json["status"] == "failed"
    assert done.json["result"]["error"] == "payout_not_in_review"
    with unit_of_work(session_factory) as s:
        assert s.get_one(B2CPayout, row.id).status == "succeeded"
        assert verify_ledger(s).ok


def test_a_possible_duplicate_is_listed_linked_and_closed_by_two_people(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    """An STK push settled by the status query (no receipt), then the paybill confirmation
    of the same payment: parked, linked to the push; staff close it as one payment."""
    from datetime import timedelta

    from core.payments.mpesa.rules import account_reference
    from db.models_mpesa import SuspenseItem

    member = make_member(status="active")
    with unit_of_work(session_factory) as s:
        started = mpesa.start_deposit(
            s, deps, member_id=member.id, target="savings", amount_cents=700_00,
            policy=MpesaPolicy(), idempotency_key="twin-api",
        )  # fmt: skip
        assert mpesa.claim_stk_push(s, deps, started.request_id) is not None
        mpesa.record_stk_accepted(
            s, deps, started.request_id, checkout_request_id="ws_CO_twin_api",
            merchant_request_id="m-twin",
        )  # fmt: skip
        assert mpesa.settle_stk(s, deps, mpesa.StkOutcome("ws_CO_twin_api", 0)) == "credited"
        reference = account_reference(str(member.member_number), "savings")
        paid = mpesa.C2BIn("RTWINAPI01", deps.now() + timedelta(minutes=1), 700_00, reference, "")
        assert mpesa.record_c2b(s, deps, paid) == "suspense"
    maker, checker = make_staff("manager"), make_staff("manager")
    [item] = api.get("/api/v1/suspense", headers=auth(maker)).json["items"]
    assert (item["reason"], item["stk_request_id"]) == ("possible_duplicate", started.request_id)
    assert item["c2b_payment_id"] is not None
    with unit_of_work(session_factory) as s:
        parked = ledger.get_balance(s, ledger.account_id_by_code(s, "2200")).balance_cents
    url = f"/api/v1/mpesa/suspense-items/{item['id']}/duplicate"
    asked = api.post(url, headers=auth(maker), json={"note": "one receipt in the org portal"})
    assert asked.status_code == 202 and asked.json["member_id"] == member.id
    done = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(checker), json={})
    assert done.json["status"] == "approved"
    assert api.get("/api/v1/suspense", headers=auth(maker)).json["items"] == []
    closed = api.get("/api/v1/suspense?status=duplicate", headers=auth(maker)).json["items"]
    assert [i["id"] for i in closed] == [item["id"]]
    with unit_of_work(session_factory) as s:
        assert s.get_one(SuspenseItem, item["id"]).status == "duplicate"
        suspense = ledger.get_balance(s, ledger.account_id_by_code(s, "2200")).balance_cents
        assert suspense == parked - 700_00  # the parked copy left suspense
        account_id = members.member_account_ids(s, member.id)["savings"]
        assert ledger.get_balance(s, account_id).balance_cents == 700_00
        assert verify_ledger(s).ok
    again = api.post(url, headers=auth(maker), json={})
    assert again.status_code == 409
