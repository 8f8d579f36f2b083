"""Helpers for ledger tests: make a few accounts in the caller's session."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.ledger import entries as ledger
from core.ledger.chart import AccountType, Purpose, SystemAccount
from core.ledger.shards import ensure_shards
from core.ledger.vocabulary import EntryKind
from db.base import utcnow
from db.session import make_session_factory, unit_of_work


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


# The shard counts the concurrency tests run with (core.ledger.shards): 1 is the ledger
# unsharded (every entry on the one float row), 4 and 16 spread it.
SHARD_COUNTS = (1, 4, 16)


def sharded_factory(engine: Engine, n: int) -> sessionmaker[Session]:
    """Sessions whose postings to the hot accounts spread over ``n`` shards each, the
    shard rows created and committed first (the ``committed_*`` fixture's restore removes
    any beyond the migration's eight; ``forget_shards`` must run before it)."""
    with unit_of_work(make_session_factory(engine)) as session:
        ensure_shards(session, max(n, 1), now=utcnow())
    ledger.forget_hot_set(engine)
    return make_session_factory(engine, ledger_shards=n)


@pytest.fixture(params=SHARD_COUNTS, ids=lambda n: f"shards{n}")
def shard_count(request: pytest.FixtureRequest) -> Iterator[int]:
    """Parametrizes a test over SHARD_COUNTS; afterwards this process forgets the shards
    it cached (the rows a test added do not outlive it)."""
    yield request.param
    ledger.forget_hot_set()
