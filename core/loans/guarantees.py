"""Guarantors: asked by member number or phone, told by SMS with a code, consenting on
their own phone (docs/loans/book.md, "Guarantees").

* ``request_guarantee``: the borrower (or staff for them) asks a member to pledge part of
  their free deposits. Refused (``GuaranteeRefused``) for the borrower themself unless the
  product allows self-guarantee, a guarantor who is not active, who lacks the free
  deposits, who already holds the product's maximum of active guarantees, a second request
  to the same guarantor, or more than the cover still missing. The guarantor gets
  ``guarantee_request`` with a code to answer ``ACCEPT <code>`` / ``DECLINE <code>``.
* ``accept_guarantee``: the pledge becomes a ledger hold on the guarantor's deposits
  (``core.loans.pledges.place``; one hold however often or concurrently it is accepted);
  when the cover is complete the application moves on (``core.loans.book.route``).
* ``decline_guarantee``; ``withdraw_guarantee`` before approval (the hold released, the
  application back to waiting for guarantors when its cover falls short).
* ``*_by_code``: the same from an SMS: the code and the phone it came from.

Locks, always in this order: the application, its guarantees, the guarantor.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.identity import normalize_msisdn
from core.kernel.money import format_cents
from core.ledger.entries import MAX_POSTING_CENTS
from core.loans import book
from core.loans.disbursement import lock_application
from core.loans.errors import GuaranteeRefused, LoanStateError
from core.loans.facts import active_guarantees, free_deposits_cents, leaving
from core.loans.pledges import cover, place, release
from core.loans.terms import version_terms
from core.loans.vocabulary import BEFORE_APPROVAL, ApplicationStatus, GuaranteeStatus
from core.members.registration import find_by_msisdn, find_by_number, get_member
from core.members.status import MemberStatus
from core.messaging.notifications import first_name, notify
from db.models import Member
from db.models_loans import LoanApplication, LoanGuarantee

# Codes a guarantor types after ACCEPT / DECLINE: letter, digit, letter, digit... from
# characters no keypad or reader confuses (no I, L, O, S, Z; no 0, 1, 5).
CODE_LETTERS = "ABCDEFGHJKMNPQRTUVWXY"
CODE_DIGITS = "2346789"
CODE_LENGTH = 6


def new_code() -> str:
    return "".join(
        secrets.choice(CODE_LETTERS if i % 2 == 0 else CODE_DIGITS) for i in range(CODE_LENGTH)
    )


def find_guarantor(session: Session, who: str) -> Member:
    """A member by member number, else by phone (any way a Kenyan number is written)."""
    text = (who or "").strip() if isinstance(who, str) else ""
    if not text:
        raise InvalidInput("a member number or phone is needed", field="guarantor")
    member = find_by_number(session, text) if text.isdigit() else None
    if member is None:
        try:
            member = find_by_msisdn(session, normalize_msisdn(text))
        except InvalidInput:
            member = None
    if member is None:
        raise NotFound("no member with that number or phone")
    return member


def _unique_code(session: Session) -> str:
    while True:
        code = new_code()
        if session.scalar(select(LoanGuarantee.id).where(LoanGuarantee.code == code)) is None:
            return code


def request_guarantee(
    session: Session,
    deps: CoreDeps,
    *,
    application_id: int,
    borrower_id: int,
    guarantor: str,
    amount_cents: int,
) -> LoanGuarantee:
    """Ask ``guarantor`` (member number or phone) to pledge ``amount_cents`` for the
    borrower's application (see the module)."""
    if type(amount_cents) is not int or not 0 < amount_cents <= MAX_POSTING_CENTS:
        raise InvalidInput("pledge must be a positive number of cents", field="amount_cents")
    application = lock_application(session, application_id)
    if application.member_id != borrower_id:
        raise NotFound("no such loan application")
    if application.status != ApplicationStatus.AWAITING_GUARANTORS:
        raise GuaranteeRefused("this application needs no more guarantors", reason="not_needed")
    member = find_guarantor(session, guarantor)
    terms = version_terms(session, application.product_version_id)
    if member.id == borrower_id and not terms.self_guarantee_allowed:
        raise GuaranteeRefused("a borrower cannot guarantee their own loan",
                               reason="self_guarantee")  # fmt: skip
    if member.status != MemberStatus.ACTIVE:
        raise GuaranteeRefused("the guarantor is not an active member",
                               reason="guarantor_not_active")  # fmt: skip
    if leaving(session, member.id):
        raise GuaranteeRefused("the guarantor has given notice to leave the SACCO",
                               reason="guarantor_leaving")  # fmt: skip
    taken = session.scalar(
        select(LoanGuarantee.id).where(
            LoanGuarantee.application_id == application.id,
            LoanGuarantee.guarantor_id == member.id,
        )
    )
    if taken is not None:
        raise GuaranteeRefused("this member was already asked", reason="already_asked")
    if amount_cents > cover(session, application).missing_cents:
        raise GuaranteeRefused("more than the cover still missing", reason="more_than_needed")
    if free_deposits_cents(session, member.id) < amount_cents:
        raise GuaranteeRefused("the guarantor's free deposits do not cover the pledge",
                               reason="lacks_deposits")  # fmt: skip
    if active_guarantees(session, member.id) >= terms.max_guarantees_per_guarantor:
        raise GuaranteeRefused("the guarantor already holds the most guarantees allowed",
                               reason="max_guarantees")  # fmt: skip
    now = deps.now()
    guarantee = LoanGuarantee(
        application_id=application.id,
        guarantor_id=member.id,
        amount_cents=amount_cents,
        status=GuaranteeStatus.REQUESTED,
        code=_unique_code(session),
        created_at=now,
    )
    session.add(guarantee)
    session.flush()
    borrower = get_member(session, borrower_id)
    notify(
        session,
        template="guarantee_request",
        business_key=f"guarantee_request:{guarantee.id}",
        now=now,
        member=member,
        data={
            "sacco": deps.sacco_name,
            "first_name": first_name(borrower.full_name),
            "member_number": borrower.member_number or "-",
            "pledge": format_cents(amount_cents),
            "code": guarantee.code,
            "ussd_code": deps.ussd_code,  # consent is given on USSD, with the PIN
        },
    )
    return guarantee


def _lock(
    session: Session, guarantee_id: int, guarantor_id: int
) -> tuple[LoanApplication, LoanGuarantee]:
    """The application, then the guarantee, locked (the module's lock order)."""
    found = session.get(LoanGuarantee, guarantee_id)
    if found is None or found.guarantor_id != guarantor_id:
        raise NotFound("no such guarantee request")
    application = lock_application(session, found.application_id)
    guarantee = session.scalars(
        select(LoanGuarantee)
        .where(LoanGuarantee.id == guarantee_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return application, guarantee


def accept_guarantee(
    session: Session, deps: CoreDeps, *, guarantee_id: int, guarantor_id: int
) -> LoanGuarantee:
    """The guarantor consents: their pledge is held (see the module). Accepting again
    returns the guarantee and holds nothing more."""
    application, guarantee = _lock(session, guarantee_id, guarantor_id)
    if guarantee.status == GuaranteeStatus.ACCEPTED:
        return guarantee
    if guarantee.status != GuaranteeStatus.REQUESTED:
        raise LoanStateError(f"this request is {guarantee.status}", reason="decided")
    if application.status != ApplicationStatus.AWAITING_GUARANTORS:
        raise GuaranteeRefused("this application needs no more guarantors", reason="not_needed")
    guarantor = session.scalars(
        select(Member).where(Member.id == guarantor_id).with_for_update()
    ).one()
    if guarantor.status != MemberStatus.ACTIVE:
        raise GuaranteeRefused("the guarantor is not an active member",
                               reason="guarantor_not_active")  # fmt: skip
    if leaving(session, guarantor_id):
        raise GuaranteeRefused("the guarantor has given notice to leave the SACCO",
                               reason="guarantor_leaving")  # fmt: skip
    terms = version_terms(session, application.product_version_id)
    if active_guarantees(session, guarantor_id) >= terms.max_guarantees_per_guarantor:
        raise GuaranteeRefused("the guarantor already holds the most guarantees allowed",
                               reason="max_guarantees")  # fmt: skip
    now = deps.now()
    guarantee.hold_id = place(session, guarantee, now=now)
    guarantee.status = GuaranteeStatus.ACCEPTED
    guarantee.decided_at = now
    session.flush()
    missing = cover(session, application).missing_cents
    _tell_borrower(session, deps, application, guarantee, guarantor, "guarantee_accepted", missing)
    book.route(session, deps, application)
    return guarantee


def decline_guarantee(
    session: Session, deps: CoreDeps, *, guarantee_id: int, guarantor_id: int
) -> LoanGuarantee:
    """The guarantor says no; the borrower is told what is still missing."""
    application, guarantee = _lock(session, guarantee_id, guarantor_id)
    if guarantee.status == GuaranteeStatus.DECLINED:
        return guarantee
    if guarantee.status != GuaranteeStatus.REQUESTED:
        raise LoanStateError(f"this request is {guarantee.status}", reason="decided")
    guarantee.status = GuaranteeStatus.DECLINED
    guarantee.decided_at = deps.now()
    session.flush()
    missing = cover(session, application).missing_cents
    guarantor = get_member(session, guarantor_id)
    _tell_borrower(session, deps, application, guarantee, guarantor, "guarantee_declined", missing)
    return guarantee


def withdraw_guarantee(
    session: Session, deps: CoreDeps, *, guarantee_id: int, guarantor_id: int
) -> LoanGuarantee:
    """The guarantor withdraws consent before approval: the hold is released and the
    application waits for guarantors again if its cover falls short."""
    application, guarantee = _lock(session, guarantee_id, guarantor_id)
    if guarantee.status == GuaranteeStatus.WITHDRAWN:
        return guarantee
    if guarantee.status not in (GuaranteeStatus.REQUESTED, GuaranteeStatus.ACCEPTED):
        raise LoanStateError(f"this guarantee is {guarantee.status}", reason="decided")
    if application.status not in BEFORE_APPROVAL:
        raise LoanStateError("the loan is already approved", reason="approved")
    release(session, guarantee, status=GuaranteeStatus.WITHDRAWN, now=deps.now())
    session.flush()
    book.route(session, deps, application)  # back to waiting when the cover falls short
    missing = cover(session, application).missing_cents
    guarantor = get_member(session, guarantor_id)
    _tell_borrower(session, deps, application, guarantee, guarantor, "guarantee_declined", missing)
    return guarantee


def _by_code(session: Session, msisdn: str, code: str) -> tuple[int, int]:
    """(guarantee id, guarantor id) for a code sent from the guarantor's own phone."""
    text = (code or "").strip().upper() if isinstance(code, str) else ""
    guarantor = find_by_msisdn(session, msisdn)
    found = None
    if guarantor is not None and text:
        found = session.scalar(
            select(LoanGuarantee.id).where(
                LoanGuarantee.code == text, LoanGuarantee.guarantor_id == guarantor.id
            )
        )
    if guarantor is None or found is None:
        raise NotFound("no guarantee request with that code for this phone")
    return found, guarantor.id


def accept_by_code(session: Session, deps: CoreDeps, *, msisdn: str, code: str) -> LoanGuarantee:
    """``ACCEPT <code>`` from the guarantor's phone (E.164)."""
    guarantee_id, guarantor_id = _by_code(session, msisdn, code)
    return accept_guarantee(session, deps, guarantee_id=guarantee_id, guarantor_id=guarantor_id)


def decline_by_code(session: Session, deps: CoreDeps, *, msisdn: str, code: str) -> LoanGuarantee:
    """``DECLINE <code>`` from the guarantor's phone (E.164)."""
    guarantee_id, guarantor_id = _by_code(session, msisdn, code)
    return decline_guarantee(session, deps, guarantee_id=guarantee_id, guarantor_id=guarantor_id)


def _tell_borrower(
    session: Session,
    deps: CoreDeps,
    application: LoanApplication,
    guarantee: LoanGuarantee,
    guarantor: Member,
    template: str,
    missing_cents: int,
) -> None:
    notify(
        session,
        template=template,
        business_key=f"{template}:{guarantee.id}:{guarantee.status}",
        now=deps.now(),
        member=get_member(session, application.member_id),
        data={
            "sacco": deps.sacco_name,
            "first_name": first_name(guarantor.full_name),
            "pledge": format_cents(guarantee.amount_cents),
            "reference": application.reference,
            "remaining": format_cents(missing_cents),
            "ussd_code": deps.ussd_code,
        },
    )
