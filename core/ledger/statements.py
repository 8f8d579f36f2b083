"""Read-only views of a member's money across their accounts, for statements and balances.

``recent_movements`` merges the postings of every account the member owns
(savings, deposits, shares, and loan accounts once loans exist), newest first.
``loans_outstanding_cents`` sums the member's loan accounts (purpose ``loan``:
assets, so a positive balance is what the member owes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.ledger.entries import normal_delta
from db.models import Account, JournalEntry, Posting

LOAN_PURPOSE = "loan"


@dataclass(frozen=True, slots=True)
class Movement:
    posting_id: int
    reference: str
    kind: str
    memo: str
    created_at: datetime
    account_purpose: str
    amount_cents: int  # + raised the member's balance on that account, - lowered it
    balance_after_cents: int


def recent_movements(session: Session, member_id: int, *, limit: int = 5) -> list[Movement]:
    """The member's last ``limit`` postings over all their accounts, newest first."""
    rows = session.execute(
        select(Posting, JournalEntry, Account.purpose, Account.normal_side)
        .join(Account, Account.id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Account.member_id == member_id)
        .order_by(Posting.id.desc())
        .limit(max(1, min(limit, 100)))
    ).tuples()
    return [
        Movement(
            posting_id=p.id,
            reference=e.reference,
            kind=e.kind,
            memo=e.memo,
            created_at=e.created_at,
            account_purpose=purpose,
            amount_cents=normal_delta(side, p.amount_cents),
            balance_after_cents=p.balance_after_cents,
        )
        for p, e, purpose, side in rows
    ]


def loans_outstanding_cents(session: Session, member_id: int) -> int:
    """What the member owes on all their loan accounts (0 when they have none)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Account.balance_cents), 0)).where(
            Account.member_id == member_id, Account.purpose == LOAN_PURPOSE
        )
    )
    return int(total or 0)


def loans_owed_cents(session: Session, member_id: int) -> int | None:
    """What the member owes on their loan accounts, or None when they have none (a
    member who never borrowed is shown no loans line; one who repaid sees KES 0)."""
    count, total = session.execute(
        select(func.count(Account.id), func.coalesce(func.sum(Account.balance_cents), 0)).where(
            Account.member_id == member_id, Account.purpose == LOAN_PURPOSE
        )
    ).one()
    return int(total) if count else None
