"""Maker-checker over the API: nobody approves their own request, approval executes the
core verb exactly once, large amounts need a manager, branch rules apply to checkers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.errors import MemberNotAllowed, PinInvalid
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members import registration as members_core
from core.payments.mpesa import flows as mpesa
from db.models import AuditEvent, JournalEntry, Member, OutboxMessage
from db.models_loans import Loan, LoanRepayment
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.e2e.api.test_members_api import JPEG, PNG, upload
from tests.loanutil import disbursed_loan


def pending(api: FlaskClient, who: Staffer) -> list[int]:
    return [r["id"] for r in api.get("/api/v1/approvals", headers=auth(who)).json["items"]]


def test_kyc_approval_needs_documents_a_second_person_and_runs_once(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member = make_member()
    officer, other_officer = make_staff("loan_officer"), make_staff("loan_officer")
    url = f"/api/v1/members/{member.id}/kyc/approve"
    early = api.post(url, headers=auth(officer), json={})
    assert early.status_code == 403
    assert "id_front" in early.json["detail"]
    upload(api, officer, member.id, "id_front", JPEG)
    upload(api, officer, member.id, "id_back", PNG)
    asked = api.post(url, headers=auth(officer), json={"note": "checked at the counter"})
    assert asked.status_code == 202
    req = asked.json
    assert req["status"] == "pending"
    assert req["id"] in pending(api, other_officer)
    assert api.post(url, headers=auth(officer), json={}).status_code == 409  # already pending

    own = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(officer), json={})
    assert own.status_code == 403
    assert own.json["code"] == "self_approval"
    with unit_of_work(session_factory) as s:
        assert s.get_one(Member, member.id).status == "pending_kyc"

    done = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(other_officer), json={})
    assert done.status_code == 200
    assert done.json["status"] == "approved"
    assert done.json["checker_id"] == other_officer.id
    again = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(other_officer), json={})
    assert again.status_code == 409
    with unit_of_work(session_factory) as s:
        assert s.get_one(Member, member.id).status == "active"
        sms = s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == "kyc_approved"
            )
        ).all()
    assert len(sms) == 1
    assert str(member.member_number) in sms[0]


def test_rejected_request_changes_nothing(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member = make_member(status="active")
    maker, checker = make_staff("manager"), make_staff("manager")
    req = api.post(
        f"/api/v1/members/{member.id}/status", headers=auth(maker), json={"status": "suspended"}
    ).json
    r = api.post(
        f"/api/v1/approvals/{req['id']}/reject", headers=auth(checker), json={"note": "no reason"}
    )
    assert r.json["status"] == "rejected"
    with unit_of_work(session_factory) as s:
        assert s.get_one(Member, member.id).status == "active"


def test_suspension_approved_then_deposits_refused(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    member = make_member(status="active")
    maker, checker = make_staff("manager"), make_staff("manager")
    req = api.post(
        f"/api/v1/members/{member.id}/status", headers=auth(maker), json={"status": "suspended"}
    ).json
    assert (
        api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(checker), json={}).json[
            "status"
        ]
        == "approved"
    )
    detail = api.get(f"/api/v1/members/{member.id}", headers=auth(checker)).json
    assert detail["status"] == "suspended"
    bad = api.post(
        f"/api/v1/members/{member.id}/status", headers=auth(maker), json={"status": "suspended"}
    )
    assert bad.status_code == 403  # suspended -> suspended is not a transition


def test_large_adjustment_needs_a_manager_and_posts_one_entry(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
) -> None:
    maker, officer, checker = (
        make_staff("manager"),
        make_staff("loan_officer"),
        make_staff("manager"),
    )
    body = {"debit_account": "1000", "credit_account": "2200", "amount_cents": 60_000_00,
            "memo": "Bank deposit found on statement"}  # fmt: skip
    req = api.post("/api/v1/ledger/adjustments", headers=auth(maker), json=body).json
    assert req["checker_permission"] == "approvals:decide_large"
    refused = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(officer), json={})
    assert refused.status_code == 403
    assert "manager" in refused.json["detail"]
    ok = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(checker), json={})
    assert ok.json["status"] == "approved"
    with unit_of_work(session_factory) as s:
        entries = s.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.kind == "adjustment.manual")
        )
        assert entries == 1
        assert (
            ledger.get_balance(s, ledger.account_id_by_code(s, "2200")).balance_cents == 60_000_00
        )
    small = api.post("/api/v1/ledger/adjustments", headers=auth(maker),
                     json={**body, "amount_cents": 100_00}).json  # fmt: skip
    assert small["checker_permission"] == "approvals:decide"
    unknown = api.post("/api/v1/ledger/adjustments", headers=auth(maker),
                       json={**body, "credit_account": "9999"})  # fmt: skip
    assert unknown.status_code == 422


def test_suspense_item_is_reassigned_to_the_member_once(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    maker, checker = make_staff("manager"), make_staff("manager")
    with unit_of_work(session_factory) as s:  # a paybill payment to an account number nobody has
        payment = mpesa.C2BIn("QKT1234567", datetime.now(UTC), 700_00, "NOSUCHACCT", "174379")
        assert mpesa.record_c2b(s, deps, payment) == "suspense"
    items = api.get("/api/v1/suspense", headers=auth(checker)).json["items"]
    (item,) = [i for i in items if i["source_ref"] == "QKT1234567"]
    assert item["amount_cents"] == 700_00
    body = {"item_id": item["id"], "member_id": member.id, "note": "member showed the M-Pesa SMS"}
    move = api.post("/api/v1/suspense/reassignments", headers=auth(maker), json=body)
    assert move.status_code == 202
    assert move.json["amount_cents"] == 700_00
    done = api.post(f"/api/v1/approvals/{move.json['id']}/approve", headers=auth(checker), json={})
    assert done.json["status"] == "approved"
    detail = api.get(f"/api/v1/members/{member.id}", headers=auth(checker)).json
    assert detail["balances"]["savings_cents"] == 700_00
    with unit_of_work(session_factory) as s:
        assert ledger.get_balance(s, ledger.account_id_by_code(s, "2200")).balance_cents == 0
        sms = s.scalars(select(OutboxMessage.body).where(OutboxMessage.member_id == member.id,
                        OutboxMessage.template == "deposit_received")).all()  # fmt: skip
    assert len(sms) == 1
    again = api.post("/api/v1/suspense/reassignments", headers=auth(maker), json=body)
    assert again.status_code == 409
    assert again.json["code"] == "suspense_already_assigned"
    assert api.get("/api/v1/suspense", headers=auth(checker)).json["items"] == []


def test_a_parked_loan_payment_is_moved_to_the_members_loan_by_two_people(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    maker, checker = make_staff("manager"), make_staff("manager")
    with unit_of_work(session_factory) as s:
        loan, borrower, _ = disbursed_loan(s, deps)
        closed, closer, _ = disbursed_loan(s, deps, term=1, amount_cents=100_000)
        for payment in (  # closes the second loan; a mistyped loan reference: suspense
            mpesa.C2BIn("QKL0000001", datetime.now(UTC), 100_000, closed.reference, "174379"),
            mpesa.C2BIn("QKL0000002", datetime.now(UTC), 700_00, "LZZZZZZZ", "174379"),
        ):
            mpesa.record_c2b(s, deps, payment)
        ids = (loan.id, loan.reference, borrower.id, closed.reference, closer.id)
        owed_before = ledger.get_balance(s, loan.account_id).balance_cents
    loan_id, reference, member_id, closed_reference, closer_id = ids
    items = api.get("/api/v1/suspense", headers=auth(checker)).json["items"]
    (item,) = [i for i in items if i["source_ref"] == "QKL0000002"]
    url, entries = "/api/v1/suspense/reassignments", journal_count(session_factory)

    def ask(member: int, target: object) -> Any:
        body = {"item_id": item["id"], "member_id": member, "target": target, "note": "SMS seen"}
        return api.post(url, headers=auth(maker), json=body)

    for member, target in (
        (member_id, "L123"),  # not a loan reference
        (member_id, "L" * 10_000),
        (member_id, 5),
        (closer_id, reference),  # another member's loan
        (member_id, "LZZZZZZZ"),  # no such loan
        (closer_id, closed_reference),  # repaid: savings instead
    ):
        refused = ask(member, target)
        assert refused.status_code == 422, (target, refused.json)
    assert journal_count(session_factory) == entries and pending(api, checker) == []
    move = ask(member_id, reference.lower())
    assert move.status_code == 202
    assert move.json["payload"]["target"] == reference  # as the loan has it
    done = api.post(f"/api/v1/approvals/{move.json['id']}/approve", headers=auth(checker), json={})
    assert done.json["status"] == "approved", done.json
    with unit_of_work(session_factory) as s:
        loan = s.get_one(Loan, loan_id)
        assert ledger.get_balance(s, loan.account_id).balance_cents == owed_before - 700_00
        assert ledger.get_balance(s, ledger.account_id_by_code(s, "2200")).balance_cents == 0
        [repaid] = s.scalars(select(LoanRepayment).where(LoanRepayment.loan_id == loan_id)).all()
        assert (repaid.source, repaid.receipt, repaid.amount_cents) == ("mpesa", "QKL0000002",
                                                                         700_00)  # fmt: skip
        assert done.json["result"]["entry"] == s.scalar(
            select(JournalEntry.reference).where(JournalEntry.id == repaid.entry_id)
        )
        [audit] = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "loan.repayment",
                                     AuditEvent.target_id == str(loan_id))
        ).all()  # fmt: skip
        assert (audit.actor_type, audit.actor_id) == ("staff", checker.id)
        sms = s.scalars(select(OutboxMessage.body).where(OutboxMessage.member_id == member_id,
                        OutboxMessage.template == "loan_repayment")).all()  # fmt: skip
        assert len(sms) == 1 and "KES 700 received for loan" in sms[0]
        assert verify_ledger(s).ok
    again = ask(member_id, reference)
    assert (again.status_code, again.json["code"]) == (409, "suspense_already_assigned")


def journal_count(session_factory: sessionmaker[Session]) -> int:
    with unit_of_work(session_factory) as s:
        return int(s.scalar(select(func.count()).select_from(JournalEntry)) or 0)


def test_approval_that_no_longer_fits_fails_and_writes_nothing(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member = make_member(status="active")
    maker, checker = make_staff("manager"), make_staff("manager")
    req = api.post(f"/api/v1/members/{member.id}/status", headers=auth(maker),
                   json={"status": "suspended"}).json  # fmt: skip
    with unit_of_work(session_factory) as s:  # meanwhile the member exited through another channel
        members_core.set_status(s, member.id, "exited")
    r = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(checker), json={})
    assert r.status_code == 200
    assert r.json["status"] == "failed"
    assert r.json["result"]["error"] == "member_not_allowed"
    with unit_of_work(session_factory) as s:
        assert s.get_one(Member, member.id).status == "exited"


def test_pin_reset_sends_a_code_the_member_redeems_once(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    teller, officer = make_staff("teller"), make_staff("loan_officer")
    # In person: without a SIM-swap verdict (no provider here) a remote reset is refused.
    body = {"in_person": True}
    req = api.post(f"/api/v1/members/{member.id}/pin-reset", headers=auth(teller), json=body).json
    assert (
        api.post(
            f"/api/v1/approvals/{req['id']}/approve", headers=auth(teller), json={}
        ).status_code
        == 403
    )
    ok = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(officer), json={})
    assert ok.json["status"] == "approved"
    with unit_of_work(session_factory) as s:
        sms = s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.template == "pin_reset_code", OutboxMessage.member_id == member.id
            )  # fmt: skip
        ).one()
    code = sms.split("code is ")[1][:6]
    assert api.get(f"/api/v1/members/{member.id}", headers=auth(officer)).json["pin_reset_pending"]
    with session_factory() as s, pytest.raises(PinInvalid):
        members_core.redeem_pin_reset(
            s, deps, member.id, "000000" if code != "000000" else "111111", "7391"
        )
    with unit_of_work(session_factory) as s:
        members_core.redeem_pin_reset(s, deps, member.id, code, "7391")
    with unit_of_work(session_factory) as s:
        members_core.verify_pin(s, deps, member.id, "7391")
    with session_factory() as s, pytest.raises(MemberNotAllowed):
        members_core.redeem_pin_reset(s, deps, member.id, code, "8402")


def test_branch_checker_cannot_see_or_decide_other_branch_requests(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    member = make_member(branch="Kisumu", status="active")
    maker = make_staff("manager")
    req = api.post(f"/api/v1/members/{member.id}/pin-reset", headers=auth(maker), json={}).json
    nairobi = make_staff("loan_officer", branch="Nairobi")
    assert req["id"] not in pending(api, nairobi)
    assert api.get(f"/api/v1/approvals/{req['id']}", headers=auth(nairobi)).status_code == 404
    r = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(nairobi), json={})
    assert r.status_code == 404


@pytest.mark.slow
def test_two_checkers_approving_at_once_execute_it_once(
    committed_pg: Engine,
    deps: CoreDeps,
) -> None:
    from core.approvals import engine as approvals
    from core.kernel.permissions import SYSTEM
    from core.staff import accounts as staff_core
    from db.session import make_session_factory

    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        maker = staff_core.create_staff(s, deps, SYSTEM, username="maker1", full_name="M",
                                        role="manager", password="a good long passphrase")  # fmt: skip
        checkers = [
            staff_core.create_staff(
                s,
                deps,
                SYSTEM,
                username=f"checker{i}",
                full_name="C",
                role="manager",
                password="a good long passphrase",
            )  # fmt: skip
            for i in range(2)
        ]
        req = approvals.request_approval(
            s, deps, staff_core.principal_for(maker), "ledger.adjustment",
            payload={"debit_account": "1000", "credit_account": "2200", "amount_cents": 5_00,
                     "memo": "race test"},
            large_threshold_cents=10**9,
        )  # fmt: skip
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(checker_id: int) -> None:
        with unit_of_work(factory) as s:
            who = staff_core.principal_for(staff_core.get_staff(s, checker_id))
            s.rollback()
            barrier.wait()
            try:
                outcomes.append(approvals.decide(s, deps, who, req.id, approve=True).status)
            except approvals.AlreadyDecided:
                outcomes.append("already")

    threads = [threading.Thread(target=approve, args=(c.id,)) for c in checkers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already", "approved"]
    with unit_of_work(factory) as s:
        count = s.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.kind == "adjustment.manual")
        )
    assert count == 1


def test_suspense_pages_reach_every_item_once(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    with unit_of_work(session_factory) as s:
        for n in range(5):
            payment = mpesa.C2BIn(f"QKP{n:07d}", datetime.now(UTC), 100_00, "NOSUCHACCT", "174379")
            assert mpesa.record_c2b(s, deps, payment) == "suspense"
    manager = make_staff("manager")
    seen: list[str] = []
    url = "/api/v1/suspense?limit=2"
    while True:
        page = api.get(url, headers=auth(manager)).json
        seen += [item["source_ref"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/api/v1/suspense?limit=2&cursor={page['next_cursor']}"
    assert seen == [f"QKP{n:07d}" for n in range(5)]
