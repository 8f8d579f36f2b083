"""Write-off, recovery after write-off and rescheduling (issue 13, part 8) on real
PostgreSQL: maker-checker (not the maker, a manager for a write-off), the ledger exact
after each (trial balance, provision account = Σ per-loan provision, interest receivable =
Σ recognised − paid), the nightly run not provisioning a written-off loan again nor
upgrading a restructured one, a paybill to a written-off loan landing in recoveries, the
new schedule summing exactly to what is outstanding, bad input refused with nothing
written, and one approval under real threads approving once."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.approvals import engine
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.loans import reschedule, write_off
from core.loans.errors import LoanStateError
from core.loans.repayments import Repayment, repay_loan
from core.loans.vocabulary import GuaranteeStatus, LoanStatus, RepaymentSource
from core.members.registration import member_account_ids
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import (
    Account,
    ApprovalRequest,
    Hold,
    JournalEntry,
    OutboxMessage,
    Posting,
    StaffUser,
)
from db.models_close_day import LoanCategoryChange, LoanDayState
from db.models_loans import (
    Loan,
    LoanGuarantee,
    LoanInstalment,
    LoanReschedule,
    LoanSupersededInstalment,
    LoanWriteOff,
)
from db.models_mpesa import SuspenseItem
from db.session import make_session_factory, unit_of_work
from tests.integration.test_close_of_day import (
    START,
    balance,
    close,
    instalments,
    on,
    receivable_matches_loans,
    state,
    undone,
)
from tests.loanutil import disbursed_loan

KES = 100
THRESHOLD = 1_000_000 * KES
LOSS_DAY = date(2027, 2, 15)  # 370 days past the first due date, all 12 instalments missed
AFTER = LOSS_DAY + timedelta(days=1)


def staff(s: Session, role: str, name: str) -> Principal:
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def provisions_match_loans(s: Session) -> None:
    """The provision account is Σ per-loan provision (every loan here was made in the test)."""
    per_loan = s.scalar(select(func.sum(LoanDayState.provision_cents))) or 0
    assert balance(s, SystemAccount.LOAN_LOSS_PROVISION) == per_loan


def books_exact(s: Session) -> None:
    assert verify_ledger(s).ok
    provisions_match_loans(s)
    receivable_matches_loans(s)


def legs(s: Session, entry_id: int) -> dict[str, int]:
    rows = s.execute(
        select(Account.code, Posting.amount_cents)
        .join(Posting, Posting.account_id == Account.id)
        .where(Posting.entry_id == entry_id)
    ).all()
    return dict(rows)  # type: ignore[arg-type]


def sms(s: Session, template: str) -> list[str]:
    return list(s.scalars(select(OutboxMessage.body).where(OutboxMessage.template == template)))


def loan_balance(s: Session, loan: Loan) -> int:
    return ledger.get_balance(s, loan.account_id).balance_cents


def loss_loan(
    s: Session, factory: sessionmaker[Session], deps: CoreDeps, **kw: Any
) -> tuple[Loan, Any, Any]:
    """A KES 100,000 loan made on START, never repaid, classified loss on LOSS_DAY."""
    made = disbursed_loan(s, on(deps, START), **kw)
    close(factory, deps, LOSS_DAY)
    assert state(s, made[0]).category == "loss"
    return made


def propose(s: Session, deps: CoreDeps, actor: Principal, loan: Loan) -> ApprovalRequest:
    return write_off.propose_write_off(
        s, on(deps, AFTER), actor, loan.id, note="no contact for a year",
        large_threshold_cents=THRESHOLD,
    )  # fmt: skip


# ------------------------------------------------------------------ write-off


def test_a_loss_loan_is_written_off_against_its_provision_in_one_entry(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, guarantor = loss_loan(
        s, session_factory, deps, guarantor_deposits_cents=9_000_000,
        pledge_cents=5_000_000,
    )  # fmt: skip
    officer, manager = staff(s, "loan_officer", "otieno"), staff(s, "manager", "wanjiku")
    principal = loan_balance(s, loan)
    interest = state(s, loan).accrued_interest_cents  # everything due: all of it accrued
    penalty = state(s, loan).penalty_accrued_cents  # the first close's day of penalty
    assert principal == 100_000 * KES and interest > 0 and penalty > 0
    assert state(s, loan).provision_cents == principal  # loss: 100 %
    books_exact(s)
    req = propose(s, deps, officer, loan)
    assert (req.checker_permission, req.amount_cents) == ("approvals:decide_large", principal)
    with pytest.raises(engine.SelfApproval):
        engine.decide(s, on(deps, AFTER), officer, req.id, approve=True)
    other_officer = staff(s, "loan_officer", "kamau")
    with pytest.raises(engine.NotAChecker):  # a manager decides a write-off
        engine.decide(s, on(deps, AFTER), other_officer, req.id, approve=True)
    decided = engine.decide(s, on(deps, AFTER), manager, req.id, approve=True, note="agreed")
    assert decided.status == "approved", decided.result
    s.refresh(loan)
    row = s.scalars(select(LoanWriteOff).where(LoanWriteOff.loan_id == loan.id)).one()
    assert (loan.status, row.principal_cents, row.interest_cents, row.provision_cents) == (
        LoanStatus.WRITTEN_OFF, principal, interest, principal,
    )  # fmt: skip
    entry = s.get_one(JournalEntry, row.entry_id)
    assert entry.kind == EntryKind.LOAN_WRITE_OFF
    loan_code = s.get_one(Account, loan.account_id).code
    assert legs(s, row.entry_id) == {
        SystemAccount.LOAN_LOSS_PROVISION.value: principal,  # Dr provision
        loan_code: -principal,  # Cr the loan
        SystemAccount.LOAN_INTEREST_INCOME.value: interest,  # accrued, never received
        SystemAccount.INTEREST_RECEIVABLE.value: -interest,
        SystemAccount.PENALTY_INCOME.value: penalty,  # charged, never received
        SystemAccount.PENALTY_RECEIVABLE.value: -penalty,
    }
    assert loan_balance(s, loan) == 0
    assert balance(s, SystemAccount.LOAN_LOSS_PROVISION) == 0
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == 0
    assert balance(s, SystemAccount.PENALTY_RECEIVABLE) == 0
    assert state(s, loan).penalty_waived_cents == penalty
    books_exact(s)
    # The pledge is released, the guarantor told.
    guarantee = s.scalars(select(LoanGuarantee).where(LoanGuarantee.loan_id == loan.id)).one()
    assert guarantee.status == GuaranteeStatus.RELEASED
    assert s.get_one(Hold, guarantee.hold_id).status == "released"
    assert len(sms(s, "guarantee_released")) == 1
    # The nightly run neither accrues nor provisions it again.
    provisions_before = s.scalar(select(func.count()).select_from(JournalEntry))
    close(session_factory, deps, AFTER)
    close(session_factory, deps, AFTER + timedelta(days=30))
    after = state(s, loan)
    assert (after.provision_cents, after.exposure_cents, after.classified_on) == (0, 0, LOSS_DAY)
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == provisions_before
    books_exact(s)
    # Approving again is refused; nothing more is written.
    with pytest.raises(engine.AlreadyDecided):
        engine.decide(s, on(deps, AFTER), manager, req.id, approve=True)


def test_a_loan_not_in_the_loss_category_is_refused_and_nothing_is_written(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START))
    officer = staff(s, "loan_officer", "otieno")
    with pytest.raises(LoanStateError) as never:  # never classified
        propose(s, deps, officer, loan)
    assert never.value.reason == "not_loss"
    close(session_factory, deps, START + timedelta(days=220))  # 189 days, 7 missed
    assert state(s, loan).category == "doubtful"
    count = s.scalar(select(func.count()).select_from(ApprovalRequest))
    with pytest.raises(LoanStateError) as doubtful:
        propose(s, deps, officer, loan)
    assert doubtful.value.reason == "not_loss" and "doubtful" in str(doubtful.value.detail)
    assert s.scalar(select(func.count()).select_from(ApprovalRequest)) == count
    teller = staff(s, "teller", "achieng")  # no loans:write_off
    with pytest.raises(engine.NotAChecker):
        propose(s, deps, teller, loan)


def test_a_loan_that_left_loss_before_the_approval_is_not_written_off(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """The checker's approval checks again: a loan repaid in full meanwhile fails it."""
    s = db_session
    loan, borrower, _ = loss_loan(s, session_factory, deps, savings_cents=20_000_000)
    req = propose(s, deps, staff(s, "loan_officer", "otieno"), loan)
    repay_loan(
        s, on(deps, AFTER),
        Repayment(amount_cents=15_000_000, source=RepaymentSource.CASH,
                  idempotency_key="cash:payoff:1", business_key="cash:payoff:1",
                  loan_id=loan.id),
    )  # fmt: skip
    s.refresh(loan)
    assert loan.status == LoanStatus.CLOSED
    decided = engine.decide(s, on(deps, AFTER), staff(s, "manager", "wanjiku"), req.id,
                            approve=True)  # fmt: skip
    assert decided.status == "failed" and '"loan_state"' in (decided.result or "")
    assert s.scalar(select(func.count()).select_from(LoanWriteOff)) == 0
    books_exact(s)


# ------------------------------------------------------------------ recovery


def written_off(s: Session, factory: sessionmaker[Session], deps: CoreDeps, **kw: Any) -> Any:
    loan, borrower, guarantor = loss_loan(s, factory, deps, **kw)
    req = propose(s, deps, staff(s, "loan_officer", "otieno"), loan)
    engine.decide(s, on(deps, AFTER), staff(s, "manager", "wanjiku"), req.id, approve=True)
    s.refresh(loan)
    assert loan.status == LoanStatus.WRITTEN_OFF
    return loan, borrower


def test_a_paybill_payment_to_a_written_off_loan_lands_in_recoveries(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower = written_off(s, session_factory, deps)
    row = s.scalars(select(LoanWriteOff).where(LoanWriteOff.loan_id == loan.id)).one()
    owed = row.principal_cents + row.interest_cents
    assert mpesa.validate_c2b(
        s, bill_ref=loan.reference, amount_cents=500_000, shortcode="174379",
        expected_shortcode="174379", policy=MpesaPolicy(),
    ) == ("0", "Accepted")  # fmt: skip
    pay = mpesa.C2BIn("RWO0000001", on(deps, AFTER).now(), 500_000, loan.reference.lower(),
                      "174379", "2547 ***** 126", "GRACE")  # fmt: skip
    later = on(deps, AFTER + timedelta(days=3))
    assert mpesa.record_c2b(s, later, pay) == "credited"
    assert mpesa.record_c2b(s, later, pay) == "duplicate"  # once per receipt
    assert balance(s, SystemAccount.RECOVERIES_INCOME) == 500_000
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) >= 0
    assert loan_balance(s, loan) == 0  # the loan's account is not touched again
    s.refresh(row)
    assert row.recovered_cents == 500_000 and row.recoverable_cents == owed - 500_000
    [receipt] = sms(s, "loan_recovery")
    assert "KES 5,000" in receipt and loan.reference in receipt
    # A payment parked in suspense, moved by staff to the written-off loan: a recovery too.
    stray = mpesa.C2BIn("RWO0000002", later.now(), 100_000, "LZZZZZZZ", "174379",
                        "2547 ***** 126", "GRACE")  # fmt: skip
    assert mpesa.record_c2b(s, later, stray) == "suspense"
    item = s.scalars(select(SuspenseItem).where(SuspenseItem.source_ref == "RWO0000002")).one()
    assert mpesa.check_suspense_loan(s, member_id=borrower.id, reference=loan.reference)
    mpesa.assign_suspense(s, later, item_id=item.id, member_id=borrower.id,
                          target=loan.reference, staff="approval 9")  # fmt: skip
    assert balance(s, SystemAccount.RECOVERIES_INCOME) == 600_000
    s.refresh(row)
    assert row.recovered_cents == 600_000
    recovered = 600_000
    # From savings, more than is still owed is refused; what is owed goes through.
    savings = member_account_ids(s, borrower.id)[Purpose.SAVINGS]
    kept = ledger.get_balance(s, savings).balance_cents  # the loan was paid out there
    credit_member(s, later, Credit(borrower.id, "savings", owed, CreditSource.CASH,
                                   "fund:wo:savings", "fund:wo:savings"))  # fmt: skip
    with pytest.raises(LoanStateError) as more:
        repay_loan(s, later, Repayment(amount_cents=owed, source=RepaymentSource.SAVINGS,
                                       idempotency_key="wo:savings:1",
                                       business_key="wo:savings:1", loan_id=loan.id))  # fmt: skip
    assert more.value.reason == "more_than_owed"
    repay_loan(s, later, Repayment(amount_cents=owed - recovered, source=RepaymentSource.SAVINGS,
                                   idempotency_key="wo:savings:2", business_key="wo:savings:2",
                                   loan_id=loan.id))  # fmt: skip
    s.refresh(row)
    assert row.recoverable_cents == 0 and balance(s, SystemAccount.RECOVERIES_INCOME) == owed
    assert ledger.get_balance(s, savings).balance_cents == kept + recovered
    # Cash beyond what is owed: all of it to savings, told as an overpayment.
    repaid = repay_loan(s, later, Repayment(amount_cents=200_000, source=RepaymentSource.CASH,
                                            idempotency_key="wo:cash:1",
                                            business_key="wo:cash:1", loan_id=loan.id))  # fmt: skip
    assert (repaid.recovery_cents, repaid.to_savings_cents) == (0, 200_000)
    assert ledger.get_balance(s, savings).balance_cents == kept + recovered + 200_000
    assert len(sms(s, "loan_overpaid_to_savings")) == 1
    books_exact(s)


# ------------------------------------------------------------------ rescheduling


def test_rescheduling_capitalises_what_is_due_and_the_new_schedule_sums_to_the_balance(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, on(deps, START), savings_cents=2_000_000)
    day = date(2026, 5, 20)  # instalments of Feb, Mar, Apr, May missed: 99 days past due
    close(session_factory, deps, day - timedelta(days=1))
    assert state(s, loan).category == "substandard"
    books_exact(s)
    old = [(i.number, i.due_on, i.principal_cents, i.interest_cents) for i in instalments(s, loan)]
    outstanding = loan_balance(s, loan)
    officer, manager = staff(s, "loan_officer", "otieno"), staff(s, "manager", "wanjiku")
    req = reschedule.propose_reschedule(
        s, on(deps, day), officer, loan.id, term=24, note="lost his job, new one pays less",
        large_threshold_cents=THRESHOLD,
    )  # fmt: skip
    assert req.amount_cents == outstanding and req.checker_permission == "approvals:decide"
    with pytest.raises(engine.SelfApproval):
        engine.decide(s, on(deps, day), officer, req.id, approve=True)
    decided = engine.decide(s, on(deps, day), manager, req.id, approve=True)
    assert decided.status == "approved", decided.result
    s.refresh(loan)
    record = s.scalars(select(LoanReschedule).where(LoanReschedule.loan_id == loan.id)).one()
    # Interest of Feb-May due, and 10 of the 30 days of the period in progress: capitalised.
    due_interest = sum(i for n, due, _, i in old if due <= date(2026, 5, 10))
    running = next(i for n, due, _, i in old if due == date(2026, 6, 10))
    assert record.capitalised_interest_cents == due_interest + running * 10 // 31
    assert loan_balance(s, loan) == outstanding + record.capitalised_interest_cents
    rows = instalments(s, loan)
    new = [i for i in rows if i.number > 0 and i.paid_cents < i.due_cents]
    assert len(new) == record.term == 24
    assert sum(i.principal_cents for i in new) == loan_balance(s, loan)  # exact
    assert new[0].starts_on == day and new[0].due_on == date(2026, 6, 20)
    assert all(i.paid_cents == i.due_cents for i in rows if i not in new)  # kept: settled
    superseded = s.scalars(
        select(LoanSupersededInstalment).where(LoanSupersededInstalment.loan_id == loan.id)
    ).all()
    assert [(r.number, r.due_on, r.principal_cents, r.interest_cents) for r in superseded] == old
    assert loan.restructured and loan.status == LoanStatus.ACTIVE
    [text] = sms(s, "loan_rescheduled")
    assert "20/06/2026" in text and loan.reference in text
    entry = s.get_one(JournalEntry, record.entry_id)
    assert entry.kind == EntryKind.LOAN_RESCHEDULE
    books_exact(s)
    # The nightly run: cured arrears do not upgrade a restructured loan; it may worsen.
    report = close(session_factory, deps, day)
    assert (state(s, loan).category, state(s, loan).days_past_due) == ("substandard", 0)
    classify = next(step for step in report.steps if step.step == "classify")
    classified = classify.detail["by_category"]["substandard"]
    assert classified["restructured_loans"] == 1 == classified["loans"]  # reported apart
    books_exact(s)
    close(session_factory, deps, date(2026, 9, 25))  # four new instalments missed
    assert state(s, loan).category == "substandard" and state(s, loan).missed_instalments == 4
    close(session_factory, deps, date(2027, 1, 25))  # eight missed: doubtful
    assert state(s, loan).category == "doubtful"
    history = s.scalars(
        select(LoanCategoryChange.category_to).where(LoanCategoryChange.loan_id == loan.id)
        .order_by(LoanCategoryChange.business_date)
    ).all()  # fmt: skip
    assert "performing" not in history[history.index("substandard") :]
    books_exact(s)
    # A repayment after rescheduling settles the new schedule, the ledger still exact.
    repay_loan(s, on(deps, date(2027, 1, 26)),
               Repayment(amount_cents=2_000_000, source=RepaymentSource.SAVINGS,
                         idempotency_key="after:resched:1", business_key="after:resched:1",
                         loan_id=loan.id))  # fmt: skip
    books_exact(s)


def test_rescheduling_to_an_instalment_picks_the_shortest_term_that_fits(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START))
    day = date(2026, 3, 1)
    close(session_factory, deps, day - timedelta(days=1))
    made = reschedule.plan(s, loan, day, term=None, instalment_cents=500_000)
    first = made.schedule.instalments[0].total_cents
    assert first <= 500_000
    n = len(made.schedule.instalments)
    shorter = reschedule.plan(s, loan, day, term=n - 1, instalment_cents=None)
    assert shorter.schedule.instalments[0].total_cents > 500_000
    req = reschedule.propose_reschedule(
        s, on(deps, day), staff(s, "loan_officer", "otieno"), loan.id, instalment_cents=500_000,
        note="smaller instalments", large_threshold_cents=THRESHOLD,
    )  # fmt: skip
    engine.decide(s, on(deps, day), staff(s, "loan_officer", "kamau"), req.id, approve=True)
    record = s.scalars(select(LoanReschedule).where(LoanReschedule.loan_id == loan.id)).one()
    assert (record.term, record.instalment_cents, record.asked_instalment_cents) == (
        n, first, 500_000,
    )  # fmt: skip
    books_exact(s)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    days=st.integers(min_value=0, max_value=330),
    term=st.integers(min_value=1, max_value=60),
    paid=st.integers(min_value=0, max_value=5_000_000),
)
def test_any_rescheduled_schedule_sums_exactly_to_the_principal_outstanding(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps,
    days: int, term: int, paid: int,
) -> None:  # fmt: skip
    s = db_session
    with undone(s):
        loan, _, _ = disbursed_loan(s, on(deps, START), savings_cents=5_000_000)
        day = START + timedelta(days=days)
        if days:
            close(session_factory, deps, day - timedelta(days=1))
        if paid:
            repay_loan(s, on(deps, day), Repayment(
                amount_cents=paid, source=RepaymentSource.SAVINGS,
                idempotency_key=f"prop:{days}:{paid}", business_key=f"prop:{days}:{paid}",
                loan_id=loan.id))  # fmt: skip
        s.refresh(loan)
        if loan.status != LoanStatus.ACTIVE:
            return
        req = reschedule.propose_reschedule(
            s, on(deps, day), staff(s, "loan_officer", f"o{days}{term}{paid}"), loan.id,
            term=term, note="property", large_threshold_cents=THRESHOLD,
        )  # fmt: skip
        engine.decide(s, on(deps, day), staff(s, "manager", f"m{days}{term}{paid}"), req.id,
                      approve=True)  # fmt: skip
        rows = instalments(s, loan)
        owed = sum(i.principal_cents - i.paid_principal_cents for i in rows)
        assert owed == loan_balance(s, loan)  # principal left to pay = the loan account
        assert sum(i.principal_cents for i in rows) == loan.principal_cents + sum(
            r.capitalised_interest_cents + r.capitalised_fee_cents
            for r in s.scalars(select(LoanReschedule).where(LoanReschedule.loan_id == loan.id))
        )
        books_exact(s)
        close(session_factory, deps, day)
        books_exact(s)


def test_bad_reschedule_input_is_refused_before_any_request(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START))
    officer = staff(s, "loan_officer", "otieno")
    count = s.scalar(select(func.count()).select_from(ApprovalRequest))
    for kw, reason in (
        ({}, "one_of"), ({"term": 12, "instalment_cents": 10_000}, "one_of"),
        ({"term": 0}, "range"), ({"term": 601}, "range"), ({"term": True}, "format"),
        ({"term": "12"}, "format"), ({"instalment_cents": -5}, "range"),
        ({"instalment_cents": 100}, "instalment_too_small"),
    ):  # fmt: skip
        with pytest.raises(InvalidInput) as refused:
            reschedule.propose_reschedule(
                s, on(deps, START), officer, loan.id, note="x", large_threshold_cents=THRESHOLD,
                **kw,
            )  # fmt: skip
        assert refused.value.reason == reason, kw
    assert s.scalar(select(func.count()).select_from(ApprovalRequest)) == count
    assert s.scalar(select(func.count()).select_from(LoanInstalment).where(
        LoanInstalment.loan_id == loan.id)) == 12  # fmt: skip


# ------------------------------------------------------------------ concurrency


def test_two_checkers_approving_one_write_off_at_once_write_it_off_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        loan_id = disbursed_loan(s, on(deps, START))[0].id
        managers = [staff(s, "manager", f"mgr{n}") for n in range(2)]
        officer = staff(s, "loan_officer", "maker")
        s.commit()
    close(factory, deps, LOSS_DAY)
    with unit_of_work(factory) as s:
        req_id = propose(s, deps, officer, s.get_one(Loan, loan_id)).id
        s.commit()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(manager: Principal) -> None:
        barrier.wait()
        try:
            with unit_of_work(factory) as s:
                engine.decide(s, on(deps, AFTER), manager, req_id, approve=True)
                s.commit()
            outcomes.append("approved")
        except engine.AlreadyDecided:
            outcomes.append("already")

    threads = [threading.Thread(target=decide, args=(m,)) for m in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["already", "approved"]
    with unit_of_work(factory) as s:
        assert s.scalar(select(func.count()).select_from(LoanWriteOff)) == 1
        writes = s.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.kind == EntryKind.LOAN_WRITE_OFF))  # fmt: skip
        assert writes == 1
        assert s.get_one(Loan, loan_id).status == LoanStatus.WRITTEN_OFF
        books_exact(s)


def test_two_checkers_approving_one_rescheduling_at_once_reschedule_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    day = date(2026, 4, 20)
    with unit_of_work(factory) as s:
        loan_id = disbursed_loan(s, on(deps, START))[0].id
        checkers = [staff(s, "manager", f"mgr{n}") for n in range(2)]
        officer = staff(s, "loan_officer", "maker")
        s.commit()
    close(factory, deps, day - timedelta(days=1))
    with unit_of_work(factory) as s:
        req_id = reschedule.propose_reschedule(
            s, on(deps, day), officer, loan_id, term=18, note="concurrent",
            large_threshold_cents=THRESHOLD,
        ).id  # fmt: skip
        s.commit()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(checker: Principal) -> None:
        barrier.wait()
        try:
            with unit_of_work(factory) as s:
                engine.decide(s, on(deps, day), checker, req_id, approve=True)
                s.commit()
            outcomes.append("approved")
        except engine.AlreadyDecided:
            outcomes.append("already")

    threads = [threading.Thread(target=decide, args=(c,)) for c in checkers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["already", "approved"]
    with unit_of_work(factory) as s:
        assert s.scalar(select(func.count()).select_from(LoanReschedule)) == 1
        loan = s.get_one(Loan, loan_id)
        rows = instalments(s, loan)
        assert sum(i.principal_cents - i.paid_principal_cents for i in rows) == loan_balance(
            s, loan
        )
        assert len([i for i in rows if i.paid_cents < i.due_cents]) == 18
        books_exact(s)
