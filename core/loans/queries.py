"""What staff read of the loan book (the staff API, issue 12, part 9): applications and
loans with their schedule, repayments and guarantors, and a product's schedule preview.

Read-only. Branch-bound staff see only their branch's members' applications and loans
(``core.kernel.permissions.can_access_branch``): anything else is ``NotFound``, so ids
cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.permissions import Principal, can_access_branch
from core.ledger.entries import MAX_POSTING_CENTS
from core.loans import pledges
from core.loans.repayments import Position, instalments_of, position
from core.loans.schedule import Schedule, build_schedule
from core.loans.terms import ProductTerms, current_terms, version_terms
from core.loans.vocabulary import ApplicationStatus, LoanStatus
from db.models import JournalEntry, Member
from db.models_loans import (
    Loan,
    LoanApplication,
    LoanGuarantee,
    LoanInstalment,
    LoanProduct,
    LoanRepayment,
    LoanReschedule,
    LoanSupersededInstalment,
    LoanWriteOff,
)
from db.models_notices import LoanBureauMark


@dataclass(frozen=True)
class GuaranteeView:
    id: int
    guarantor_id: int
    guarantor_number: str | None
    guarantor_name: str
    amount_cents: int  # pledged
    held_cents: int  # held on the guarantor's deposits now
    status: str
    created_at: object
    decided_at: object
    released_at: object


@dataclass(frozen=True)
class ApplicationView:
    application: LoanApplication
    member: Member
    product_code: str
    product_name: str
    guarantees: tuple[GuaranteeView, ...]
    loan_id: int | None


@dataclass(frozen=True)
class RepaymentView:
    row: LoanRepayment
    entry_reference: str | None
    savings_entry_reference: str | None


@dataclass(frozen=True)
class LoanView:
    loan: Loan
    member: Member
    product_code: str
    product_name: str
    position: Position
    instalments: tuple[LoanInstalment, ...]
    repayments: tuple[RepaymentView, ...]
    guarantees: tuple[GuaranteeView, ...]
    # Close of day's credit-bureau mark (core.loans.notices), read-only; None until the loan
    # is first in arrears above the listing threshold (and in the list view).
    bureau: LoanBureauMark | None = None
    write_off: LoanWriteOff | None = None  # written off: the figures and what is recovered
    write_off_entry: str | None = None  # the write-off entry's reference
    reschedules: tuple[LoanReschedule, ...] = ()
    superseded: tuple[LoanSupersededInstalment, ...] = ()


def _branch_filter(query: Select, actor: Principal, member_column: object) -> Select:  # type: ignore[type-arg]
    if actor.branch is None:
        return query
    return query.join(Member, Member.id == member_column).where(Member.branch == actor.branch)


def _guarantees(
    session: Session, *, application_id: int | None = None, loan_id: int | None = None
) -> tuple[GuaranteeView, ...]:
    query = select(LoanGuarantee, Member).join(Member, Member.id == LoanGuarantee.guarantor_id)
    if application_id is not None:
        query = query.where(LoanGuarantee.application_id == application_id)
    else:
        query = query.where(LoanGuarantee.loan_id == loan_id)
    rows = session.execute(query.order_by(LoanGuarantee.id)).tuples()
    return tuple(
        GuaranteeView(
            id=g.id,
            guarantor_id=m.id,
            guarantor_number=m.member_number,
            guarantor_name=m.full_name,
            amount_cents=g.amount_cents,
            held_cents=pledges.hold_cents(session, g),
            status=g.status,
            created_at=g.created_at,
            decided_at=g.decided_at,
            released_at=g.released_at,
        )
        for g, m in rows
    )


def _application_view(session: Session, application: LoanApplication) -> ApplicationView:
    terms = version_terms(session, application.product_version_id)
    member = session.get_one(Member, application.member_id)
    loan_id = session.scalar(select(Loan.id).where(Loan.application_id == application.id))
    return ApplicationView(
        application=application,
        member=member,
        product_code=terms.code,
        product_name=terms.name,
        guarantees=_guarantees(session, application_id=application.id),
        loan_id=loan_id,
    )


def list_applications(
    session: Session,
    actor: Principal,
    *,
    status: str | None = None,
    member_id: int | None = None,
    limit: int = 50,
    after_id: int = 0,
) -> list[ApplicationView]:
    """Applications in id order (newest last), after ``after_id``; by status or member."""
    query = select(LoanApplication).where(LoanApplication.id > after_id)
    if status is not None:
        if status not in tuple(ApplicationStatus):
            raise InvalidInput("unknown application status", field="status")
        query = query.where(LoanApplication.status == status)
    if member_id is not None:
        query = query.where(LoanApplication.member_id == member_id)
    query = _branch_filter(query, actor, LoanApplication.member_id)
    rows = session.scalars(query.order_by(LoanApplication.id).limit(max(1, min(limit, 101))))
    return [_application_view(session, a) for a in rows]


def get_application(session: Session, actor: Principal, application_id: int) -> ApplicationView:
    application = session.get(LoanApplication, application_id)
    if application is None:
        raise NotFound("no such loan application")
    view = _application_view(session, application)
    if not can_access_branch(actor, view.member.branch):
        raise NotFound("no such loan application")
    return view


def visible_member(session: Session, actor: Principal, member_id: int) -> Member:
    """The member, if the caller may see them (their branch); ``NotFound`` otherwise."""
    member = session.get(Member, member_id)
    if member is None or not can_access_branch(actor, member.branch):
        raise NotFound("no such member")
    return member


def visible_loan(session: Session, actor: Principal, loan_id: int) -> Loan:
    """The loan, if the caller may see its member; ``NotFound`` otherwise."""
    loan = session.get(Loan, loan_id)
    if loan is None:
        raise NotFound("no such loan")
    member = session.get_one(Member, loan.member_id)
    if not can_access_branch(actor, member.branch):
        raise NotFound("no such loan")
    return loan


def list_loans(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    status: str | None = None,
    member_id: int | None = None,
    limit: int = 50,
    after_id: int = 0,
) -> list[LoanView]:
    """Loans in id order after ``after_id``, by status or member (summaries: no schedule,
    repayments or guarantors; ``get_loan`` has them)."""
    query = select(Loan).where(Loan.id > after_id)
    if status is not None:
        if status not in tuple(LoanStatus):
            raise InvalidInput("unknown loan status", field="status")
        query = query.where(Loan.status == status)
    if member_id is not None:
        query = query.where(Loan.member_id == member_id)
    query = _branch_filter(query, actor, Loan.member_id)
    rows = session.scalars(query.order_by(Loan.id).limit(max(1, min(limit, 101))))
    return [_loan_view(session, deps, loan, full=False) for loan in rows]


def get_loan(session: Session, deps: CoreDeps, actor: Principal, loan_id: int) -> LoanView:
    """One loan with its schedule, repayments and guarantors."""
    return _loan_view(session, deps, visible_loan(session, actor, loan_id), full=True)


def _loan_view(session: Session, deps: CoreDeps, loan: Loan, *, full: bool) -> LoanView:
    terms = version_terms(session, loan.product_version_id)
    repayments: tuple[RepaymentView, ...] = ()
    if full:

        def ref(entry_id: int | None) -> str | None:
            if entry_id is None:
                return None
            return session.scalar(select(JournalEntry.reference).where(JournalEntry.id == entry_id))

        repayments = tuple(
            RepaymentView(r, ref(r.entry_id), ref(r.savings_entry_id))
            for r in session.scalars(
                select(LoanRepayment)
                .where(LoanRepayment.loan_id == loan.id)
                .order_by(LoanRepayment.id)
            )
        )
    written_off = (
        session.scalar(select(LoanWriteOff).where(LoanWriteOff.loan_id == loan.id))
        if full and loan.status == LoanStatus.WRITTEN_OFF
        else None
    )
    return LoanView(
        loan=loan,
        member=session.get_one(Member, loan.member_id),
        product_code=terms.code,
        product_name=terms.name,
        position=position(session, deps, loan.id),
        instalments=tuple(instalments_of(session, loan.id)) if full else (),
        repayments=repayments,
        guarantees=(_guarantees(session, loan_id=loan.id) if full else ()),
        bureau=session.get(LoanBureauMark, loan.id) if full else None,
        write_off=written_off,
        write_off_entry=(
            session.scalar(
                select(JournalEntry.reference).where(JournalEntry.id == written_off.entry_id)
            )
            if written_off is not None
            else None
        ),
        reschedules=(
            tuple(session.scalars(select(LoanReschedule).where(LoanReschedule.loan_id == loan.id)
                                  .order_by(LoanReschedule.id)))
            if full and loan.restructured
            else ()
        ),
        superseded=(
            tuple(session.scalars(
                select(LoanSupersededInstalment)
                .where(LoanSupersededInstalment.loan_id == loan.id)
                .order_by(LoanSupersededInstalment.reschedule_id, LoanSupersededInstalment.number)
            ))
            if full and loan.restructured
            else ()
        ),
    )  # fmt: skip


def preview_schedule(
    session: Session,
    deps: CoreDeps,
    product_id: int,
    *,
    amount_cents: int,
    term: int,
    disbursed_on: date | None = None,
) -> tuple[ProductTerms, Schedule]:
    """The product's current terms and the schedule a loan of ``amount_cents`` over ``term`` instalments of the product's
    current version would have if paid out on ``disbursed_on`` (default: today's business
    date): the product's own ``schedule_terms`` and ``build_schedule``, nothing else.
    ``InvalidInput`` for an amount or term outside the product's ranges; ``NotFound``."""
    code = session.scalar(select(LoanProduct.code).where(LoanProduct.id == product_id))
    if code is None:
        raise NotFound("no such loan product")
    terms = current_terms(session, code)
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise InvalidInput("amount must be a whole number of cents", field="amount_cents")
    if not 0 < amount_cents <= MAX_POSTING_CENTS or not (
        terms.min_amount_cents <= amount_cents <= terms.max_amount_cents
    ):
        raise InvalidInput(
            f"amount must be {terms.min_amount_cents}-{terms.max_amount_cents} cents",
            field="amount_cents", reason="range",
        )  # fmt: skip
    if isinstance(term, bool) or not isinstance(term, int):
        raise InvalidInput("term must be a whole number of instalments", field="term")
    if not terms.min_term <= term <= terms.max_term:
        raise InvalidInput(
            f"term must be {terms.min_term}-{terms.max_term} instalments",
            field="term", reason="range",
        )  # fmt: skip
    day = disbursed_on or business_date(deps.now())
    return terms, build_schedule(terms.schedule_terms(amount_cents, term, day))
