"""M-Pesa loan repayments: a paybill payment whose account is a loan's reference repays
the loan through core.loans.repayments, exactly once per receipt, also when five
confirmations or an STK callback and a confirmation of one payment arrive at once."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy, account_reference, parse_loan_ref
from db.models import OutboxMessage
from db.models_loans import Loan, LoanRepayment
from db.models_mpesa import C2BPayment, StkRequest, SuspenseItem
from db.session import make_session_factory, unit_of_work
from tests.integration.test_mpesa_exactly_once import race
from tests.loanutil import disbursed_loan

T0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
POLICY = MpesaPolicy()
_SERIAL = itertools.count(1)


def clock(deps: CoreDeps) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: T0)


def confirmation(bill_ref: str, receipt: str, cents: int = 500_000) -> mpesa.C2BIn:
    return mpesa.C2BIn(receipt, T0, cents, bill_ref, "174379", "2547 ***** 126", "GRACE")


def paybill_work(deps: CoreDeps, payment: mpesa.C2BIn) -> Callable[[Session], str]:
    return lambda s: mpesa.record_c2b(s, deps, payment)


def stk_work(deps: CoreDeps, outcome: mpesa.StkOutcome) -> Callable[[Session], str]:
    return lambda s: mpesa.settle_stk(s, deps, outcome)


def repayments(s: Session, loan: Loan) -> list[LoanRepayment]:
    return list(s.scalars(select(LoanRepayment).where(LoanRepayment.loan_id == loan.id)))


def owed(s: Session, loan: Loan) -> int:
    return ledger.get_balance(s, loan.account_id).balance_cents


def test_loan_references_as_the_paybill_account() -> None:
    assert parse_loan_ref("L7K2M9QX") == "L7K2M9QX"
    assert parse_loan_ref(" l7k2-m9qx ") == "L7K2M9QX"
    assert parse_loan_ref("L7K2M9Q") is None and parse_loan_ref("10019") is None
    assert parse_loan_ref("LIK2M9QX") is None  # I is not in the alphabet
    assert account_reference("10019", "L7K2M9QX") == "L7K2M9QX"
    assert account_reference("10019", "savings") == "10019"


def test_validation_accepts_an_active_loan_and_the_member_number_rule_stays(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)

    def check(ref: str) -> tuple[str, str]:
        return mpesa.validate_c2b(s, bill_ref=ref, amount_cents=500_000, shortcode="174379",
                                  expected_shortcode="174379", policy=POLICY)  # fmt: skip

    assert check(loan.reference.lower()) == ("0", "Accepted")
    assert check(borrower.member_number or "") == ("0", "Accepted")
    assert check("LZZZZZZZ")[0] == "C2B00012"
    loan.status = "closed"
    s.flush()
    assert check(loan.reference)[0] == "C2B00012"


def test_a_paybill_payment_to_a_loan_reference_repays_it_once(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    before = owed(s, loan)
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference.lower(), "RLN0000001")) == (
        "credited"
    )
    [repaid] = repayments(s, loan)
    assert (repaid.source, repaid.receipt, repaid.amount_cents) == ("mpesa", "RLN0000001", 500_000)
    assert owed(s, loan) == before - 500_000  # nothing due yet: a prepayment of principal
    c2b = s.scalars(select(C2BPayment).where(C2BPayment.trans_id == "RLN0000001")).one()
    assert (c2b.status, c2b.member_id, c2b.target) == ("credited", borrower.id, loan.reference)
    assert c2b.entry_id == repaid.entry_id
    [sms] = s.scalars(
        select(OutboxMessage.body).where(OutboxMessage.template == "loan_repayment",
                                         OutboxMessage.member_id == borrower.id)
    ).all()  # fmt: skip
    assert f"KES 5,000 received for loan {loan.reference}" in sms
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLN0000001")) == "duplicate"
    assert len(repayments(s, loan)) == 1 and owed(s, loan) == before - 500_000
    assert verify_ledger(s).ok


def test_a_paybill_payment_to_an_unknown_loan_waits_in_suspense(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    assert mpesa.record_c2b(s, deps, confirmation("LZZZZZZZ", "RLN0000002")) == "suspense"
    item = s.scalars(select(SuspenseItem).where(SuspenseItem.source_ref == "RLN0000002")).one()
    assert (item.reason, item.bill_ref) == ("unknown_account", "LZZZZZZZ")


def test_five_paybill_confirmations_of_one_loan_repayment_at_once_repay_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory, deps = make_session_factory(committed_pg), clock(deps)
    for trial in range(3):
        with unit_of_work(factory) as s:
            loan, _, _ = disbursed_loan(s, deps)
            loan_id, reference, before = loan.id, loan.reference, owed(s, loan)
        receipt = f"RLF{trial:07d}{next(_SERIAL)}"
        payment = confirmation(reference, receipt)
        answers = race(factory, [paybill_work(deps, payment)] * 5)
        assert answers == ["credited"] + ["duplicate"] * 4
        with unit_of_work(factory) as s:
            loan = s.get_one(Loan, loan_id)
            assert len(repayments(s, loan)) == 1
            assert owed(s, loan) == before - 500_000
            assert verify_ledger(s).ok


def _stk_for_loan(s: Session, deps: CoreDeps, loan: Loan, n: int) -> StkRequest:
    """An STK push started to repay a loan: its target is the loan's reference (the start
    is the USSD Loans menu's)."""
    row = StkRequest(
        member_id=loan.member_id, target=loan.reference, amount_cents=500_000,
        msisdn="+254713900001", idempotency_key=f"stk-loan-{n}-{loan.id}", status="pending",
        checkout_request_id=f"ws_CO_loan_{n}_{loan.id}", attempts=1, created_at=T0,
        sent_at=T0,
    )  # fmt: skip
    s.add(row)
    s.flush()
    return row


def test_an_stk_push_for_a_loan_and_its_paybill_confirmation_at_once_repay_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory, deps = make_session_factory(committed_pg), clock(deps)
    for trial in range(3):
        n = next(_SERIAL)
        with unit_of_work(factory) as s:
            loan, _, _ = disbursed_loan(s, deps)
            row = _stk_for_loan(s, deps, loan, n)
            loan_id, reference, before = loan.id, loan.reference, owed(s, loan)
            checkout, phone = row.checkout_request_id or "", row.msisdn
        receipt = f"RLS{trial:07d}{n}"
        outcome = mpesa.StkOutcome(checkout, 0, "ok", 500_000, receipt, phone)
        payment = confirmation(reference, receipt, 500_000)
        answers = race(
            factory,
            [stk_work(deps, outcome), paybill_work(deps, payment)],
        )  # fmt: skip
        assert answers[0] == "credited" and answers[1] in ("duplicate", "duplicate_of_stk")
        with unit_of_work(factory) as s:
            loan = s.get_one(Loan, loan_id)
            [repaid] = repayments(s, loan)
            assert repaid.receipt == receipt
            assert owed(s, loan) == before - 500_000
            assert verify_ledger(s).ok


def test_a_paybill_payment_to_a_closed_loan_goes_to_savings_with_an_sms(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps, term=1, amount_cents=100_000)
    total = owed(s, loan) + 1_000  # 1% for the one month
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLC0000001", total)) == (
        "credited"
    )
    assert loan.status == "closed"
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLC0000002", 20_000)) == (
        "credited"
    )
    later = repayments(s, loan)[-1]
    assert (later.to_savings_cents, later.receipt) == (20_000, "RLC0000002")
    count = s.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.template == "loan_closed_to_savings",
            OutboxMessage.member_id == borrower.id,
        )
    )
    assert count == 1
    assert verify_ledger(s).ok
