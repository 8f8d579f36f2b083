"""Member exit on real PostgreSQL (core.members.exit; docs/members/exit.md): the notice
stops new loans and pledges, the run waits for the notice period (the injected clock), a
guarantor or a shortfall blocks it with the reason, a manager approves before money moves,
and the approved exit repays every loan from deposits and savings through the one
repayment use case, refunds exactly the rest, closes the accounts at zero and leaves a
ledger that verifies. Run twice: once."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, MemberNotAllowed
from core.kernel.money import Money
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.loans import book, guarantees
from core.loans.errors import GuaranteeRefused, LoanRefused
from core.members import exit as member_exit
from core.members.exit import ExitChannel, ExitPolicy, SharesOnExit
from core.members.registration import member_account_ids
from core.savings.accounts import Credit, CreditSource, credit_member, transfer_own
from db.models import Account, ApprovalRequest, JournalEntry, Member, OutboxMessage, StaffUser
from db.models_exit import MemberExit
from db.models_loans import Loan, LoanRepayment
from db.session import make_session_factory, unit_of_work
from tests.loanutil import disbursed_loan, funded_member, make_product
from tests.ussdutil import Phone, make_member
from tests.workerprocs import run_manage

KES = 100
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 10:00 in Nairobi
POLICY = ExitPolicy(notice_days=60)
THRESHOLD = 50_000 * KES


def at(deps: CoreDeps, when: datetime) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: when)


def staff(s: Session, role: str) -> Principal:
    name = f"{role}.{uuid4().hex[:6]}"
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def balances(s: Session, member: Member) -> dict[str, int]:
    ids = member_account_ids(s, member.id)
    return {p: ledger.get_balance(s, ids[p]).balance_cents for p in ids}


def bank(s: Session) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, SystemAccount.BANK)).balance_cents


def sms(s: Session, member: Member, template: str) -> list[str]:
    return list(
        s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == template
            )
        )
    )


def add_shares(s: Session, deps: CoreDeps, member: Member, cents: int) -> None:
    key = f"shares:{member.id}:{uuid4().hex[:8]}"
    credit_member(s, deps, Credit(member.id, "shares", cents, CreditSource.CASH, key, key))


def give_notice(s: Session, deps: CoreDeps, member: Member) -> MemberExit:
    row, created = member_exit.request_exit(
        s, deps, member_id=member.id, reason="moving to Mombasa", policy=POLICY,
        channel=ExitChannel.STAFF,
    )  # fmt: skip
    assert created
    return row


def run_and_approve(s: Session, deps: CoreDeps, member: Member) -> ApprovalRequest:
    maker, manager = staff(s, "manager"), staff(s, "manager")
    report = member_exit.exit_run(s, deps, maker, policy=POLICY,
                                  large_threshold_cents=THRESHOLD)  # fmt: skip
    [(member_id, request_id)] = report.asked
    assert member_id == member.id
    done = approvals.decide(s, deps, manager, request_id, approve=True, note="exit")
    assert done.status == "approved", done.result
    s.expire_all()
    return done


# ------------------------------------------------------------------ the whole exit


def test_an_exit_offsets_the_loan_refunds_the_rest_and_closes_everything(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = at(deps, T0)
    loan, member, _ = disbursed_loan(s, d0, amount_cents=60_000 * KES, deposits_cents=50_000 * KES,
                                     savings_cents=3_000 * KES)  # fmt: skip
    add_shares(s, d0, member, 2_000 * KES)
    row = give_notice(s, d0, member)
    assert row.due_on.isoformat() == "2026-05-01"
    assert "01/05/2026" in sms(s, member, "exit_notice")[0]

    # Notice given: no new loan (not active), no pledge for anyone.
    product = make_product(s, d0, fees=[], guarantor_policy="none", rounding="cent",
                           auto_approve_ceiling_cents=0)  # fmt: skip
    with pytest.raises(LoanRefused) as refused:
        book.apply_for_loan(s, d0, member.id, product.code, 5_000 * KES, 6, "staff", "apply-leaver")
    assert refused.value.reasons[0] == "not_active"
    other = funded_member(s, d0, deposits_cents=10_000 * KES, name="Otieno Kamau")
    pledged = make_product(s, d0, fees=[], rounding="cent", auto_approve_ceiling_cents=0)
    application = book.apply_for_loan(s, d0, other.id, pledged.code, 20_000 * KES, 6, "staff",
                                      "apply-other")  # fmt: skip
    with pytest.raises(GuaranteeRefused) as no_pledge:
        guarantees.request_guarantee(
            s, d0, application_id=application.id, borrower_id=other.id,
            guarantor=member.member_number or "", amount_cents=5_000 * KES,
        )  # fmt: skip
    assert no_pledge.value.context["reason"] == "guarantor_leaving"

    # Before the notice is over the run does nothing.
    maker = staff(s, "manager")
    early = member_exit.exit_run(s, at(deps, T0 + timedelta(days=59)), maker, policy=POLICY,
                                 large_threshold_cents=THRESHOLD)  # fmt: skip
    assert (early.asked, early.blocked) == ((), ())

    d60 = at(deps, T0 + timedelta(days=60))
    before = balances(s, member)
    plan = member_exit.plan(s, d60, member.id, POLICY)
    assert plan.blockers == ()
    bank_before = bank(s)
    done = run_and_approve(s, d60, member)
    result = member_exit.Exited(**json.loads(done.result or "{}"))
    owed = plan.loans_offset_cents
    assert owed > 60_000 * KES - 10_000 * KES  # two instalments paid of six: not yet
    expected = before["savings"] + before["deposits"] + before["shares"] - owed
    assert result.refund_cents == plan.refund_cents == expected
    assert result.loans_offset_cents == owed and result.shares_cents == 2_000 * KES
    # Every account of the member at zero, closed; the loan closed; the member exited.
    assert balances(s, member) == {"savings": 0, "deposits": 0, "shares": 0}
    closed = s.scalars(select(Account.closed_at).where(Account.member_id == member.id,
                                                        Account.purpose != "loan")).all()  # fmt: skip
    assert len(closed) == 3 and all(c is not None for c in closed)
    loan = s.get_one(Loan, loan.id)
    assert loan.status == "closed"
    assert ledger.get_balance(s, loan.account_id).balance_cents == 0
    assert s.get_one(Member, member.id).status == "exited"
    assert bank_before - bank(s) == expected  # the refund left the bank, to the cent
    # Through the one repayment use case, from savings; the member told at each step.
    [repaid] = s.scalars(select(LoanRepayment).where(LoanRepayment.loan_id == loan.id,
                                                     LoanRepayment.source == "savings"))  # fmt: skip
    assert repaid.amount_cents == owed and repaid.closed_loan
    assert sms(s, member, "loan_repaid")
    [told] = sms(s, member, "exit_done")
    assert result.refund_reference and result.refund_reference in told
    kinds = set(s.scalars(select(JournalEntry.kind).where(
        JournalEntry.idempotency_key.like(f"member.exit:{row.id}:%"))))  # fmt: skip
    assert kinds == {"member.exit_transfer", "loan.repayment", "member.exit_refund"}
    assert verify_ledger(s).ok

    # Idempotent: the run again asks nothing, the exit again writes nothing.
    entries = s.scalar(select(func.count()).select_from(JournalEntry))
    again = member_exit.exit_run(s, d60, maker, policy=POLICY, large_threshold_cents=THRESHOLD)
    assert (again.asked, again.blocked) == ((), ())
    replay = member_exit.exit_member(s, d60, row.id, approval_id=done.id)
    assert not replay.created and replay.refund_cents == expected
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries


# ------------------------------------------------------------------ what stops an exit


def test_a_guarantor_is_blocked_until_the_pledge_is_released(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = at(deps, T0)
    _, _, guarantor = disbursed_loan(s, d0, amount_cents=50_000 * KES,
                                     deposits_cents=20_000 * KES,
                                     guarantor_deposits_cents=50_000 * KES,
                                     pledge_cents=30_000 * KES)  # fmt: skip
    assert guarantor is not None
    give_notice(s, d0, guarantor)
    d60 = at(deps, T0 + timedelta(days=60))
    maker = staff(s, "manager")
    entries = s.scalar(select(func.count()).select_from(JournalEntry))
    for _ in range(2):  # twice: one SMS
        report = member_exit.exit_run(s, d60, maker, policy=POLICY,
                                      large_threshold_cents=THRESHOLD)  # fmt: skip
        assert report.blocked == ((guarantor.id, "guarantees_loan"),)
    row = member_exit.exit_of(s, guarantor.id)
    assert row is not None and (row.status, row.blocked_reason) == ("blocked", "guarantees_loan")
    [blocked] = member_exit.plan(s, d60, guarantor.id, POLICY).blockers
    assert "must be released or replaced" in blocked[1]
    assert len(sms(s, guarantor, "exit_blocked")) == 1
    assert s.scalar(select(func.count()).select_from(ApprovalRequest)) == 0
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries
    assert s.get_one(Member, guarantor.id).status == "active"


def test_owing_more_than_deposits_and_savings_and_shares_to_transfer_are_refused(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = at(deps, T0)
    _, member, _ = disbursed_loan(s, d0, amount_cents=60_000 * KES, deposits_cents=30_000 * KES)
    # The loan's money moved to share capital: deposits alone cannot offset the loan.
    transfer_own(s, d0, member_id=member.id, from_purpose="savings", to_purpose="shares",
                 amount=Money(60_000 * KES), idempotency_key=f"to-shares-{member.id}")  # fmt: skip
    give_notice(s, d0, member)
    d60 = at(deps, T0 + timedelta(days=60))
    strict = ExitPolicy(60, SharesOnExit.TRANSFER_REQUIRED)
    reasons = [r for r, _ in member_exit.plan(s, d60, member.id, strict).blockers]
    assert reasons == ["owes_more_than_savings", "shares_to_transfer"]
    report = member_exit.exit_run(s, d60, staff(s, "manager"), policy=strict,
                                  large_threshold_cents=THRESHOLD)  # fmt: skip
    assert report.blocked == ((member.id, "owes_more_than_savings"),)
    # A staff request with a bad reason changes nothing.
    with pytest.raises(InvalidInput):
        member_exit.request_exit(s, d0, member_id=member.id, reason=" x ", policy=POLICY,
                                 channel=ExitChannel.STAFF)  # fmt: skip


def test_the_run_is_approved_by_a_manager_not_its_maker(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = at(deps, T0)
    member = funded_member(s, d0, deposits_cents=1_000 * KES, savings_cents=500 * KES)
    give_notice(s, d0, member)
    d60 = at(deps, T0 + timedelta(days=60))
    maker = staff(s, "manager")
    [(_, request_id)] = member_exit.exit_run(
        s, d60, maker, policy=POLICY, large_threshold_cents=THRESHOLD
    ).asked
    with pytest.raises(approvals.SelfApproval):
        approvals.decide(s, d60, maker, request_id, approve=True)
    with pytest.raises(approvals.NotAChecker):
        approvals.decide(s, d60, staff(s, "loan_officer"), request_id, approve=True)
    assert balances(s, member)["deposits"] == 1_000 * KES  # nothing moved yet
    rejected = approvals.decide(s, d60, staff(s, "manager"), request_id, approve=False)
    assert rejected.status == "rejected"
    row = member_exit.exit_of(s, member.id)
    assert row is not None and row.status == "notice"  # asked again by the next run
    assert member_exit.exit_run(s, d60, maker, policy=POLICY,
                                large_threshold_cents=THRESHOLD).asked  # fmt: skip


# ------------------------------------------------------------------ the property


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    deposits=st.integers(20_000 * KES, 80_000 * KES),
    savings=st.integers(0, 5_000 * KES),
    shares=st.integers(0, 3_000 * KES),
    borrowed=st.sampled_from([0, 10_000 * KES, 45_000 * KES]),
    days=st.integers(60, 200),
)
def test_the_refund_is_deposits_savings_and_shares_less_the_loans_exactly(
    db_session: Session, deps: CoreDeps, deposits: int, savings: int, shares: int, borrowed: int,
    days: int,
) -> None:  # fmt: skip
    s = db_session
    s.begin_nested()
    try:
        d0 = at(deps, T0)
        if borrowed:
            _, member, _ = disbursed_loan(s, d0, amount_cents=borrowed, deposits_cents=deposits,
                                          savings_cents=savings, term=6)  # fmt: skip
        else:
            member = funded_member(s, d0, deposits_cents=deposits, savings_cents=savings)
        if shares:
            add_shares(s, d0, member, shares)
        before = balances(s, member)
        give_notice(s, d0, member)
        dn = at(deps, T0 + timedelta(days=days))
        owed = member_exit.plan(s, dn, member.id, POLICY).loans_offset_cents
        bank_before = bank(s)
        done = run_and_approve(s, dn, member)
        refund = json.loads(done.result or "{}")["refund_cents"]
        assert refund == before["savings"] + before["deposits"] + before["shares"] - owed
        assert bank_before - bank(s) == refund
        assert balances(s, member) == {"savings": 0, "deposits": 0, "shares": 0}
        assert verify_ledger(s).ok
    finally:
        s.rollback()


def test_leaving_on_ussd_confirms_behind_the_pin_and_gives_notice_once(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = make_member(s, deps)
    phone = Phone(client, member.msisdn)
    phone.dial()
    assert phone.send("3") == "CON Enter your PIN:"
    assert phone.send("4826").endswith("1. Change language\n2. Leave the SACCO\n0 Back 00 Home")
    confirm = phone.send("2")
    assert confirm.startswith("CON Leave the SACCO? After 60 days' notice")
    assert member_exit.exit_of(s, member.id) is None  # nothing before "1"
    done = phone.send("1")
    row = member_exit.exit_of(s, member.id)
    assert row is not None and row.channel == "ussd" and row.status == "notice"
    assert (
        done == f"END Notice received. Your exit is due {row.due_on:%d/%m/%Y}; staff will "
        "contact you. We will SMS you."
    )
    assert len(sms(s, member, "exit_notice")) == 1
    # Cancelling changes nothing; asking again keeps the first notice.
    again = Phone(client, member.msisdn)
    again.dial()
    again.send("3")
    again.send("4826")
    again.send("2")
    assert again.send("2").startswith("END Cancelled")
    assert len(sms(s, member, "exit_notice")) == 1


# ------------------------------------------------------------------ a deposit racing the exit


def race(
    factory: sessionmaker[Session], when: CoreDeps, manager: Principal, request_id: int,
    member_id: int, key: str,
) -> str:  # fmt: skip
    """The manager approves the exit while a teller credits cash to the member, at once."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    outcome: list[str] = []

    def approve() -> None:
        try:
            barrier.wait()
            with unit_of_work(factory) as s:
                outcome.append(approvals.decide(s, when, manager, request_id, approve=True).status)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def deposit() -> None:
        try:
            barrier.wait()
            with unit_of_work(factory) as s:
                credit = Credit(member_id, "savings", 250 * KES, CreditSource.CASH, key, key)
                credit_member(s, when, credit)
            outcome.append("deposited")
        except MemberNotAllowed:
            outcome.append("refused")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=approve), threading.Thread(target=deposit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert "approved" in outcome
    return next(o for o in outcome if o != "approved")


def test_a_deposit_racing_the_exit_is_refunded_with_it_or_refused(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    """A real thread approves the exit while another credits cash to the member: either the
    deposit is in first and the exit refunds it too, or it finds the member exited and is
    refused. Never money left in a closed account."""
    factory = make_session_factory(committed_pg)
    d60 = at(deps, T0 + timedelta(days=60))
    for round_ in range(3):
        with unit_of_work(factory) as s:
            member = funded_member(s, at(deps, T0), deposits_cents=4_000 * KES,
                                   savings_cents=600 * KES)  # fmt: skip
            give_notice(s, at(deps, T0), member)
            maker, manager = staff(s, "manager"), staff(s, "manager")
            [(_, request_id)] = member_exit.exit_run(
                s, d60, maker, policy=POLICY, large_threshold_cents=THRESHOLD
            ).asked
            member_id, bank_before = member.id, bank(s)
        outcome = race(factory, d60, manager, request_id, member_id, f"race:{member_id}:{round_}")
        with unit_of_work(factory) as s:
            member = s.get_one(Member, member_id)
            assert member.status == "exited"
            assert balances(s, member) == {"savings": 0, "deposits": 0, "shares": 0}
            cash_in = 250 * KES if outcome == "deposited" else 0
            row = member_exit.exit_of(s, member_id)
            assert row is not None and row.refund_cents == 4_600 * KES + cash_in
            assert bank(s) - bank_before == cash_in - row.refund_cents
            assert verify_ledger(s).ok


def test_manage_py_exit_run_asks_a_manager_once(committed_pg: Engine, deps: CoreDeps) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:  # the real clock: a notice of 0 days is due today
        member = funded_member(s, deps, deposits_cents=1_000 * KES)
        member_exit.request_exit(s, deps, member_id=member.id, reason="leaving",
                                 policy=ExitPolicy(0), channel=ExitChannel.STAFF)  # fmt: skip
        maker = staff(s, "manager")
        member_id = member.id
    assert run_manage("exit-run", "--maker", "nobody.here").returncode == 1
    first = run_manage("exit-run", "--maker", maker.name)
    assert first.returncode == 0, first.stderr
    assert "1 put to a manager, 0 blocked, 0 already waiting" in first.stdout
    assert f"member {member_id}: approval request" in first.stdout
    again = run_manage("exit-run", "--maker", maker.name)
    assert "0 put to a manager, 0 blocked, 1 already waiting" in again.stdout
    with unit_of_work(factory) as s:
        [req] = s.scalars(select(ApprovalRequest).where(ApprovalRequest.member_id == member_id))
        assert (req.action, req.status, req.checker_permission) == (
            "member.exit", "pending", "approvals:decide_large",
        )  # fmt: skip
        assert balances(s, s.get_one(Member, member_id))["deposits"] == 1_000 * KES


def test_a_member_with_money_is_not_exited_by_a_status_change(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = funded_member(s, deps, savings_cents=10 * KES)
    empty = funded_member(s, deps)
    maker = staff(s, "manager")
    with pytest.raises(MemberNotAllowed) as refused:
        approvals.request_approval(s, deps, maker, "member.status", payload={"status": "exited"},
                                   member_id=member.id, large_threshold_cents=THRESHOLD)  # fmt: skip
    assert refused.value.context["reason"] == "use_exit"
    req = approvals.request_approval(s, deps, maker, "member.status",
                                     payload={"status": "exited"}, member_id=empty.id,
                                     large_threshold_cents=THRESHOLD)  # fmt: skip
    assert approvals.decide(s, deps, staff(s, "manager"), req.id, approve=True).status == "approved"
    assert s.get_one(Member, empty.id).status == "exited"


# ------------------------------------------------------------------ further savings accounts


def test_an_exit_empties_and_closes_the_members_further_savings_accounts(
    db_session: Session, deps: CoreDeps
) -> None:
    """A holiday account's balance offsets the loan with the rest and is refunded; the
    account is closed at zero with the three others (the bug: it was left open, full)."""
    from core.savings import member_accounts, products

    s = db_session
    d0 = at(deps, T0)
    products.create_product(
        s, d0, staff(s, "manager"), "HOLI",
        products.parse_terms({**products.DEFAULTS, "name": "Holiday", "kind": "ordinary_savings"}),
    )  # fmt: skip
    loan, member, _ = disbursed_loan(s, d0, amount_cents=20_000 * KES, deposits_cents=10_000 * KES,
                                     savings_cents=1_000 * KES)  # fmt: skip
    holiday = member_accounts.open_savings_account(s, d0, member_id=member.id,
                                                   product_code="HOLI")  # fmt: skip
    key = f"holi:{member.id}"
    credit_member(s, d0, Credit(member.id, "@HOLI", 7_500 * KES, CreditSource.CASH, key, key))
    # A direct status change to exited is refused while the holiday account holds money.
    with pytest.raises(MemberNotAllowed):
        member_exit.check_direct_exit(s, member.id)
    row = give_notice(s, d0, member)
    d60 = at(deps, T0 + timedelta(days=60))
    before = balances(s, member)
    plan = member_exit.plan(s, d60, member.id, POLICY)
    assert plan.further_cents == 7_500 * KES
    assert [(f.account_id, f.code) for f in plan.further] == [(holiday.account_id, "HOLI")]
    expected = (before["savings"] + before["deposits"] + before["shares"] + 7_500 * KES
                - plan.loans_offset_cents)  # fmt: skip
    assert plan.refund_cents == expected
    bank_before = bank(s)
    done = run_and_approve(s, d60, member)
    result = member_exit.Exited(**json.loads(done.result or "{}"))
    assert result.refund_cents == expected
    assert bank_before - bank(s) == expected
    holi = s.get_one(Account, holiday.account_id)
    assert holi.balance_cents == 0 and holi.closed_at is not None
    assert ledger.get_balance(s, holiday.account_id).balance_cents == 0
    assert member_accounts.savings_accounts(s, member.id) == []
    assert s.get_one(Loan, loan.id).status == "closed"
    assert verify_ledger(s).ok
    entries = s.scalar(select(func.count()).select_from(JournalEntry))
    assert not member_exit.exit_member(s, d60, row.id, approval_id=done.id).created
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries


def test_the_holiday_accounts_shortfall_and_hold_count(db_session: Session, deps: CoreDeps) -> None:
    """Further savings count towards what can offset a loan: without them the member owes
    more than deposits and savings; with them the exit may run."""
    from core.savings import member_accounts, products

    s = db_session
    d0 = at(deps, T0)
    products.create_product(
        s, d0, staff(s, "manager"), "SCHL",
        products.parse_terms({**products.DEFAULTS, "name": "School fees",
                              "kind": "ordinary_savings"}),
    )  # fmt: skip
    _, member, _ = disbursed_loan(s, d0, amount_cents=60_000 * KES, deposits_cents=30_000 * KES)
    transfer_own(s, d0, member_id=member.id, from_purpose="savings", to_purpose="shares",
                 amount=Money(60_000 * KES), idempotency_key=f"to-shares-{member.id}")  # fmt: skip
    member_accounts.open_savings_account(s, d0, member_id=member.id, product_code="SCHL")
    give_notice(s, d0, member)
    d60 = at(deps, T0 + timedelta(days=60))
    reasons = [r for r, _ in member_exit.plan(s, d60, member.id, POLICY).blockers]
    assert reasons == ["owes_more_than_savings"]
    key = f"schl:{member.id}"
    credit_member(s, d0, Credit(member.id, "@SCHL", 60_000 * KES, CreditSource.CASH, key, key))
    assert member_exit.plan(s, d60, member.id, POLICY).blockers == ()
