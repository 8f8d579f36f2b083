"""Top-ups (issue 12, part 7; docs/loans/book.md, "Top-ups"): a new loan that first clears
an active loan of the same member and product, in the same transaction and the same ledger
entry, with the product's commission on the balance cleared.

Applying (``core.loans.book.apply_for_loan(..., top_up_of=...)``): ``loan_to_clear`` finds
the member's loan (another member's is ``not_found``); ``check_may_top_up`` applies the
product's rules; ``facts_without`` takes the loan out of the principal outstanding the
limit counts (it is replaced, not added to); ``clearing`` works out the payoff today (the
repayments' rule, ``core.loans.repayments.payoff_cents``) and the commission, and
``check_receives`` refuses a top-up that would leave the member nothing.

Disbursing (``core.loans.disbursement.disburse_to_savings``): ``settle`` locks the old loan
and its instalments, recomputes the payoff that day through the repayments' allocation
(``allocate``: what is due by part, then the principal and fees not yet due, the interest
not yet due waived) and refuses again when nothing is left; ``settlement_legs`` are the
credits the disbursement entry adds; ``record`` then writes the old loan's side: its
instalments paid, the loan closed, a ``loan_repayments`` row (source ``top_up``) pointing at
the disbursement entry, its pledges released and partners told (``loan.repaid``).

Never commits (``core.kernel.uow``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import NotFound
from core.kernel.money import format_cents
from core.ledger import entries as ledger
from core.loans import close_of_day, repayments
from core.loans.appraisal import MemberFacts
from core.loans.errors import TopUpRefused
from core.loans.references import normalize_loan_reference
from core.loans.terms import ProductTerms, version_terms
from core.loans.vocabulary import LoanStatus, RepaymentSource
from core.members.registration import get_member
from db.models_loans import Loan, LoanApplication, LoanInstalment, LoanRepayment


@dataclass(frozen=True)
class Clearing:
    """What a top-up clears and what it charges for it."""

    loan_id: int
    reference: str
    payoff_cents: int  # what pays the old loan off (core.loans.repayments.payoff_cents)
    commission_cents: int  # the product's top_up_commission on that payoff


def received_cents(
    principal_cents: int, deducted_fee_cents: int, payoff_cents: int, commission_cents: int
) -> int:
    """What reaches the member's savings: the new principal less the old loan's payoff, the
    commission and the fees deducted at disbursement."""
    return principal_cents - payoff_cents - commission_cents - deducted_fee_cents


def loan_to_clear(session: Session, member_id: int, top_up_of: object) -> Loan:
    """The member's loan that ``top_up_of`` names: its id, or its reference as typed (any
    case, ``-`` or spaces). ``NotFound`` when there is none or it is another member's (a
    tampered id learns nothing)."""
    query = select(Loan)
    if isinstance(top_up_of, bool):
        raise NotFound("no such loan to top up")
    if isinstance(top_up_of, int):
        query = query.where(Loan.id == top_up_of)
    else:
        reference = normalize_loan_reference(top_up_of) if isinstance(top_up_of, str) else None
        if reference is None:
            raise NotFound("no such loan to top up")
        query = query.where(Loan.reference == reference)
    loan = session.scalar(query)
    if loan is None or loan.member_id != member_id:
        raise NotFound("no such loan to top up")
    return loan


def instalments_paid(rows: Sequence[LoanInstalment]) -> int:
    """Instalments paid in full: every part paid (interest paid or waived)."""
    return sum(
        1
        for i in rows
        if i.paid_principal_cents == i.principal_cents
        and i.paid_fee_cents == i.fee_cents
        and i.paid_interest_cents + i.waived_interest_cents == i.interest_cents
    )


def check_may_top_up(session: Session, terms: ProductTerms, loan: Loan) -> None:
    """The product's rules for topping up ``loan`` with a new loan under ``terms``
    (``TopUpRefused``): the loan active, the product offering top-ups, the same product,
    and at least the product's ``top_up_min_instalments_paid`` instalments paid in full.
    Arrears on it are the appraisal's (``in_arrears``), as for any new loan."""
    if loan.status != LoanStatus.ACTIVE:
        raise TopUpRefused(f"loan {loan.reference} is {loan.status}", reason="loan_not_active")
    needed = terms.top_up_min_instalments_paid
    if needed is None:
        raise TopUpRefused(f"{terms.name} offers no top-ups", reason="not_offered")
    if version_terms(session, loan.product_version_id).product_id != terms.product_id:
        raise TopUpRefused(
            f"loan {loan.reference} is not a {terms.name}: top up with its own product",
            reason="other_product",
        )
    paid = instalments_paid(repayments.instalments_of(session, loan.id))
    if paid < needed:
        raise TopUpRefused(
            f"{paid} of the {needed} instalments a top-up needs are paid",
            reason="too_early",
            instalments_paid=paid,
            instalments_needed=needed,
        )


def facts_without(session: Session, facts: MemberFacts, loan: Loan | None) -> MemberFacts:
    """The member's facts with ``loan``'s principal outstanding left out of the limit: a
    top-up replaces the loan it clears."""
    if loan is None or loan.status != LoanStatus.ACTIVE:
        return facts
    balance = ledger.get_balance(session, loan.account_id).balance_cents
    return dataclasses.replace(
        facts, principal_outstanding_cents=max(0, facts.principal_outstanding_cents - balance)
    )


def clearing(
    session: Session, deps: CoreDeps, terms: ProductTerms, loan: Loan, term: int
) -> Clearing:
    """The payoff of ``loan`` today and the commission a top-up of ``term`` instalments
    under ``terms`` charges on it (what the member is shown when applying)."""
    today = business_date(deps.now())
    payoff = repayments.payoff_cents(
        repayments.owed_of(session, loan, repayments.instalments_of(session, loan.id), today),
        version_terms(session, loan.product_version_id).early_payoff_interest,
    )
    return Clearing(loan.id, loan.reference, payoff, terms.top_up_commission_cents(payoff, term))


def check_receives(principal_cents: int, deducted_fee_cents: int, cleared: Clearing) -> int:
    """What the member receives; ``TopUpRefused`` ``nothing_to_receive`` when that is zero
    or less (a top-up must pay something out, or it is only a reschedule)."""
    got = received_cents(
        principal_cents, deducted_fee_cents, cleared.payoff_cents, cleared.commission_cents
    )
    if got <= 0:
        raise TopUpRefused(
            f"the payoff of loan {cleared.reference} ({format_cents(cleared.payoff_cents)}), "
            f"the commission ({format_cents(cleared.commission_cents)}) and the fees "
            f"({format_cents(deducted_fee_cents)}) take the whole "
            f"{format_cents(principal_cents)}",
            reason="nothing_to_receive",
            payoff_cents=cleared.payoff_cents,
            commission_cents=cleared.commission_cents,
            received_cents=got,
        )
    return got


# ------------------------------------------------------------------ at disbursement


@dataclass(frozen=True)
class Settlement:
    """The old loan's side of a top-up's disbursement, worked out before any write."""

    loan: Loan
    instalments: list[LoanInstalment]
    split: repayments.Allocation
    clearing: Clearing


def settle(
    session: Session,
    deps: CoreDeps,
    application: LoanApplication,
    terms: ProductTerms,
    deducted_fee_cents: int,
) -> Settlement | None:
    """Lock the loan ``application`` tops up and its instalments, and split its payoff
    today as a repayment would. None when it was repaid meanwhile (closed: nothing left
    to clear, the loan is paid out as any other). ``TopUpRefused`` when it was written
    off, or when nothing would reach the member."""
    assert application.top_up_of_loan_id is not None
    loan = session.scalar(
        select(Loan)
        .where(Loan.id == application.top_up_of_loan_id)
        .with_for_update(key_share=True)  # as a repayment (core.loans.repayments._lock_loan)
        .execution_options(populate_existing=True)
    )
    if loan is None or loan.member_id != application.member_id:  # never: written by apply
        raise NotFound("no such loan to top up")
    if loan.status == LoanStatus.CLOSED:
        return None
    if loan.status != LoanStatus.ACTIVE:
        raise TopUpRefused(f"loan {loan.reference} is {loan.status}", reason="loan_not_active")
    close_of_day.catch_up_loan(session, deps, loan.id)  # before the instalments: lock order
    rows = repayments.instalments_of(session, loan.id, lock=True)
    owed = repayments.owed_of(session, loan, rows, business_date(deps.now()))
    rules = version_terms(session, loan.product_version_id)  # the old loan's own version
    payoff = repayments.payoff_cents(owed, rules.early_payoff_interest)
    split = repayments.allocate(owed, payoff, rules.allocation_order, rules.early_payoff_interest)
    if not split.closes or split.to_savings_cents:  # the payoff rule and the allocation agree
        raise AssertionError(f"the payoff of loan {loan.reference} does not close it")
    cleared = Clearing(
        loan.id, loan.reference, payoff, terms.top_up_commission_cents(payoff, application.term)
    )
    check_receives(application.amount_cents, deducted_fee_cents, cleared)
    return Settlement(loan, rows, split, cleared)


def settlement_legs(session: Session, settlement: Settlement) -> list[ledger.Leg]:
    """The old loan's credits in the disbursement entry: its account with the principal,
    interest, fee income and penalty receivable with theirs (``repayments.settlement_legs``)."""
    return repayments.settlement_legs(session, settlement.loan, settlement.split)


def record(
    session: Session,
    deps: CoreDeps,
    settlement: Settlement,
    application: LoanApplication,
    *,
    entry_id: int,
) -> None:
    """Once the disbursement entry is posted: the old loan's instalments paid (and the
    interest not yet due waived), the loan closed, a ``loan_repayments`` row (source
    ``top_up``, keyed ``loan.top_up:<application id>``, its entry the disbursement's), its
    pledges released (``guarantee_released`` to each guarantor) and the ``loan.repaid``
    event for partners. The member's SMS is the disbursement's (``loan_topped_up``)."""
    loan, split, now = settlement.loan, settlement.split, deps.now()
    repayments.mark_paid(settlement.instalments, split)
    loan.status = LoanStatus.CLOSED
    loan.closed_at = now
    session.flush()
    if split.loan_cents:
        key = f"loan.top_up:{application.id}"
        row = LoanRepayment(
            loan_id=loan.id,
            idempotency_key=key,
            business_key=f"loan_repaid:top_up:{application.id}",
            source=RepaymentSource.TOP_UP,
            amount_cents=split.loan_cents,
            penalty_cents=split.penalty_cents,
            fee_cents=split.fee_cents,
            interest_cents=split.interest_cents,
            principal_cents=split.principal_cents,
            waived_interest_cents=split.waived_interest_cents,
            to_savings_cents=0,
            balance_after_cents=0,
            entry_id=entry_id,
            savings_entry_id=None,
            receipt=None,
            closed_loan=True,
            value_date=business_date(now),
            created_at=now,
        )
        session.add(row)
        session.flush()
        told = repayments.Repayment(
            amount_cents=split.loan_cents, source=RepaymentSource.TOP_UP, idempotency_key=key,
            business_key=row.business_key, loan_id=loan.id,
        )  # fmt: skip
        repayments._publish(  # the same event as any repayment, source top_up
            session, deps, loan, get_member(session, loan.member_id), told,
            repayments._repaid(session, loan, row, created=True),
        )  # fmt: skip
    repayments.release_pledges(session, deps, loan)
