"""Helpers for ledger tests: make a few accounts in the caller's session."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy.orm import Session

from core.ledger import entries as ledger


def make_accounts(session: Session, n_members: int = 3) -> tuple[int, list[int]]:
    """The M-Pesa collections float (hot) and ``n_members`` savings accounts (no overdraft)."""
    float_id = ledger.account_id_by_code(session, "1010")
    tag = uuid4().hex[:8]
    members = [
        ledger.create_account(
            session,
            code=f"T{tag}-{i}",
            name=f"Test savings {i}",
            type_="liability",
            purpose="savings",
            no_overdraft=True,
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
        kind="deposit.mpesa",
        legs=[ledger.Leg(float_id, cents), ledger.Leg(account_id, -cents)],
        idempotency_key=key or uuid4().hex,
    )
    session.commit()
    return posted
