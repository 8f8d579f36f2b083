"""Guarantors' pledges as ledger holds, and how much of a principal they cover.

An accepted guarantee holds its amount on the guarantor's deposits account
(``core.ledger.entries.reserve_hold``, keyed ``guarantee:<id>``, so a retried or concurrent
acceptance places one hold); giving it back releases the hold. ``cover`` adds the
borrower's own free deposits and the accepted pledges and compares them with the security
the product asks of the principal (SASRA Regulations 2010, reg. 32).

As the loan is repaid (``core.loans.repayments``), each pledge still held is what
``held_pledge_cents`` says for the principal outstanding, by the product's
``pledge_release``: ``pro_rata`` gives back the pledge in proportion to principal repaid
(the part still held rounded up to the cent, so the loan is never less secured than the
rule says); ``at_own_deposits`` keeps it whole until the principal outstanding is no more
than the borrower's own free deposits, then gives it all back. At zero every pledge is
released. ``reduce`` moves a pledge's hold down to a smaller amount (a new hold for the
smaller amount, keyed ``guarantee:<id>:held:<cents>``, and the old one released).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import InsufficientFunds
from core.kernel.money import format_cents
from core.ledger import entries as ledger
from core.loans.errors import GuaranteeRefused
from core.loans.facts import deposits_account, free_deposits_cents
from core.loans.vocabulary import GuaranteeStatus, PledgeRelease
from core.members.registration import get_member
from core.messaging.notifications import notify
from db.models import Hold
from db.models_loans import LoanApplication, LoanGuarantee


@dataclass(frozen=True)
class Cover:
    required_cents: int  # what the product asks of this principal
    own_cents: int  # the borrower's own free deposits counted (at most what is required)
    pledged_cents: int  # accepted guarantees

    @property
    def missing_cents(self) -> int:
        return max(0, self.required_cents - self.own_cents - self.pledged_cents)

    @property
    def complete(self) -> bool:
        return self.missing_cents == 0


def pledged_cents(session: Session, application_id: int) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(LoanGuarantee.amount_cents), 0)).where(
                LoanGuarantee.application_id == application_id,
                LoanGuarantee.status == GuaranteeStatus.ACCEPTED,
            )
        )
        or 0
    )


def cover(
    session: Session,
    application: LoanApplication,
    *,
    free_cents: int | None = None,
    pledged: int | None = None,
) -> Cover:
    """The application's security now: the borrower's free deposits today (a pledge they
    made for someone else since applying counts against them) plus accepted pledges.
    ``free_cents``: the borrower's free deposits, when the caller read them in this unit of
    work already (``facts.member_facts``); ``pledged``: the accepted pledges, when the
    caller knows them (0 for an application inserted in this unit of work)."""
    required = application.required_cover_cents
    if free_cents is None:
        free_cents = free_deposits_cents(session, application.member_id)
    own = min(required, free_cents)
    if pledged is None:
        pledged = pledged_cents(session, application.id)
    return Cover(required, own, pledged)


def place(session: Session, guarantee: LoanGuarantee, *, now: datetime) -> int:
    """Hold the pledge on the guarantor's deposits; the hold's id. ``GuaranteeRefused``
    (``lacks_deposits``) when their free deposits no longer cover it."""
    account = deposits_account(session, guarantee.guarantor_id)
    try:
        hold = ledger.reserve_hold(
            session,
            account_id=account.id,
            amount_cents=guarantee.amount_cents,
            idempotency_key=f"guarantee:{guarantee.id}",
            now=now,
            reason=f"Loan guarantee {guarantee.code}",
        )
    except InsufficientFunds:
        raise GuaranteeRefused(
            "the guarantor's free deposits do not cover the pledge", reason="lacks_deposits"
        ) from None
    return hold.hold_id


def release(session: Session, guarantee: LoanGuarantee, *, status: GuaranteeStatus,
            now: datetime) -> None:  # fmt: skip
    """End a guarantee: an accepted one gives its hold back; ``status`` is what it becomes
    (``released``, ``withdrawn``)."""
    if guarantee.hold_id is not None and guarantee.status == GuaranteeStatus.ACCEPTED:
        ledger.release_hold(session, hold_id=guarantee.hold_id, now=now)
        guarantee.released_at = now
    guarantee.status = status
    if guarantee.decided_at is None:
        guarantee.decided_at = now


def lock_guarantees(session: Session, application_id: int) -> list[LoanGuarantee]:
    return list(
        session.scalars(
            select(LoanGuarantee)
            .where(LoanGuarantee.application_id == application_id)
            .order_by(LoanGuarantee.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def held_pledge_cents(
    pledge_cents: int,
    principal_cents: int,
    outstanding_cents: int,
    *,
    release_rule: str,
    own_free_deposits_cents: int,
) -> int:
    """What of a pledge stays held when ``outstanding_cents`` of ``principal_cents`` is
    still owed (see the module). Pure."""
    if outstanding_cents <= 0:
        return 0
    if release_rule == PledgeRelease.AT_OWN_DEPOSITS:
        return 0 if outstanding_cents <= own_free_deposits_cents else pledge_cents
    held = math.ceil(pledge_cents * min(outstanding_cents, principal_cents) / principal_cents)
    return min(pledge_cents, held)


def hold_cents(session: Session, guarantee: LoanGuarantee) -> int:
    """What the guarantee holds on the guarantor's deposits now (0 once released)."""
    if guarantee.hold_id is None or guarantee.status != GuaranteeStatus.ACCEPTED:
        return 0
    hold = session.get(Hold, guarantee.hold_id)
    return 0 if hold is None else hold.amount_cents


def reduce(session: Session, guarantee: LoanGuarantee, to_cents: int, *, now: datetime) -> bool:
    """Hold only ``to_cents`` (more than 0, less than held now) of an accepted pledge: the
    new, smaller hold is placed and the old one released. True if it moved."""
    assert guarantee.hold_id is not None and guarantee.status == GuaranteeStatus.ACCEPTED
    if not 0 < to_cents < hold_cents(session, guarantee):
        return False
    old = guarantee.hold_id
    ledger.release_hold(session, hold_id=old, now=now)
    account = deposits_account(session, guarantee.guarantor_id)
    hold = ledger.reserve_hold(
        session,
        account_id=account.id,
        amount_cents=to_cents,
        idempotency_key=f"guarantee:{guarantee.id}:held:{to_cents}",
        now=now,
        reason=f"Loan guarantee {guarantee.code} (part repaid)",
    )
    guarantee.hold_id = hold.hold_id
    return True


def loan_guarantees(session: Session, loan_id: int) -> list[LoanGuarantee]:
    """The loan's accepted guarantees, locked, in id order."""
    return list(
        session.scalars(
            select(LoanGuarantee)
            .where(
                LoanGuarantee.loan_id == loan_id,
                LoanGuarantee.status == GuaranteeStatus.ACCEPTED,
            )
            .order_by(LoanGuarantee.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def tell_pledge_released(
    session: Session, deps: CoreDeps, guarantee: LoanGuarantee, application: LoanApplication
) -> None:
    """The guarantor's SMS when their pledge is given back in full (``guarantee_released``).
    Here, not in ``core.loans.book``, so the repayments (and a top-up's disbursement) can
    tell guarantors without importing the book, which imports the disbursement."""
    notify(
        session,
        template="guarantee_released",
        business_key=f"guarantee_released:{guarantee.id}",
        now=deps.now(),
        member=get_member(session, guarantee.guarantor_id),
        data={
            "sacco": deps.sacco_name,
            "pledge": format_cents(guarantee.amount_cents),
            "reference": application.reference,
        },
    )
