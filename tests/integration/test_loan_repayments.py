"""Loan repayments on real PostgreSQL (core.loans.repayments): the whole life of a loan to
zero with verify-ledger, early payoff, overpayment to savings, a closed loan, pledges
released at the boundaries, and bad input that writes nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import IdempotencyConflict, InsufficientFunds, InvalidInput, NotFound
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.statements import recent_movements
from core.ledger.verify import verify_ledger
from core.loans.errors import LoanStateError
from core.loans.repayments import Repayment, position, repay_loan
from core.loans.vocabulary import RepaymentSource
from core.members.registration import member_account_ids
from db.models import AuditEvent, Hold, JournalEntry, Member, OutboxMessage
from db.models_loans import Loan, LoanGuarantee, LoanInstalment, LoanRepayment
from tests.loanutil import disbursed_loan

KES = 100
START = datetime(2026, 1, 10, 9, tzinfo=UTC)  # disbursed on Saturday 10 January 2026


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def rows(s: Session, loan: Loan) -> list[LoanInstalment]:
    return list(
        s.scalars(
            select(LoanInstalment)
            .where(LoanInstalment.loan_id == loan.id)
            .order_by(LoanInstalment.number)
        )
    )


def balance(s: Session, code: SystemAccount) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def savings(s: Session, member: Member) -> int:
    return ledger.get_balance(s, member_account_ids(s, member.id)[Purpose.SAVINGS]).balance_cents


def sms(s: Session, member: Member, template: str) -> list[str]:
    return list(
        s.scalars(
            select(OutboxMessage.body)
            .where(OutboxMessage.member_id == member.id, OutboxMessage.template == template)
            .order_by(OutboxMessage.id)
        )
    )


def pay(s: Session, deps: CoreDeps, loan: Loan, cents: int, key: str, **kw: object) -> object:
    return repay_loan(
        s, deps,
        Repayment(amount_cents=cents, source=kw.pop("source", RepaymentSource.MPESA),  # type: ignore[arg-type]
                  idempotency_key=key, business_key=f"loan_repayment:{key}", loan_id=loan.id,
                  **kw),  # type: ignore[arg-type]
    )  # fmt: skip


def counts(s: Session) -> tuple[int, ...]:
    return tuple(
        s.scalar(select(func.count()).select_from(model)) or 0
        for model in (JournalEntry, LoanRepayment, OutboxMessage, Hold, AuditEvent)
    )


def test_a_loan_repaid_instalment_by_instalment_closes_at_zero(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    start = dataclasses.replace(deps, now=lambda: START)
    loan, borrower, _ = disbursed_loan(s, start)
    schedule = rows(s, loan)
    assert schedule[0].due_cents == 888_488  # KES 8,884.88 a month (issue 12's fixture)
    interest_before = balance(s, SystemAccount.LOAN_INTEREST_INCOME)
    float_before = balance(s, SystemAccount.MPESA_COLLECTIONS_FLOAT)
    for row in schedule:
        repaid = pay(s, on(deps, row.due_on), loan, row.due_cents, f"mpesa:receipt:R{row.number:09d}",
                     receipt=f"R{row.number:09d}")  # fmt: skip
        assert repaid.interest_cents == row.interest_cents  # type: ignore[attr-defined]
        assert repaid.principal_cents == row.principal_cents  # type: ignore[attr-defined]
        assert verify_ledger(s).ok
    assert loan.status == "closed" and loan.closed_at is not None
    assert ledger.get_balance(s, loan.account_id).balance_cents == 0
    assert all(r.paid_cents == r.due_cents and r.waived_interest_cents == 0 for r in rows(s, loan))
    total_interest = sum(r.interest_cents for r in schedule)
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) - interest_before == total_interest
    assert balance(s, SystemAccount.MPESA_COLLECTIONS_FLOAT) - float_before == (
        10_000_000 + total_interest
    )
    receipts = sms(s, borrower, "loan_repayment")
    assert len(receipts) == 11 and "Loan balance KES " in receipts[0]
    [closed] = sms(s, borrower, "loan_repaid")
    assert f"Loan {loan.reference} is fully repaid and closed" in closed
    labels = {m.label for m in recent_movements(s, borrower.id, limit=50)}
    assert "repayment" in labels
    webhook_events = s.scalars(
        select(OutboxMessage.body).where(OutboxMessage.channel == "webhook")
    ).all()
    assert webhook_events == [] or all(
        '"loan.repaid"' in b or "deposit" in b for b in webhook_events
    )


def test_early_payoff_does_not_charge_interest_not_yet_due(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, dataclasses.replace(deps, now=lambda: START))
    first, second, *rest = rows(s, loan)
    pay(s, on(deps, first.due_on), loan, first.due_cents, "payoff-first-0001")
    day = date(2026, 2, 20)  # between the first and second due dates
    where = position(s, on(deps, day), loan.id)
    principal_left = sum(r.principal_cents for r in (second, *rest))
    assert where.payoff_cents == principal_left == where.principal_outstanding_cents
    assert where.next_due_on == second.due_on and where.arrears_cents == 0
    repaid = pay(s, on(deps, day), loan, principal_left, "payoff-all-00001")
    assert repaid.closed and repaid.principal_cents == principal_left  # type: ignore[attr-defined]
    assert repaid.interest_cents == 0  # type: ignore[attr-defined]
    waived = sum(r.interest_cents for r in (second, *rest))
    assert repaid.waived_interest_cents == waived  # type: ignore[attr-defined]
    assert all(
        r.paid_interest_cents + r.waived_interest_cents == r.interest_cents for r in rows(s, loan)
    )
    assert loan.status == "closed" and verify_ledger(s).ok


def test_overpayment_goes_to_savings_exactly_and_a_closed_loan_sends_money_to_savings(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, dataclasses.replace(deps, now=lambda: START),
                                       term=1)  # fmt: skip
    [only] = rows(s, loan)
    day = on(deps, only.due_on)
    before = savings(s, borrower)
    repaid = pay(s, day, loan, only.due_cents + 12_345, "over-0000001", source=RepaymentSource.CASH)
    assert repaid.to_savings_cents == 12_345 and repaid.closed  # type: ignore[attr-defined]
    assert savings(s, borrower) - before == 12_345
    [told] = sms(s, borrower, "loan_overpaid_to_savings")
    assert "KES 123.45 paid beyond what loan" in told
    # Again, to the closed loan: all to savings, with an SMS that says so.
    again = pay(s, day, loan, 50_000, "closed-0000001")
    assert (again.to_savings_cents, again.principal_cents) == (50_000, 0)  # type: ignore[attr-defined]
    assert savings(s, borrower) - before == 62_345
    [closed] = sms(s, borrower, "loan_closed_to_savings")
    assert f"loan {loan.reference} is already repaid, so KES 500 went to your savings" in closed
    assert sms(s, borrower, "deposit_received") == []  # the loan's SMS, not a deposit receipt
    with pytest.raises(LoanStateError) as refused:
        pay(s, day, loan, 50_000, "closed-0000002", source=RepaymentSource.SAVINGS)
    assert refused.value.reason == "closed"
    assert verify_ledger(s).ok


def test_from_savings_and_the_same_key_again(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, dataclasses.replace(deps, now=lambda: START))
    day = on(deps, date(2026, 2, 10))
    had = savings(s, borrower)  # the principal, paid out to savings
    repaid = pay(s, day, loan, 500_000, "ussd:sess-1:repay", source=RepaymentSource.SAVINGS,
                 member_id=borrower.id)  # fmt: skip
    assert savings(s, borrower) == had - 500_000
    seen = counts(s)
    again = pay(s, day, loan, 500_000, "ussd:sess-1:repay", source=RepaymentSource.SAVINGS,
                member_id=borrower.id)  # fmt: skip
    assert again.repayment_id == repaid.repayment_id and not again.created  # type: ignore[attr-defined]
    assert counts(s) == seen
    with pytest.raises(IdempotencyConflict):
        pay(s, day, loan, 400_000, "ussd:sess-1:repay", source=RepaymentSource.SAVINGS)
    with pytest.raises(LoanStateError) as refused:
        pay(s, day, loan, 100_000_000, "ussd:sess-2:repay", source=RepaymentSource.SAVINGS)
    assert refused.value.reason == "more_than_owed"
    assert counts(s) == seen


@pytest.mark.parametrize(
    ("amount", "error"),
    [(0, InvalidInput), (-5, InvalidInput), (1e9, InvalidInput), (10**13, InvalidInput)],
)
def test_bad_amounts_write_nothing(
    db_session: Session, deps: CoreDeps, amount: object, error: type[Exception]
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, dataclasses.replace(deps, now=lambda: START))
    seen = counts(s)
    with pytest.raises(error):
        pay(s, deps, loan, amount, "bad-amount-0001")  # type: ignore[arg-type]
    assert counts(s) == seen


def test_unknown_loan_another_members_loan_and_short_savings_write_nothing(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, dataclasses.replace(deps, now=lambda: START))
    seen = counts(s)
    base = {"amount_cents": 1_000, "source": RepaymentSource.MPESA,
            "idempotency_key": "unknown-0001", "business_key": "unknown-0001"}  # fmt: skip
    for wrong in ({"loan_id": 10**9}, {"reference": "LZZZZZZZ"}, {"reference": "10019"},
                  {"loan_id": loan.id, "member_id": borrower.id + 1}):  # fmt: skip
        with pytest.raises(NotFound):
            repay_loan(s, deps, Repayment(**base, **wrong))  # type: ignore[arg-type]
    with pytest.raises(InsufficientFunds):
        pay(s, deps, loan, savings(s, borrower) + 100, "short-0001", source=RepaymentSource.SAVINGS)
    assert counts(s) == seen
    # The reference as a member types it.
    repaid = repay_loan(s, deps, Repayment(**{**base, "reference": loan.reference.lower()}))  # type: ignore[arg-type]
    assert repaid.loan_id == loan.id


def held(s: Session, guarantee: LoanGuarantee) -> int:
    s.refresh(guarantee)
    if guarantee.status != "accepted":
        return 0
    hold = s.get(Hold, guarantee.hold_id)
    assert hold is not None and hold.status == "pending"
    return hold.amount_cents


def test_pro_rata_pledges_follow_the_principal_repaid(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    loan, borrower, guarantor = disbursed_loan(
        s, dataclasses.replace(deps, now=lambda: START), deposits_cents=4_000_000,
        guarantor_deposits_cents=9_000_000, pledge_cents=6_000_000,
    )  # fmt: skip
    assert guarantor is not None
    [guarantee] = s.scalars(select(LoanGuarantee).where(LoanGuarantee.loan_id == loan.id))
    assert held(s, guarantee) == 6_000_000
    day = on(deps, date(2026, 1, 20))  # nothing due yet: a prepayment is all principal
    pay(s, day, loan, 1, "prorata-0000001")  # 1 cent of 100,000: 60% of it, rounded up
    assert held(s, guarantee) == 6_000_000
    pay(s, day, loan, 5_000_000 - 1, "prorata-0000002")  # half the principal repaid
    assert held(s, guarantee) == 3_000_000
    pay(s, day, loan, 4_999_999, "prorata-0000003")  # 1 cent left: 0.6 cents, rounded up
    assert held(s, guarantee) == 1
    assert sms(s, guarantor, "guarantee_released") == []
    pay(s, day, loan, 1, "prorata-0000004")
    assert loan.status == "closed" and guarantee.status == "released" and held(s, guarantee) == 0
    [told] = sms(s, guarantor, "guarantee_released")
    assert loan.reference in told
    deposits = ledger.get_balance(s, member_account_ids(s, guarantor.id)[Purpose.DEPOSITS])
    assert deposits.held_cents == 0
    assert verify_ledger(s).ok


def test_at_own_deposits_pledges_stay_whole_until_the_balance_reaches_own_deposits(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, guarantor = disbursed_loan(
        s, dataclasses.replace(deps, now=lambda: START), deposits_cents=4_000_000,
        guarantor_deposits_cents=9_000_000, pledge_cents=6_000_000,
        pledge_release="at_own_deposits",
    )  # fmt: skip
    [guarantee] = s.scalars(select(LoanGuarantee).where(LoanGuarantee.loan_id == loan.id))
    day = on(deps, date(2026, 1, 20))
    pay(s, day, loan, 6_000_000 - 1, "ownd-00000001")  # 40,000.01 left; own deposits 40,000
    assert held(s, guarantee) == 6_000_000
    pay(s, day, loan, 1, "ownd-00000002")  # 40,000 left: the boundary releases it all
    assert held(s, guarantee) == 0 and guarantee.status == "released"
    assert loan.status == "active"
    assert verify_ledger(s).ok
