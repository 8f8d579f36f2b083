"""What the member channels show of the loan book: read-only queries, no writes.

The USSD Loans menu and the SMS commands (``LIMIT``, ``LOAN``, ``ACCEPT``) read the book
through these and nothing else; the verbs stay where they are (``book``, ``guarantees``).

* ``open_products``: the products a member may apply for on a channel (active, open to it).
* ``member_limits`` / ``main_limit``: per product, the appraisal's limit now, or its main
  reason (``core.loans.appraisal.Reason``) when the member cannot borrow under it.
* ``member_loans`` / ``latest``: the member's loans (balance, next instalment and its date,
  arrears) and applications not (yet) disbursed, newest first.
* ``waiting_requests`` / ``request_by_code``: guarantee requests waiting for a member's
  answer: the borrower, the loan asked, the pledge asked and the member's own exposure.
* ``guarantor_need``: the member's application waiting for guarantors and what its cover
  still misses.
* ``top_up_offer`` / ``top_up_quote``: what a member channel shows before a top-up (the
  balance it clears, the most the new loan may be; then the commission, what reaches
  savings and the new instalment), with the refusals ``book.apply_for_loan(top_up_of=...)``
  would give, read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.loans import book, top_ups
from core.loans.appraisal import MemberFacts
from core.loans.errors import LoanRefused
from core.loans.facts import free_deposits_cents, member_facts
from core.loans.pledges import cover
from core.loans.terms import ProductTerms, current_products, current_terms, version_terms
from core.loans.vocabulary import ApplicationStatus, GuaranteeStatus, LoanStatus
from core.members.registration import find_by_msisdn, get_member
from core.scoring.scores import appraise_member
from db.models import Account, Member
from db.models_loans import Loan, LoanApplication, LoanGuarantee, LoanInstalment

MAX_PRODUCTS = 60  # a Choose offers at most 60 items
MAX_LINES = 20  # loans and applications listed, newest first


def open_products(session: Session, channel: str) -> list[ProductTerms]:
    """Active products open to ``channel``, in the order they were created."""
    found = [terms for terms in current_products(session, active=True) if channel in terms.channels]
    return found[:MAX_PRODUCTS]


@dataclass(frozen=True)
class ProductLimit:
    code: str
    name: str
    limit_cents: int  # what the member may borrow now (0 when a reason stops them)
    reason: str | None  # the appraisal's main reason, or None: they may borrow the limit
    min_amount_cents: int


def _limit(
    session: Session, deps: CoreDeps, member_id: int, terms: ProductTerms, facts: MemberFacts
) -> ProductLimit:
    found = appraise_member(session, deps, terms, member_id, facts, keep=False)
    reason = found.main_reason
    return ProductLimit(
        code=terms.code,
        name=terms.name,
        limit_cents=found.limit_cents if reason is None else 0,
        reason=None if reason is None else str(reason),
        min_amount_cents=terms.min_amount_cents,
    )


def member_limits(
    session: Session, deps: CoreDeps, member_id: int, products: list[ProductTerms]
) -> list[ProductLimit]:
    """The member's limit (or main reason) under each of ``products``; one read of the
    member's facts for all."""
    if not products:
        return []
    facts = member_facts(session, get_member(session, member_id), business_date(deps.now()))
    return [_limit(session, deps, member_id, terms, facts) for terms in products]


def product_limit(
    session: Session, deps: CoreDeps, member_id: int, terms: ProductTerms
) -> ProductLimit:
    return member_limits(session, deps, member_id, [terms])[0]


def check_amount(
    session: Session, deps: CoreDeps, member_id: int, terms: ProductTerms, amount_cents: int
) -> None:
    """``LoanRefused`` (every reason, most fundamental first, and the limit) unless the
    member may ask ``amount_cents`` under ``terms`` now: the appraisal ``apply_for_loan``
    will make, asked before the member goes on to the term and the quote."""
    facts = member_facts(session, get_member(session, member_id), business_date(deps.now()))
    found = appraise_member(session, deps, terms, member_id, facts, amount_cents, keep=False)
    if not found.ok:
        raise LoanRefused.of(found, terms.min_score)


def main_limit(
    session: Session, deps: CoreDeps, member_id: int, channels: tuple[str, ...]
) -> ProductLimit | None:
    """The limit under the SACCO's main product for members: the first active product
    (by creation) open to one of ``channels``; None when there is none."""
    for terms in current_products(session, active=True):
        if terms.channels & set(channels):
            return product_limit(session, deps, member_id, terms)
    return None


@dataclass(frozen=True)
class LoanLine:
    """One of the member's loans, or an application not disbursed."""

    kind: str  # "loan" or "application"
    id: int  # the loan's or the application's id
    reference: str
    product: str
    status: str  # LoanStatus for a loan, ApplicationStatus for an application
    amount_cents: int  # principal disbursed, or amount applied for
    balance_cents: int = 0  # loans: what the loan account says is owed
    next_due_cents: int = 0  # loans: what is left of the next instalment not paid in full
    next_due_on: date | None = None
    arrears_cents: int = 0  # loans: unpaid on instalments due before today
    missing_cents: int = 0  # applications waiting for guarantors: cover still missing


def _loan_line(session: Session, loan: Loan, name: str, today: date) -> LoanLine:
    balance = session.scalar(select(Account.balance_cents).where(Account.id == loan.account_id))
    due = LoanInstalment.principal_cents + LoanInstalment.interest_cents + LoanInstalment.fee_cents
    paid = (
        LoanInstalment.paid_principal_cents
        + LoanInstalment.paid_interest_cents
        + LoanInstalment.paid_fee_cents
    )
    unpaid = session.execute(
        select(LoanInstalment.due_on, (due - paid).label("left"))
        .where(LoanInstalment.loan_id == loan.id, paid < due)
        .order_by(LoanInstalment.number)
    ).all()
    arrears = sum(int(row.left) for row in unpaid if row.due_on < today)
    nxt = unpaid[0] if unpaid and loan.status == LoanStatus.ACTIVE else None
    return LoanLine(
        kind="loan",
        id=loan.id,
        reference=loan.reference,
        product=name,
        status=loan.status,
        amount_cents=loan.principal_cents,
        balance_cents=int(balance or 0),
        next_due_cents=int(nxt.left) if nxt else 0,
        next_due_on=nxt.due_on if nxt else None,
        arrears_cents=arrears if loan.status == LoanStatus.ACTIVE else 0,
    )


def _application_line(session: Session, application: LoanApplication, name: str) -> LoanLine:
    missing = 0
    if application.status == ApplicationStatus.AWAITING_GUARANTORS:
        missing = cover(session, application).missing_cents
    return LoanLine(
        kind="application",
        id=application.id,
        reference=application.reference,
        product=name,
        status=application.status,
        amount_cents=application.amount_cents,
        missing_cents=missing,
    )


def member_loans(
    session: Session, member_id: int, today: date, limit: int = MAX_LINES
) -> list[LoanLine]:
    """The member's loans and applications not disbursed, newest first (an application
    that became a loan shows as the loan)."""
    names: dict[int, str] = {}

    def name(version_id: int) -> str:
        if version_id not in names:
            names[version_id] = version_terms(session, version_id).name
        return names[version_id]

    applications = session.scalars(
        select(LoanApplication)
        .where(LoanApplication.member_id == member_id)
        .order_by(LoanApplication.created_at.desc(), LoanApplication.id.desc())
        .limit(limit)
    ).all()
    loans = {
        loan.application_id: loan
        for loan in session.scalars(
            select(Loan).where(Loan.application_id.in_([a.id for a in applications]))
        )
    }
    lines = []
    for application in applications:
        loan = loans.get(application.id)
        if loan is not None:
            lines.append(_loan_line(session, loan, name(loan.product_version_id), today))
        else:
            lines.append(
                _application_line(session, application, name(application.product_version_id))
            )
    return lines


def first_instalment(session: Session, application_id: int) -> tuple[date, int] | None:
    """The first instalment of the loan ``application_id`` became: its due date and what it
    asks (principal, interest and fees), in one statement; None before disbursement. What
    the apply screen shows the moment the loan is paid out."""
    due = LoanInstalment.principal_cents + LoanInstalment.interest_cents + LoanInstalment.fee_cents
    row = session.execute(
        select(LoanInstalment.due_on, due)
        .join(Loan, Loan.id == LoanInstalment.loan_id)
        .where(Loan.application_id == application_id)
        .order_by(LoanInstalment.number)
        .limit(1)
    ).first()
    return None if row is None else (row[0], int(row[1]))


def latest(session: Session, member_id: int, today: date) -> LoanLine | None:
    """The member's newest loan or application, or None."""
    lines = member_loans(session, member_id, today, limit=1)
    return lines[0] if lines else None


@dataclass(frozen=True)
class GuaranteeAsk:
    """A guarantee request waiting for its guarantor's answer."""

    guarantee_id: int
    code: str
    borrower_name: str
    borrower_number: str
    reference: str  # the application's
    loan_cents: int  # the amount the borrower applied for
    pledge_cents: int  # what the guarantor is asked to pledge
    pledged_cents: int  # the guarantor's own exposure now: pledges they already hold
    free_deposits_cents: int  # the guarantor's deposits not pledged


def _pledged_by(session: Session, member_id: int) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(LoanGuarantee.amount_cents), 0)).where(
                LoanGuarantee.guarantor_id == member_id,
                LoanGuarantee.status == GuaranteeStatus.ACCEPTED,
            )
        )
        or 0
    )


def _waiting(session: Session, member_id: int, *, code: str | None = None) -> list[GuaranteeAsk]:
    stmt = (
        select(LoanGuarantee, LoanApplication, Member)
        .join(LoanApplication, LoanApplication.id == LoanGuarantee.application_id)
        .join(Member, Member.id == LoanApplication.member_id)
        .where(
            LoanGuarantee.guarantor_id == member_id,
            LoanGuarantee.status == GuaranteeStatus.REQUESTED,
            LoanApplication.status == ApplicationStatus.AWAITING_GUARANTORS,
        )
        .order_by(LoanGuarantee.id)
        .limit(MAX_PRODUCTS)
    )
    if code is not None:
        stmt = stmt.where(LoanGuarantee.code == code)
    rows = session.execute(stmt).tuples().all()
    if not rows:
        return []
    pledged = _pledged_by(session, member_id)
    free = free_deposits_cents(session, member_id)
    return [
        GuaranteeAsk(
            guarantee_id=guarantee.id,
            code=guarantee.code,
            borrower_name=borrower.full_name,
            borrower_number=borrower.member_number or "",
            reference=application.reference,
            loan_cents=application.amount_cents,
            pledge_cents=guarantee.amount_cents,
            pledged_cents=pledged,
            free_deposits_cents=free,
        )
        for guarantee, application, borrower in rows
    ]


def waiting_requests(session: Session, member_id: int) -> list[GuaranteeAsk]:
    """Guarantee requests waiting for this member's answer, oldest first."""
    return _waiting(session, member_id)


def request_by_code(session: Session, msisdn: str, code: str) -> GuaranteeAsk | None:
    """The request with this SMS code waiting for the member on this phone, or None."""
    text = (code or "").strip().upper() if isinstance(code, str) else ""
    guarantor = find_by_msisdn(session, msisdn)
    if guarantor is None or not text:
        return None
    found = _waiting(session, guarantor.id, code=text)
    return found[0] if found else None


@dataclass(frozen=True)
class GuarantorNeed:
    application_id: int
    reference: str
    missing_cents: int  # cover still missing (accepted pledges counted)
    asked_cents: int  # pledges asked and not answered yet


def guarantor_need(session: Session, member_id: int) -> GuarantorNeed | None:
    """The member's application waiting for guarantors, or None."""
    application = session.scalar(
        select(LoanApplication).where(
            LoanApplication.member_id == member_id,
            LoanApplication.status == ApplicationStatus.AWAITING_GUARANTORS,
        )
    )
    if application is None:
        return None
    asked = session.scalar(
        select(func.coalesce(func.sum(LoanGuarantee.amount_cents), 0)).where(
            LoanGuarantee.application_id == application.id,
            LoanGuarantee.status == GuaranteeStatus.REQUESTED,
        )
    )
    return GuarantorNeed(
        application_id=application.id,
        reference=application.reference,
        missing_cents=cover(session, application).missing_cents,
        asked_cents=int(asked or 0),
    )


@dataclass(frozen=True)
class TopUpOffer:
    """What a member is shown before topping up a loan (``top_up_offer``)."""

    loan_id: int
    reference: str
    terms: ProductTerms  # the current version of the loan's own product
    payoff_cents: int  # what clears the loan today (core.loans.repayments.payoff_cents)
    limit_cents: int  # the most the new loan may be: the loan left out of the limit


def top_up_offer(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    loan_id: int,
    channel: str,
    amount_cents: int | None = None,
) -> TopUpOffer:
    """The member's loan ``loan_id`` as a top-up would clear it, after the checks
    ``book.apply_for_loan(top_up_of=...)`` makes, in its order, writing nothing (one open
    application per member is the apply's own answer): ``NotFound`` (not the member's),
    ``ProductUnavailable`` (the product closed, or not open on ``channel``),
    ``TopUpRefused`` (``loan_not_active``, ``not_offered``, ``too_early``) and
    ``LoanRefused`` (the appraisal with the loan left out of the principal outstanding;
    with ``amount_cents``, of that amount: above the limit, below the minimum, ...), and
    ``TopUpRefused`` ``nothing_to_receive`` for an amount that does not exceed the payoff."""
    loan = top_ups.loan_to_clear(session, member_id, loan_id)
    terms = current_terms(session, version_terms(session, loan.product_version_id).code)
    book.check_product_open(terms, channel, terms.min_term)
    top_ups.check_may_top_up(session, terms, loan)
    today = business_date(deps.now())
    facts = top_ups.facts_without(
        session, member_facts(session, get_member(session, member_id), today), loan
    )
    found = appraise_member(session, deps, terms, member_id, facts, amount_cents, keep=False)
    if not found.ok:
        raise LoanRefused.of(found, terms.min_score)
    payoff = top_ups.clearing(session, deps, terms, loan, terms.min_term).payoff_cents
    if amount_cents is not None:  # the commission and the fees come with the term: an
        # amount that does not even pay the loan off is refused now (``nothing_to_receive``)
        top_ups.check_receives(
            amount_cents, 0, top_ups.Clearing(loan.id, loan.reference, payoff, 0)
        )
    return TopUpOffer(loan.id, loan.reference, terms, payoff, found.limit_cents)


@dataclass(frozen=True)
class TopUpQuote:
    """The confirmation of a top-up: the balance cleared, the commission, what reaches
    savings and the new loan's instalment (``book.quote``)."""

    offer: TopUpOffer
    quote: book.Quote
    commission_cents: int
    received_cents: int  # principal - payoff - commission - fees deducted


def top_up_quote(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    loan_id: int,
    channel: str,
    amount_cents: int,
    term: int,
) -> TopUpQuote:
    """``top_up_offer`` for ``amount_cents`` over ``term`` instalments, then the quote:
    ``InvalidInput`` (field ``term``) outside the product's range, ``TopUpRefused``
    ``nothing_to_receive`` when the payoff, the commission and the fees take it all."""
    offer = top_up_offer(session, deps, member_id, loan_id, channel, amount_cents)
    book.check_product_open(offer.terms, channel, term)
    shown = book.quote(offer.terms, amount_cents, term, deps)
    cleared = top_ups.Clearing(
        offer.loan_id, offer.reference, offer.payoff_cents,
        offer.terms.top_up_commission_cents(offer.payoff_cents, term),
    )  # fmt: skip
    received = top_ups.check_receives(amount_cents, shown.deducted_fee_cents, cleared)
    return TopUpQuote(offer, shown, cleared.commission_cents, received)
