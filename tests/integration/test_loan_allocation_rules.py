"""A product's allocation order and early-payoff rule on real PostgreSQL (issue 12, part 8;
docs/loans/repayment.md): each order splits a repayment over instalments in arrears as the
docs say, with the ledger verified; a product change makes a version that new loans follow
while a loan already made keeps its version's rules."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM, Principal
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.loans import book, products
from core.loans.errors import LoanStateError
from core.loans.repayments import Repaid, Repayment, position, repay_loan
from core.loans.vocabulary import AllocationOrder, EarlyPayoffInterest, RepaymentSource
from core.staff import accounts as staff_core
from db.models import AuditEvent
from db.models_loans import Loan, LoanInstalment
from tests.loanutil import disbursed_loan, funded_member

START = datetime(2026, 1, 10, 9, tzinfo=UTC)  # disbursed on Saturday 10 January 2026
# Insurance added to the schedule: a fee in every instalment, so that the orders differ.
INSURANCE = {"kind": "insurance", "timing": "added_to_schedule", "percent": Decimal("1.2000")}


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def instalments(s: Session, loan: Loan) -> list[LoanInstalment]:
    return list(
        s.scalars(
            select(LoanInstalment)
            .where(LoanInstalment.loan_id == loan.id)
            .order_by(LoanInstalment.number)
            .execution_options(populate_existing=True)
        )
    )


def balance(s: Session, account_id: int) -> int:
    return ledger.get_balance(s, account_id).balance_cents


def income(s: Session, code: SystemAccount) -> int:
    return balance(s, ledger.account_id_by_code(s, code))


def pay(s: Session, deps: CoreDeps, loan: Loan, cents: int, **kw: Any) -> Repaid:
    key = f"mpesa:receipt:{uuid4().hex[:10].upper()}"
    return repay_loan(
        s, deps,
        Repayment(amount_cents=cents, source=kw.pop("source", RepaymentSource.MPESA),
                  idempotency_key=key, business_key=f"loan_repayment:{key}", loan_id=loan.id,
                  **kw),
    )  # fmt: skip


@pytest.mark.parametrize("order", list(AllocationOrder))
def test_each_order_splits_a_repayment_over_two_instalments_in_arrears_as_documented(
    db_session: Session, deps: CoreDeps, order: AllocationOrder
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(
        s, dataclasses.replace(deps, now=lambda: START), fees=[INSURANCE],
        allocation_order=order.value,
    )  # fmt: skip
    first, second, *_ = instalments(s, loan)
    f1, i1, p1 = first.fee_cents, first.interest_cents, first.principal_cents
    f2, i2 = second.fee_cents, second.interest_cents
    assert f1 > 1_000 and f2 > 1_000 and i2 > 1_000  # the example needs each part
    amount = first.due_cents + 1_000  # the first instalment and KES 10, both due
    expected = {  # (fee, interest, principal) of the repayment; (instalment 1, 2) paid
        AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL: (
            (f1 + f2, i1 + i2, amount - f1 - f2 - i1 - i2),
            ((f1, i1, amount - f1 - f2 - i1 - i2), (f2, i2, 0)),
        ),
        AllocationOrder.OLDEST_INSTALMENT_FIRST: (
            (f1 + 1_000, i1, p1),
            ((f1, i1, p1), (1_000, 0, 0)),
        ),
        AllocationOrder.INTEREST_PRINCIPAL_PENALTIES_FEES: (
            (f1, i1 + 1_000, p1),
            ((f1, i1, p1), (0, 1_000, 0)),
        ),
    }[order]
    before = (
        income(s, SystemAccount.FEE_INCOME),
        income(s, SystemAccount.LOAN_INTEREST_INCOME),
        balance(s, loan.account_id),
    )
    repaid = pay(s, on(deps, second.due_on), loan, amount)

    assert (repaid.fee_cents, repaid.interest_cents, repaid.principal_cents) == expected[0]
    assert (repaid.penalty_cents, repaid.to_savings_cents, repaid.closed) == (0, 0, False)
    now = instalments(s, loan)
    assert (
        tuple((r.paid_fee_cents, r.paid_interest_cents, r.paid_principal_cents) for r in now[:2])
        == expected[1]
    )
    assert all(r.paid_cents == 0 for r in now[2:])
    after = (
        income(s, SystemAccount.FEE_INCOME),
        income(s, SystemAccount.LOAN_INTEREST_INCOME),
        balance(s, loan.account_id),
    )
    fee, interest, principal = expected[0]
    assert after[0] - before[0] == fee and after[1] - before[1] == interest
    assert before[2] - after[2] == principal  # the loan account holds the principal only
    assert verify_ledger(s).ok


def staff(s: Session, deps: CoreDeps, role: str) -> Principal:
    row = staff_core.create_staff(
        s, deps, SYSTEM, username=f"{role}.{uuid4().hex[:6]}", full_name=role.title(),
        role=role, password="correct horse battery staple",
    )  # fmt: skip
    return staff_core.principal_for(row)


def loan_under(s: Session, deps: CoreDeps, code: str) -> Loan:
    """KES 100,000 over 12 months under the product's current version, auto-approved."""
    borrower = funded_member(s, deps, deposits_cents=5_000_000)
    application = book.apply_for_loan(
        s, deps, borrower.id, code, 10_000_000, 12, "staff", f"apply-{uuid4().hex[:12]}"
    )
    return s.scalars(select(Loan).where(Loan.application_id == application.id)).one()


def test_a_product_change_is_a_version_new_loans_follow_and_old_loans_keep(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    start = dataclasses.replace(deps, now=lambda: START)
    officer, manager = staff(s, start, "loan_officer"), staff(s, start, "manager")
    definition = {
        "code": "DEVX", "name": "Development loan", "rate_percent": "1",
        "rate_period": "monthly", "method": "reducing_equal_instalments",
        "frequency": "monthly", "min_term": 6, "max_term": 48, "min_amount_cents": 500_000,
        "max_amount_cents": 100_000_000, "deposit_multiplier": "3",
        "guarantor_policy": "none", "guarantor_cover_percent": None,
        "auto_approve_ceiling_cents": 100_000_000, "rounding": "cent",
    }  # fmt: skip
    created = approvals.request_approval(
        s, start, officer, products.CREATE_ACTION, payload=definition,
        large_threshold_cents=10**12,
    )  # fmt: skip
    assert json.loads(created.payload)["terms"]["allocation_order"] == (
        "penalties_fees_interest_principal"
    )  # the defaults, written into the request the checker approves
    approvals.decide(s, start, manager, created.id, approve=True)
    [v1] = products.list_products(s)
    old_loan = loan_under(s, start, "DEVX")

    change = approvals.request_approval(
        s, start, officer, products.CHANGE_ACTION,
        payload={"product_id": v1.id, "early_payoff_interest": "charge_all",
                 "allocation_order": "oldest_instalment_first"},
        large_threshold_cents=10**12,
    )  # fmt: skip
    assert json.loads(change.payload)["changed"] == ["allocation_order", "early_payoff_interest"]
    approvals.decide(s, start, manager, change.id, approve=True)
    v2 = products.get_product(s, v1.id)
    assert v2.version == 2 and v2.terms.early_payoff_interest is EarlyPayoffInterest.CHARGE_ALL
    assert v2.terms.allocation_order is AllocationOrder.OLDEST_INSTALMENT_FIRST
    assert products.get_product(s, v1.id, version=1).terms == v1.terms
    audited = s.scalars(
        select(AuditEvent.after).where(AuditEvent.action == "loan_product.changed")
    ).all()
    assert json.loads(audited[-1] or "{}") == {
        "version": 2, "allocation_order": "oldest_instalment_first",
        "early_payoff_interest": "charge_all",
    }  # fmt: skip
    new_loan = loan_under(s, start, "DEVX")
    assert (old_loan.product_version_id, new_loan.product_version_id) == (
        v1.version_id,
        v2.version_id,
    )

    day = on(deps, date(2026, 1, 20))  # in the first month: nothing is due yet
    old_rows, new_rows = instalments(s, old_loan), instalments(s, new_loan)
    old_interest = sum(r.interest_cents for r in old_rows)
    new_interest = sum(r.interest_cents for r in new_rows)
    # The loan made under version 1 keeps "waive"; the new one pays the schedule's interest.
    assert position(s, day, old_loan.id).payoff_cents == 10_000_000
    assert position(s, day, new_loan.id).payoff_cents == 10_000_000 + new_interest
    income_before = income(s, SystemAccount.LOAN_INTEREST_INCOME)

    old_paid = pay(s, day, old_loan, 10_000_000)
    assert old_paid.closed and old_paid.interest_cents == 0
    assert old_paid.waived_interest_cents == old_interest
    new_paid = pay(s, day, new_loan, 10_000_000 + new_interest + 5_000)
    assert new_paid.closed and new_paid.interest_cents == new_interest
    assert (new_paid.waived_interest_cents, new_paid.to_savings_cents) == (0, 5_000)
    assert income(s, SystemAccount.LOAN_INTEREST_INCOME) - income_before == new_interest
    assert all(r.paid_interest_cents == r.interest_cents for r in instalments(s, new_loan))
    assert all(r.waived_interest_cents == r.interest_cents for r in instalments(s, old_loan))
    assert balance(s, old_loan.account_id) == balance(s, new_loan.account_id) == 0
    assert verify_ledger(s).ok


def test_from_savings_the_payoff_follows_the_rule(db_session: Session, deps: CoreDeps) -> None:
    """Charging the month in progress: the payoff from savings includes its interest, and
    a shilling more than it is refused, as for any payoff from savings."""
    s = db_session
    loan, borrower, _ = disbursed_loan(
        s, dataclasses.replace(deps, now=lambda: START),
        savings_cents=500_000,
        early_payoff_interest=EarlyPayoffInterest.CHARGE_CURRENT_PERIOD.value,
    )  # fmt: skip
    first, second, *rest = instalments(s, loan)
    day = on(deps, date(2026, 1, 25))
    payoff = position(s, day, loan.id).payoff_cents
    assert payoff == 10_000_000 + first.interest_cents
    with pytest.raises(LoanStateError) as refused:
        pay(s, day, loan, payoff + 100, source=RepaymentSource.SAVINGS, member_id=borrower.id)
    assert refused.value.reason == "more_than_owed"
    repaid = pay(s, day, loan, payoff, source=RepaymentSource.SAVINGS, member_id=borrower.id)
    assert repaid.closed and repaid.interest_cents == first.interest_cents
    assert repaid.waived_interest_cents == sum(r.interest_cents for r in (second, *rest))
    assert verify_ledger(s).ok


def test_a_request_asked_before_the_fields_existed_is_approved_with_todays_behaviour(
    db_session: Session, deps: CoreDeps
) -> None:
    """A pending ``loan_product.create`` stored before migration 0017 holds a whole
    definition without the two fields: approving it writes the defaults."""
    s = db_session
    officer, manager = staff(s, deps, "loan_officer"), staff(s, deps, "manager")
    asked = approvals.request_approval(
        s, deps, officer, products.CREATE_ACTION,
        payload={"code": "OLDQ", "name": "Old request", "rate_percent": "1",
                 "rate_period": "monthly", "method": "flat", "frequency": "monthly",
                 "min_term": 1, "max_term": 12, "min_amount_cents": 100_000,
                 "max_amount_cents": 1_000_000, "deposit_multiplier": "3"},
        large_threshold_cents=10**12,
    )  # fmt: skip
    payload = json.loads(asked.payload)
    del payload["terms"]["allocation_order"], payload["terms"]["early_payoff_interest"]
    asked.payload = json.dumps(payload)
    s.flush()
    done = approvals.decide(s, deps, manager, asked.id, approve=True)
    assert done.status == "approved"
    [view] = products.list_products(s)
    assert view.terms.allocation_order is AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL
    assert view.terms.early_payoff_interest is EarlyPayoffInterest.WAIVE
