"""Eight threads hammering a few accounts and the hot float with duplicated keys, the
float whole (one row) and split into 4 and 16 shards."""

from __future__ import annotations

import random
import threading
from collections import defaultdict

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.kernel.errors import InsufficientFunds
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount, shard_code
from core.ledger.entries import Leg
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from db.base import utcnow
from db.models import Account, JournalEntry, Posting
from db.session import run_in_transaction, unit_of_work
from tests.ledgerutil import make_accounts, shard_count, sharded_factory

__all__ = ["shard_count"]  # the fixture, parametrized over SHARD_COUNTS

THREADS = 8
KINDS = {
    "deposit": EntryKind.DEPOSIT_MPESA,
    "transfer": EntryKind.TRANSFER_OWN,
    "withdraw": EntryKind.WITHDRAWAL_MPESA,
}


def test_concurrent_transfers_conserve_money_and_post_each_key_once(
    committed_engine: Engine, shard_count: int
) -> None:
    factory = sharded_factory(committed_engine, shard_count)
    with unit_of_work(factory) as session:
        float_id, members = make_accounts(session, 4)
    unique = 1200 if committed_engine.dialect.name == "postgresql" else 400
    rng = random.Random(20261127)
    operations = []
    for i in range(unique):
        kind = rng.choice(["deposit", "transfer", "transfer", "withdraw"])
        a, b = rng.sample(members, 2)
        amount = rng.randint(1, 50_000)
        if kind == "deposit":
            legs = [Leg(float_id, amount), Leg(a, -amount)]
        elif kind == "withdraw":
            legs = [Leg(a, amount), Leg(float_id, -amount)]
        else:
            legs = [Leg(a, amount), Leg(b, -amount)]
        operations.append((f"conc-{i}", KINDS[kind], legs))
    # Each key is sent three times, in a shuffled order, from different threads.
    work = operations * 3
    rng.shuffle(work)
    chunks = [work[i::THREADS] for i in range(THREADS)]

    results: dict[str, set[int]] = defaultdict(set)
    refused: set[str] = set()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(chunk: list[tuple[str, EntryKind, list[Leg]]]) -> None:
        start.wait()
        for key, kind, legs in chunk:

            def post(
                session: Session, kind: EntryKind = kind, legs: list[Leg] = legs, key: str = key
            ) -> int:
                posted = ledger.post_entry(
                    session, kind=kind, legs=legs, idempotency_key=key, now=utcnow()
                )
                session.commit()
                return posted.entry_id

            try:
                entry_id = run_in_transaction(factory, post, attempts=8)
            except InsufficientFunds:
                with lock:
                    refused.add(key)
                continue
            except BaseException as exc:  # anything else (a deadlock) fails the test
                with lock:
                    errors.append(exc)
                return
            with lock:
                results[key].add(entry_id)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert errors == []
    # Every successful key maps to exactly one entry, however often it was sent.
    assert all(len(ids) == 1 for ids in results.values())
    with unit_of_work(factory) as session:
        entries = session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.idempotency_key.like("conc-%"))
        )
        assert entries == len(results)
        balances = {a: ledger.get_balance(session, a) for a in [float_id, *members]}
        # Money is conserved: the float (asset) equals what members hold (liabilities).
        assert balances[float_id].balance_cents == sum(balances[m].balance_cents for m in members)
        assert all(balances[m].balance_cents >= 0 for m in members)
        report = verify_ledger(session)
        assert report.ok, report.problems
        # The float's postings went to the rows LEDGER_SHARDS allows: the parent alone
        # unsharded, else its first n shards, each of them used.
        used = set(
            session.scalars(
                select(Account.code)
                .join(Posting, Posting.account_id == Account.id)
                .join(JournalEntry, JournalEntry.id == Posting.entry_id)
                .where(JournalEntry.idempotency_key.like("conc-%"))
                .where((Account.id == float_id) | (Account.parent_id == float_id))
            )
        )
        code = SystemAccount.MPESA_COLLECTIONS_FLOAT
        expected = (
            {str(code)}
            if shard_count == 1
            else {shard_code(code, n) for n in range(1, shard_count + 1)}
        )
        assert used == expected
    assert len(results) > unique // 2  # the run really moved money, not just refused it
