"""Savings interest accrual over a million accounts: the set-based run, timed, beside a naive
per-account loop.

    .venv/bin/python bench/accrual.py [--accounts 1000000] [--sample 2000]
    (or: make bench-accrual)

What it does, in one run (issue 14, "Show"; docs/benchmarks.md, "Savings accrual"):

1. Re-creates PostgreSQL database ``sacco_bench_accrual`` (``BENCH_ACCRUAL_DATABASE_URL``;
   it is dropped: never point it at real data), migrates it and sets two of the default
   products' rates through ``core.savings.products`` (ordinary savings 6% on the daily
   balance, minimum KES 1,000 to earn; deposits 4% on the average daily balance).
2. Seeds ``--accounts`` member accounts, **set-based** (``INSERT … SELECT`` over
   ``generate_series``): two thirds savings, one third deposits, balances from 0 to
   KES 200,000, each paid in by an opening entry (the bank debited, the account credited;
   running balances written), so ``verify-ledger`` accepts the seed.
3. Runs the real ``workers.savings_accrual.run_savings_accrual`` with an injected clock: the
   **first** date (every account gets its accrual row) and the **next** date (the daily
   run: every row updated), each timed. The aim is the daily run <= 30 s.
4. The **baseline**, in the same run on the same data: the third date, accrued by a naive
   Python loop over ``--sample`` accounts (read the account, its later postings and its
   accrual row; compute with ``core.savings.interest.accrue_one``; write the row), in a
   transaction rolled back afterwards, **extrapolated** to every account; then the real run
   of that date, and a check that both agree, account by account, on the sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402  (the path above first)

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from core.kernel.deps import CoreDeps

BENCH_DB = os.environ.get(
    "BENCH_ACCRUAL_DATABASE_URL",
    "postgresql+psycopg2://postgres@127.0.0.1:5432/sacco_bench_accrual",
)
AIM_DAY_S = 30.0
FIRST = date(2027, 3, 1)  # the first date accrued (no period ends in the three dates)


def at(day: date) -> datetime:
    return datetime.combine(day, clock_time(9), tzinfo=UTC)


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = at(day)
    return dataclasses.replace(deps, now=lambda: moment)


def bench_deps() -> CoreDeps:
    from cryptography.fernet import Fernet

    from core.kernel.deps import CoreDeps
    from core.kernel.pins import PinHasher
    from core.kernel.security import PiiVault

    return CoreDeps(
        pins=PinHasher(secrets.token_bytes(32)),
        vault=PiiVault([Fernet.generate_key()], secrets.token_bytes(32)),
    )


@dataclass
class Book:
    engine: Engine
    factory: sessionmaker[Session]
    deps: CoreDeps
    accounts: int
    seconds: float

    def dispose(self) -> None:
        self.engine.dispose()


_SEED = (
    (
        "accounts",
        """INSERT INTO accounts (code, name, type, normal_side, purpose, no_overdraft, is_hot,
               balance_cents, held_cents, created_at)
           SELECT CASE WHEN g % 3 = 0 THEN '2100-B' ELSE '2000-B' END || g,
                  'Bench account ' || g, 'liability', 'C',
                  CASE WHEN g % 3 = 0 THEN 'deposits' ELSE 'savings' END, true, false,
                  (g::bigint * 7919) % 20000000, 0, :at
           FROM generate_series(1, :n) AS g""",
    ),
    (
        # One opening entry per account (the ledger checks each entry's balance per
        # posting: one entry of a million legs would cost a million sums of a million).
        "opening entries",
        """INSERT INTO journal_entries (idempotency_key, fingerprint, reference, kind, memo,
               created_at, value_date)
           SELECT 'bench.opening:' || a.id, 'bench', 'B' || lpad(a.id::text, 11, '0'),
                  'adjustment.manual', 'Bench opening balance', :at, :day
           FROM accounts a WHERE a.code LIKE '2_00-B%' AND a.balance_cents > 0
           ORDER BY a.id""",
    ),
    (
        "postings",
        """INSERT INTO postings (entry_id, account_id, amount_cents, balance_after_cents)
           SELECT e.id, x.account_id, x.amount, x.after
           FROM (
               SELECT a.id AS source, a.id AS account_id, -a.balance_cents AS amount,
                      a.balance_cents AS after, 1 AS leg
               FROM accounts a WHERE a.code LIKE '2_00-B%' AND a.balance_cents > 0
               UNION ALL
               SELECT a.id, b.id, a.balance_cents,
                      b.balance_cents + SUM(a.balance_cents) OVER (ORDER BY a.id), 0
               FROM accounts a, accounts b
               WHERE a.code LIKE '2_00-B%' AND a.balance_cents > 0 AND b.code = :bank
           ) x
           JOIN journal_entries e ON e.idempotency_key = 'bench.opening:' || x.source
           ORDER BY x.source, x.leg""",
    ),
    (
        "bank",
        """WITH t AS (SELECT SUM(balance_cents) AS s FROM accounts WHERE code LIKE '2_00-B%')
           UPDATE accounts SET balance_cents = balance_cents + t.s FROM t WHERE code = :bank""",
    ),
)


def seed(database_url: str, accounts: int) -> Book:
    """Re-create the database, set the rates, seed ``accounts`` funded accounts."""
    from bench.ussd import recreate_database
    from core.kernel.permissions import SYSTEM
    from core.ledger.chart import SystemAccount
    from core.savings import products
    from db.session import make_engine, make_session_factory, unit_of_work

    started = time.monotonic()
    recreate_database(database_url, None)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    deps = bench_deps()
    before = on(deps, FIRST - timedelta(days=1))
    with unit_of_work(factory) as session:
        for purpose, changes in (
            ("savings", {"rate_percent": "6", "min_balance_to_earn_cents": 100_000}),
            ("deposits", {"rate_percent": "4", "balance_method": "average_daily_balance"}),
        ):
            view = products.product_for(session, purpose)
            terms = products.parse_terms({**products.terms_payload(view.terms), **changes})
            products.change_product(session, before, SYSTEM, view.id, 1, terms)
        params = {
            "n": accounts, "at": at(FIRST - timedelta(days=1)),
            "day": FIRST - timedelta(days=1), "bank": SystemAccount.BANK.value,
        }  # fmt: skip
        for _, sql in _SEED:
            session.execute(text(sql), params)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return Book(engine, factory, deps, accounts, time.monotonic() - started)


def accrue(book: Book, day: date) -> tuple[float, int]:
    """The real run of ``day``, the morning after: (seconds, cents accrued)."""
    from workers.savings_accrual import run_savings_accrual

    started = time.monotonic()
    report = run_savings_accrual(
        book.factory, on(book.deps, day + timedelta(days=1)), through=day,
        lock_engine=book.engine,
    )  # fmt: skip
    [result] = report.results
    return time.monotonic() - started, result.accrued_cents


_ONE = text(
    """SELECT a.balance_cents - COALESCE((SELECT SUM(p.amount_cents) * -1 FROM postings p
           JOIN journal_entries e ON e.id = p.entry_id
           WHERE p.account_id = a.id AND e.value_date > :day), 0) AS bal, a.purpose
       FROM accounts a WHERE a.id = :id"""
)


def naive_day(book: Book, day: date, account_ids: list[int]) -> tuple[float, dict[int, int]]:
    """One date for ``account_ids``, one account at a time in Python (rolled back):
    (seconds, the cents each account accrues)."""
    from core.savings import interest, products
    from db.models_savings import SavingsAccrual

    out: dict[int, int] = {}
    with book.factory() as session:
        started = time.monotonic()
        terms = {p: products.product_for(session, p) for p in ("savings", "deposits")}
        for account_id in account_ids:
            bal, purpose = session.execute(_ONE, {"id": account_id, "day": day}).one()
            view = terms[purpose]
            earns = view.terms.balance_method == "average_daily_balance" or (
                bal >= view.terms.min_balance_to_earn_cents
            )
            row = session.get(SavingsAccrual, account_id)
            assert row is not None
            cents, row.remainder_units = interest.accrue_one(
                row.remainder_units, bal if earns else 0,
                interest.rate_units(view.terms.rate_percent),
            )  # fmt: skip
            row.accrued_cents += cents
            row.balance_days_cents += max(bal, 0)
            row.days += 1
            row.accrued_through = day
            session.flush()
            out[account_id] = cents
        seconds = time.monotonic() - started
        session.rollback()
    return seconds, out


def accrued_now(book: Book, account_ids: list[int]) -> dict[int, int]:
    with book.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT account_id, accrued_cents FROM savings_accruals "
                 "WHERE account_id = ANY(:ids)"), {"ids": account_ids},
        ).all()  # fmt: skip
    return {r[0]: r[1] for r in rows}


def sample_ids(book: Book, size: int) -> list[int]:
    with book.engine.connect() as conn:
        ids = conn.execute(
            text("SELECT id FROM accounts WHERE code LIKE '2_00-B%' ORDER BY id")
        ).scalars().all()  # fmt: skip
    step = max(len(ids) // max(size, 1), 1)
    return list(ids[::step][:size])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000, help="accounts the naive loop accrues")
    args = parser.parse_args(argv)
    print(f"seeding {args.accounts:,} accounts (set-based) ...", flush=True)
    book = seed(BENCH_DB, args.accounts)
    try:
        print(f"  seeded in {book.seconds:.1f} s", flush=True)
        first_s, first_cents = accrue(book, FIRST)
        print(f"first date  {FIRST}: {first_s:7.1f} s (every account gets its row), "
              f"accrued {first_cents:,} cents", flush=True)  # fmt: skip
        day2 = FIRST + timedelta(days=1)
        day_s, day_cents = accrue(book, day2)
        print(f"daily run   {day2}: {day_s:7.1f} s, accrued {day_cents:,} cents "
              f"(aim <= {AIM_DAY_S:.0f} s: {'met' if day_s <= AIM_DAY_S else 'NOT met'})",
              flush=True)  # fmt: skip
        day3 = day2 + timedelta(days=1)
        ids = sample_ids(book, args.sample)
        naive_s, naive = naive_day(book, day3, ids)
        per = naive_s / len(ids)
        print(f"naive loop  {day3}: {naive_s:7.1f} s for a sample of {len(ids):,} accounts "
              f"({per * 1000:.2f} ms each); EXTRAPOLATED to {book.accounts:,}: "
              f"{per * book.accounts:,.0f} s", flush=True)  # fmt: skip
        before = accrued_now(book, ids)
        real_s, _ = accrue(book, day3)
        after = accrued_now(book, ids)
        agree = all(after[i] - before[i] == naive[i] for i in ids)
        print(f"set-based   {day3}: {real_s:7.1f} s; the sample agrees account by account: "
              f"{'yes' if agree else 'NO'}", flush=True)  # fmt: skip
        return 0 if agree else 1
    finally:
        book.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
