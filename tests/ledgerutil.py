"""Helpers for ledger tests: make a few accounts in the caller's session."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy.orm import Session

from core.ledger import entries as ledger
from core.ledger.chart import AccountType, Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from db.base import utcnow


def make_accounts(session: Session, n_members: int = 3) -> tuple[int, list[int]]:
    """The M-Pesa collections float (hot) and ``n_members`` savings accounts (no overdraft)."""
    float_id = ledger.account_id_by_code(session, SystemAccount.MPESA_COLLECTIONS_FLOAT)
    tag = uuid4().hex[:8]
    members = [
        ledger.create_account(
            session,
            code=f"T{tag}-{i}",
            name=f"Test savings {i}",
            type_=AccountType.LIABILITY,
            purpose=Purpose.SAVINGS,
            no_overdraft=True,
            now=utcnow(),
        ).id
        for i in range(n_members)
    ]
    session.commit()
    return float_id, members


def fund(
    session: Session, float_id: int, account_id: int, cents: int, key: str | None = None
) -> ledger.PostedEntry:
    """A deposit: debit the float (asset up), credit the member account (liability up)."""
    posted = ledger.post_entry(
        session,
        kind=EntryKind.DEPOSIT_MPESA,
        legs=[ledger.Leg(float_id, cents), ledger.Leg(account_id, -cents)],
        idempotency_key=key or uuid4().hex,
        now=utcnow(),
    )
    session.commit()
    return posted
