"""Loan top-ups on real PostgreSQL (core.loans.top_ups, book, disbursement): the new loan
clears the old one in its own disbursement entry (verify-ledger, the old loan's account at
zero, interest and fee income), the old loan closed and its pledges released, the
product's commission, the payoff recomputed at disbursement, every refusal writing
nothing, an idempotent disbursement, and a property: received + payoff + commission +
fees == principal, to the cent, in the ledger."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import IdempotencyConflict, InvalidInput, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.verify import verify_ledger
from core.loans import book, disbursement, guarantees
from core.loans.close_of_day import run_step
from core.loans.errors import LoanRefused, TopUpRefused
from core.loans.repayments import Repayment, repay_loan
from core.loans.vocabulary import CloseDayStep, RepaymentSource
from core.members.registration import member_account_ids
from db.models import AuditEvent, Hold, JournalEntry, Member, OutboxMessage, Posting
from db.models_loans import (
    Loan,
    LoanApplication,
    LoanGuarantee,
    LoanInstalment,
    LoanProduct,
    LoanRepayment,
)
from tests.loanutil import funded_member, make_product

KES = 100
START = datetime(2026, 1, 10, 9, tzinfo=UTC)  # the first loans are paid out on 10 January


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def fees(commission: str | None = "2", processing: str | None = "1") -> list[dict[str, Any]]:
    out = []
    if processing is not None:
        out.append({"kind": "processing", "percent": Decimal(processing),
                    "timing": "deducted_at_disbursement"})  # fmt: skip
    if commission is not None:
        out.append({"kind": "top_up_commission", "percent": Decimal(commission),
                    "timing": "deducted_at_disbursement"})  # fmt: skip
    return out


def product(s: Session, deps: CoreDeps, **changes: Any) -> LoanProduct:
    """1% a month reducing, to the cent, auto-approved, top-ups after one instalment, a 1%
    processing fee and a 2% top-up commission (unless changed)."""
    changes.setdefault("fees", fees())
    return make_product(
        s, deps, **{"rounding": "cent", "auto_approve_ceiling_cents": 500_000_000,
                    "guarantor_policy": "none", "guarantor_cover_percent": None,
                    "top_up_min_instalments_paid": 1, **changes},
    )  # fmt: skip


def first_loan(
    s: Session, deps: CoreDeps, prod: LoanProduct, borrower: Member, amount: int = 100_000 * KES
) -> Loan:
    """A loan paid out on START (approved by staff when the product auto-approves none)."""
    start = dataclasses.replace(deps, now=lambda: START)
    application = book.apply_for_loan(
        s, start, borrower.id, prod.code, amount, 12, "staff", f"first-{uuid4().hex[:10]}"
    )
    if application.status == "pending_approval":
        disbursement.approve_application(s, start, SYSTEM, application.id)
        return disbursement.disburse_to_savings(s, start, SYSTEM, application.id)
    return new_loan(s, application)


def rows(s: Session, loan: Loan) -> list[LoanInstalment]:
    return list(
        s.scalars(
            select(LoanInstalment)
            .where(LoanInstalment.loan_id == loan.id)
            .order_by(LoanInstalment.number)
        )
    )


def pay_instalments(s: Session, deps: CoreDeps, loan: Loan, count: int) -> None:
    for row in rows(s, loan)[:count]:
        key = f"mpesa:receipt:T{loan.id:04d}{row.number:04d}"
        repay_loan(
            s, on(deps, row.due_on),
            Repayment(amount_cents=row.due_cents, source=RepaymentSource.MPESA,
                      idempotency_key=key, business_key=key, loan_id=loan.id),
        )  # fmt: skip


def balance(s: Session, account: SystemAccount | int) -> int:
    account_id = account if isinstance(account, int) else ledger.account_id_by_code(s, account)
    return ledger.get_balance(s, account_id).balance_cents


def savings(s: Session, member: Member) -> int:
    return balance(s, member_account_ids(s, member.id)[Purpose.SAVINGS])


def percent_of(cents: int, percent: str) -> int:
    share = Decimal(cents) * Decimal(percent) / 100
    return int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def sms(s: Session, member: Member, template: str) -> list[str]:
    return list(
        s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == template
            )
        )
    )


def footprint(s: Session) -> tuple[int, ...]:
    return tuple(
        s.scalar(select(func.count()).select_from(model)) or 0
        for model in (
            LoanApplication,
            Loan,
            LoanRepayment,
            LoanGuarantee,
            Hold,
            JournalEntry,
            OutboxMessage,
            AuditEvent,
        )  # fmt: skip
    )


def refuses(s: Session, call: Callable[[], object], error: type[Exception]) -> Any:
    before = footprint(s)
    with pytest.raises(error) as refused:
        call()
    assert footprint(s) == before, "a refusal wrote something"
    return refused.value


def pledge(
    s: Session,
    deps: CoreDeps,
    application: LoanApplication,
    borrower: Member,
    guarantor: Member,
    amount_cents: int,
    *,
    accepted_on: CoreDeps | None = None,
) -> LoanGuarantee:
    """``guarantor`` is asked to pledge ``amount_cents`` for ``application`` and accepts
    (on ``accepted_on``'s clock when given)."""
    asked = guarantees.request_guarantee(
        s,
        deps,
        application_id=application.id,
        borrower_id=borrower.id,
        guarantor=guarantor.member_number or "",
        amount_cents=amount_cents,
    )
    guarantees.accept_guarantee(
        s, accepted_on or deps, guarantee_id=asked.id, guarantor_id=guarantor.id
    )
    return asked


def new_loan(s: Session, application: LoanApplication) -> Loan:
    return s.scalars(select(Loan).where(Loan.application_id == application.id)).one()


# ------------------------------------------------------------------ the whole top-up


def test_a_top_up_clears_the_old_loan_in_its_own_entry_and_releases_its_pledges(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    prod = product(s, deps, guarantor_policy="required", guarantor_cover_percent=Decimal("100"))
    borrower = funded_member(s, deps, deposits_cents=50_000 * KES)
    start = dataclasses.replace(deps, now=lambda: START)
    first = book.apply_for_loan(
        s, start, borrower.id, prod.code, 100_000 * KES, 12, "staff", "topup-first-01"
    )
    old_guarantor = funded_member(s, deps, deposits_cents=90_000 * KES, name="Otieno Kamau")
    pledge(s, start, first, borrower, old_guarantor, 50_000 * KES)
    old = new_loan(s, first)
    schedule = rows(s, old)
    pay_instalments(s, deps, old, 1)
    # On the second due date, that instalment unpaid (due today, not in arrears).
    day = on(deps, schedule[1].due_on)
    payoff = schedule[1].interest_cents + sum(r.principal_cents for r in schedule[1:])
    commission = percent_of(payoff, "2")
    processing = 120_000 * KES // 100
    before = {
        "savings": savings(s, borrower),
        "fees": balance(s, SystemAccount.FEE_INCOME),
        "interest": balance(s, SystemAccount.LOAN_INTEREST_INCOME),
    }
    # 3 x 50,000 = 150,000: within the limit only because the old loan is replaced.
    application = book.apply_for_loan(
        s, day, borrower.id, prod.code, 120_000 * KES, 12, "staff", "topup-second-1",
        top_up_of=old.reference.lower(),
    )  # fmt: skip
    assert application.top_up_of_loan_id == old.id and application.limit_cents == 150_000 * KES
    assert (application.top_up_payoff_cents, application.top_up_commission_cents) == (
        payoff,
        commission,
    )
    assert application.status == "awaiting_guarantors"  # 120,000 less own 50,000
    new_guarantor = funded_member(s, deps, deposits_cents=80_000 * KES, name="Njeri Mwangi")
    pledge(s, day, application, borrower, new_guarantor, 70_000 * KES)
    assert application.status == "disbursed"  # auto-approved within the ceiling
    loan = new_loan(s, application)
    received = 120_000 * KES - payoff - commission - processing
    assert (loan.top_up_of_loan_id, loan.top_up_payoff_cents) == (old.id, payoff)
    assert loan.top_up_commission_cents == commission and loan.deducted_fee_cents == processing
    # The ledger: one entry, the old loan at zero, each income with its part.
    assert old.status == "closed" and balance(s, old.account_id) == 0
    assert balance(s, loan.account_id) == 120_000 * KES
    assert savings(s, borrower) - before["savings"] == received
    assert balance(s, SystemAccount.FEE_INCOME) - before["fees"] == processing + commission
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) - before["interest"] == (
        schedule[1].interest_cents
    )
    postings = select(Posting.account_id, Posting.amount_cents).where(
        Posting.entry_id == loan.disbursement_entry_id
    )
    legs = dict(s.execute(postings).tuples().all())
    assert legs[loan.account_id] == 120_000 * KES
    assert legs[old.account_id] == -sum(r.principal_cents for r in schedule[1:])
    assert legs[member_account_ids(s, borrower.id)[Purpose.SAVINGS]] == -received
    assert sum(legs.values()) == 0 and len(legs) == 5
    assert verify_ledger(s).ok
    # The old loan's side: its instalments paid, the interest not yet due waived.
    [settled] = s.scalars(select(LoanRepayment).where(LoanRepayment.source == "top_up",
                                                       LoanRepayment.loan_id == old.id))  # fmt: skip
    assert settled.entry_id == loan.disbursement_entry_id and settled.closed_loan
    assert settled.amount_cents == payoff and settled.to_savings_cents == 0
    assert settled.waived_interest_cents == sum(r.interest_cents for r in schedule[2:])
    assert all(
        r.paid_principal_cents == r.principal_cents
        and r.paid_interest_cents + r.waived_interest_cents == r.interest_cents
        for r in rows(s, old)
    )
    # Pledges: the old loan's given back, the new loan's attached.
    [old_pledge] = s.scalars(select(LoanGuarantee).where(LoanGuarantee.loan_id == old.id))
    assert old_pledge.status == "released"
    assert s.get_one(Hold, old_pledge.hold_id).status == "released"
    assert sms(s, old_guarantor, "guarantee_released")
    [new_pledge] = s.scalars(select(LoanGuarantee).where(LoanGuarantee.loan_id == loan.id))
    assert new_pledge.status == "accepted"
    # The member's SMS: the old loan paid off and what reached savings.
    [told] = sms(s, borrower, "loan_topped_up")
    assert f"paid off loan {old.reference}" in told
    assert f"{format_cents(received)} to savings" in told


def test_commission_is_the_products_percent_of_the_balance_cleared(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    day = None
    for percent in (None, "1.5", "3.25"):
        prod = product(s, deps, fees=fees(commission=percent, processing=None))
        borrower = funded_member(s, deps, deposits_cents=50_000 * KES)
        old = first_loan(s, deps, prod, borrower)
        pay_instalments(s, deps, old, 1)
        day = on(deps, date(2026, 2, 20))
        before = balance(s, SystemAccount.FEE_INCOME)
        application = book.apply_for_loan(
            s, day, borrower.id, prod.code, 110_000 * KES, 12, "staff",
            f"commission-{borrower.id}", top_up_of=old.id,
        )  # fmt: skip
        loan = new_loan(s, application)
        payoff = sum(r.principal_cents for r in rows(s, old)[1:])  # nothing due on the 20th
        expected = percent_of(payoff, percent) if percent else 0
        assert loan.top_up_payoff_cents == payoff
        assert loan.top_up_commission_cents == application.top_up_commission_cents == expected
        assert balance(s, SystemAccount.FEE_INCOME) - before == expected
    assert verify_ledger(s).ok


def test_the_payoff_is_recomputed_at_disbursement(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    prod = product(s, deps, auto_approve_ceiling_cents=0)  # staff approve
    borrower = funded_member(s, deps, deposits_cents=50_000 * KES)
    old = first_loan(s, deps, prod, borrower)
    schedule = rows(s, old)
    pay_instalments(s, deps, old, 1)
    applied = on(deps, date(2026, 2, 20))
    application = book.apply_for_loan(
        s, applied, borrower.id, prod.code, 110_000 * KES, 12, "staff", "recompute-001",
        top_up_of=old.reference,
    )  # fmt: skip
    shown = application.top_up_payoff_cents
    assert application.status == "pending_approval" and shown == old_balance(s, old)
    # Approved on the next due date: that instalment's interest is now due as well.
    later = on(deps, schedule[1].due_on)
    disbursement.approve_application(s, later, SYSTEM, application.id)
    loan = disbursement.disburse_to_savings(s, later, SYSTEM, application.id)
    assert loan.top_up_payoff_cents == shown + schedule[1].interest_cents
    assert loan.top_up_commission_cents == percent_of(loan.top_up_payoff_cents, "2")
    assert old.status == "closed" and balance(s, old.account_id) == 0
    assert verify_ledger(s).ok


def test_interest_close_of_day_accrued_on_the_old_loan_is_settled_by_the_top_up(
    db_session: Session, deps: CoreDeps
) -> None:
    """Close of day has moved part of the old loan's interest into interest receivable;
    the top-up's entry settles it there (not in income a second time), as a repayment does."""
    s = db_session
    prod = product(s, deps, auto_approve_ceiling_cents=0)
    borrower = funded_member(s, deps, deposits_cents=50_000 * KES)
    old = first_loan(s, deps, prod, borrower)
    pay_instalments(s, deps, old, 1)
    closed_day = date(2026, 2, 19)
    for step in (CloseDayStep.ACCRUE, CloseDayStep.CLASSIFY):
        run_step(s, on(deps, closed_day + timedelta(days=1)), closed_day, step)
    accrued = balance(s, SystemAccount.INTEREST_RECEIVABLE)
    assert accrued > 0  # the second instalment's interest, accrued day by day
    income_before = balance(s, SystemAccount.LOAN_INTEREST_INCOME)
    day = on(deps, date(2026, 2, 20))
    application = book.apply_for_loan(
        s, day, borrower.id, prod.code, 110_000 * KES, 12, "staff", "accrued-topup-1",
        top_up_of=old.id,
    )  # fmt: skip
    disbursement.approve_application(s, day, SYSTEM, application.id)
    disbursement.disburse_to_savings(s, day, SYSTEM, application.id)
    assert old.status == "closed"
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == 0
    # Interest not yet due is waived on the payoff: what was accrued leaves income again.
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) == income_before - accrued
    assert verify_ledger(s).ok


def old_balance(s: Session, loan: Loan) -> int:
    return balance(s, loan.account_id)


def test_the_same_key_and_a_second_disbursement_write_nothing(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    prod = product(s, deps)
    borrower = funded_member(s, deps, deposits_cents=50_000 * KES)
    old = first_loan(s, deps, prod, borrower)
    pay_instalments(s, deps, old, 1)
    day = on(deps, date(2026, 2, 20))

    def apply(**kw: Any) -> LoanApplication:
        return book.apply_for_loan(
            s, day, borrower.id, prod.code, 110_000 * KES, 12, "staff", "same-key-001", **kw
        )

    application = apply(top_up_of=old.id)
    loan = new_loan(s, application)
    seen = footprint(s)
    assert apply(top_up_of=old.reference).id == application.id
    again = disbursement.disburse_to_savings(s, day, SYSTEM, application.id)
    assert again.id == loan.id and footprint(s) == seen
    refuses(s, lambda: apply(), IdempotencyConflict)  # the key for a plain loan: no
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ refusals


@pytest.fixture
def topped(db_session: Session, deps: CoreDeps) -> tuple[LoanProduct, Loan, Member]:
    prod = product(db_session, deps)
    borrower = funded_member(db_session, deps, deposits_cents=50_000 * KES)
    old = first_loan(db_session, deps, prod, borrower)
    pay_instalments(db_session, deps, old, 1)
    return prod, old, borrower


def top_up(
    s: Session, deps: CoreDeps, borrower: Member, code: str, of: object, amount: Any = None
) -> Callable[[], object]:
    return lambda: book.apply_for_loan(
        s, deps, borrower.id, code, 110_000 * KES if amount is None else amount, 12, "staff",
        f"refused-{uuid4().hex[:8]}", top_up_of=of,  # type: ignore[arg-type]
    )  # fmt: skip


def test_an_old_loan_in_arrears_is_not_topped_up(
    db_session: Session, deps: CoreDeps, topped: tuple[LoanProduct, Loan, Member]
) -> None:
    s, (prod, old, borrower) = db_session, topped
    late = on(deps, rows(s, old)[1].due_on.replace(day=11))  # the day after the 2nd due date
    refused = refuses(s, top_up(s, late, borrower, prod.code, old.id), LoanRefused)
    assert refused.reason == "in_arrears"


def test_a_top_up_that_leaves_nothing_to_receive_is_refused(
    db_session: Session, deps: CoreDeps, topped: tuple[LoanProduct, Loan, Member]
) -> None:
    s, (prod, old, borrower) = db_session, topped
    day = on(deps, date(2026, 2, 20))
    payoff = old_balance(s, old)
    # Exactly the payoff: the commission and the fee take more than is left.
    refused = refuses(s, top_up(s, day, borrower, prod.code, old.id, payoff), TopUpRefused)
    assert refused.reason == "nothing_to_receive"
    assert refused.context["payoff_cents"] == payoff


def test_another_members_loan_a_made_up_one_and_bad_input_are_not_found(
    db_session: Session, deps: CoreDeps, topped: tuple[LoanProduct, Loan, Member]
) -> None:
    s, (prod, old, borrower) = db_session, topped
    day = on(deps, date(2026, 2, 20))
    other = funded_member(s, deps, deposits_cents=50_000 * KES)
    for of in (old.id, old.reference, 10**9, "LZZZZZZZ", True, 1.5, "x" * 10_000):
        refuses(s, top_up(s, day, other, prod.code, of), NotFound)
    refuses(s, top_up(s, day, borrower, prod.code, old.id, 1e9), InvalidInput)
    refuses(s, top_up(s, day, borrower, prod.code, old.id, -5), InvalidInput)


def test_a_top_up_is_paid_to_savings_only(
    db_session: Session, deps: CoreDeps, topped: tuple[LoanProduct, Loan, Member]
) -> None:
    """What a top-up leaves is known only at disbursement, after an M-Pesa payout's checks
    would have run: asking for M-Pesa is refused before anything is written."""
    s, (prod, old, borrower) = db_session, topped
    day = on(deps, date(2026, 2, 20))
    refused = refuses(
        s,
        lambda: book.apply_for_loan(
            s,
            day,
            borrower.id,
            prod.code,
            110_000 * KES,
            12,
            "staff",
            "topup-mpesa-1",
            top_up_of=old.id,
            disburse_to="mpesa",
        ),  # fmt: skip
        InvalidInput,
    )
    assert refused.context["field"] == "disburse_to"


def test_a_closed_loan_another_product_and_a_product_without_top_ups_are_refused(
    db_session: Session, deps: CoreDeps, topped: tuple[LoanProduct, Loan, Member]
) -> None:
    s, (prod, old, borrower) = db_session, topped
    day = on(deps, date(2026, 2, 20))
    other = product(s, deps)
    refused = refuses(s, top_up(s, day, borrower, other.code, old.id), TopUpRefused)
    assert refused.reason == "other_product"
    never = product(s, deps, top_up_min_instalments_paid=None)
    refused = refuses(s, top_up(s, day, borrower, never.code, old.id), TopUpRefused)
    assert refused.reason == "not_offered"
    early = product(s, deps, top_up_min_instalments_paid=2)
    young = first_loan(s, deps, early, funded_member(s, deps, deposits_cents=50_000 * KES))
    pay_instalments(s, deps, young, 1)
    owner = s.get_one(Member, young.member_id)
    refused = refuses(s, top_up(s, day, owner, early.code, young.id), TopUpRefused)
    assert (refused.reason, refused.context["instalments_paid"]) == ("too_early", 1)
    key = "mpesa:receipt:CLOSE00001"
    repay_loan(
        s, day,
        Repayment(amount_cents=old_balance(s, old), source=RepaymentSource.MPESA,
                  idempotency_key=key, business_key=key, loan_id=old.id),
    )  # fmt: skip
    assert old.status == "closed"
    refused = refuses(s, top_up(s, day, borrower, prod.code, old.id), TopUpRefused)
    assert refused.reason == "loan_not_active"


def test_a_payoff_grown_past_the_principal_is_refused_at_approval_and_at_disbursement(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    prod = product(s, deps, auto_approve_ceiling_cents=0, fees=[])
    borrower = funded_member(s, deps, deposits_cents=50_000 * KES)
    old = first_loan(s, deps, prod, borrower)
    schedule = rows(s, old)
    pay_instalments(s, deps, old, 1)
    applied = on(deps, date(2026, 2, 20))
    amount = old_balance(s, old) + 100 * KES  # KES 100 to receive today
    application = book.apply_for_loan(
        s, applied, borrower.id, prod.code, amount, 12, "staff", "grown-00001", top_up_of=old.id
    )
    later = on(deps, schedule[1].due_on)  # the 2nd instalment's interest (> KES 100) now due
    refused = refuses(
        s, lambda: disbursement.approve_application(s, later, SYSTEM, application.id),
        TopUpRefused,
    )  # fmt: skip
    assert refused.reason == "nothing_to_receive"
    application.status = "approved"  # approved meanwhile: the disbursement checks again
    s.flush()
    refused = refuses(
        s, lambda: disbursement.disburse_to_savings(s, later, SYSTEM, application.id),
        TopUpRefused,
    )  # fmt: skip
    assert refused.reason == "nothing_to_receive" and old.status == "active"
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ property


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first_kes=st.integers(min_value=5_000, max_value=100_000),
    paid=st.integers(min_value=1, max_value=3),
    extra_days=st.integers(min_value=0, max_value=27),
    new_kes=st.integers(min_value=1_000, max_value=300_000),
    commission=st.sampled_from([None, "0.5", "2", "3.3333"]),
    processing=st.sampled_from([None, "1", "2.5"]),
)
def test_received_payoff_commission_and_fees_add_up_to_the_principal(
    db_session: Session,
    deps: CoreDeps,
    first_kes: int,
    paid: int,
    extra_days: int,
    new_kes: int,
    commission: str | None,
    processing: str | None,
) -> None:
    s = db_session
    prod = product(s, deps, fees=fees(commission, processing))
    borrower = funded_member(s, deps, deposits_cents=100_000 * KES)
    old = first_loan(s, deps, prod, borrower, first_kes * KES)
    pay_instalments(s, deps, old, paid)
    due = rows(s, old)[paid - 1].due_on
    day = on(deps, date.fromordinal(due.toordinal() + extra_days))
    before = (savings(s, borrower), balance(s, SystemAccount.FEE_INCOME))
    try:
        application = book.apply_for_loan(
            s, day, borrower.id, prod.code, new_kes * KES, 12, "staff",
            f"property-{borrower.id}", top_up_of=old.id,
        )  # fmt: skip
    except TopUpRefused as refused:
        assert refused.reason == "nothing_to_receive" and refused.context["received_cents"] <= 0
        return
    loan = new_loan(s, application)
    received = savings(s, borrower) - before[0]
    assert received > 0
    assert (
        received + loan.top_up_payoff_cents + loan.top_up_commission_cents
        + loan.deducted_fee_cents == loan.principal_cents
    )  # fmt: skip
    assert balance(s, SystemAccount.FEE_INCOME) - before[1] == (
        loan.deducted_fee_cents + loan.top_up_commission_cents
    )
    assert old.status == "closed" and balance(s, old.account_id) == 0
    assert verify_ledger(s).ok


def test_a_guarantor_accepting_after_the_payoff_grew_leaves_the_top_up_to_staff(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    cover = {"guarantor_policy": "required", "guarantor_cover_percent": Decimal("100")}
    prod = product(s, deps, fees=[], **cover)
    borrower = funded_member(s, deps, deposits_cents=20_000 * KES)
    start = dataclasses.replace(deps, now=lambda: START)
    first = book.apply_for_loan(
        s, start, borrower.id, prod.code, 50_000 * KES, 12, "staff", "accept-late-00"
    )
    backer = funded_member(s, deps, deposits_cents=40_000 * KES, name="Njeri Mwangi")
    pledge(s, start, first, borrower, backer, 30_000 * KES)
    old = new_loan(s, first)
    schedule = rows(s, old)
    pay_instalments(s, deps, old, 1)
    applied = on(deps, date(2026, 2, 20))
    application = book.apply_for_loan(
        s, applied, borrower.id, prod.code, old_balance(s, old) + 100 * KES, 12, "staff",
        "accept-late-01", top_up_of=old.id,
    )  # fmt: skip
    assert application.status == "awaiting_guarantors"
    guarantor = funded_member(s, deps, deposits_cents=90_000 * KES, name="Otieno Kamau")
    later = on(deps, schedule[1].due_on)  # the 2nd instalment's interest is now due too
    asked = pledge(
        s,
        applied,
        application,
        borrower,
        guarantor,
        application.guarantor_cover_cents,
        accepted_on=later,
    )
    assert application.status == "pending_approval"  # the pledge stands; staff decide
    assert application.reasons == "top_up_nothing_to_receive"
    assert old.status == "active" and asked.status == "accepted"
    assert verify_ledger(s).ok
