"""Guarantors' pledges as ledger holds, and how much of a principal they cover.

An accepted guarantee holds its amount on the guarantor's deposits account
(``core.ledger.entries.reserve_hold``, keyed ``guarantee:<id>``, so a retried or concurrent
acceptance places one hold); giving it back releases the hold. ``cover`` adds the
borrower's own free deposits and the accepted pledges and compares them with the security
the product asks of the principal (SASRA Regulations 2010, reg. 32).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.errors import InsufficientFunds
from core.ledger import entries as ledger
from core.loans.errors import GuaranteeRefused
from core.loans.facts import deposits_account, free_deposits_cents
from core.loans.vocabulary import GuaranteeStatus
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


def cover(session: Session, application: LoanApplication) -> Cover:
    """The application's security now: the borrower's free deposits today (a pledge they
    made for someone else since applying counts against them) plus accepted pledges."""
    required = application.required_cover_cents
    own = min(required, free_deposits_cents(session, application.member_id))
    return Cover(required, own, pledged_cents(session, application.id))


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
