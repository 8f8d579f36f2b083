"""Helpers for report tests: accounts and entries with a chosen value date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import uuid4

from sqlalchemy.orm import Session

from core.ledger import entries as ledger
from core.ledger.chart import AccountType, Purpose
from core.ledger.vocabulary import EntryKind

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def account(
    session: Session, code: str, type_: AccountType, purpose: Purpose = Purpose.SYSTEM
) -> int:
    """The id of ``code``: an existing account (the chart's) or a new one."""
    try:
        return ledger.account_id_by_code(session, code)
    except Exception:  # noqa: BLE001 - NotFound: make it
        return ledger.create_account(
            session,
            code=code,
            name=f"Test {code}",
            type_=type_,
            purpose=purpose,
            no_overdraft=False,
            now=NOW,
        ).id


def post(
    session: Session,
    on: date,
    *legs: tuple[int, int],
    kind: EntryKind = EntryKind.ADJUSTMENT_MANUAL,
) -> None:
    """One entry with value date ``on``: legs as (account id, debit-positive cents)."""
    ledger.post_entry(
        session,
        kind=kind,
        legs=[ledger.Leg(a, c) for a, c in legs],
        idempotency_key=uuid4().hex,
        now=NOW,
        value_date=on,
    )
