"""Ledger throughput beside PostgreSQL's own bank benchmark, on the same server, same run.

    .venv/bin/python bench/ledger.py [--seconds 5] [--rounds 3] [--clients 1,4,8] [--shards 1,4,16]

For each client count it runs, in separate processes (real parallelism, no GIL):
  * ledger, cold: transfers between 200 member accounts (2 postings each);
  * ledger, hot, once per shard count N: deposits from the M-Pesa collections float
    into member accounts; N = 1 is the float unsharded (every entry locks its one row,
    like pgbench's branch row), N > 1 spreads the entries over N shards
    (core.ledger.shards, LEDGER_SHARDS);
  * pgbench --builtin=tpcb-like at scale 1 (one branch row that every transaction updates).
It prints medians over the rounds, the ratio ledger entries/s over pgbench TPS, and the
load average at the start and the end (the machine may be shared).
Databases: sacco_bench_ledger and sacco_bench_pgbench (BENCH_LEDGER_DB, BENCH_PGBENCH_DB) on
BENCH_PG (default 127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import psycopg2  # noqa: E402

from db.session import unit_of_work

HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PORT = os.environ.get("BENCH_PG_PORT", "5432")
USER = os.environ.get("BENCH_PG_USER", "postgres")
LEDGER_DB = os.environ.get("BENCH_LEDGER_DB", "sacco_bench_ledger")
PGBENCH_DB = os.environ.get("BENCH_PGBENCH_DB", "sacco_bench_pgbench")
URL = f"postgresql+psycopg2://{USER}@{HOST}:{PORT}/{LEDGER_DB}"
ACCOUNTS = 200


def recreate(db: str) -> None:
    conn = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{db}"')
        cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()


def setup_ledger(shards: int = 16) -> tuple[int, list[int]]:
    from core.ledger import entries as ledger
    from core.ledger.chart import SystemAccount
    from core.ledger.shards import ensure_shards
    from core.ledger.vocabulary import EntryKind
    from db.base import utcnow
    from db.migrate import upgrade
    from db.session import make_engine, make_session_factory

    recreate(LEDGER_DB)
    upgrade(URL)
    engine = make_engine(URL)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        ensure_shards(session, shards, now=utcnow())
        ledger.forget_hot_set(session)
        float_id = ledger.account_id_by_code(session, SystemAccount.MPESA_COLLECTIONS_FLOAT)
        ids = [
            ledger.create_account(
                session,
                code=f"B-{i}",
                name=f"Bench {i}",
                type_="liability",
                purpose="savings",
                no_overdraft=True,
                now=utcnow(),
            ).id
            for i in range(ACCOUNTS)
        ]
        for account in ids:
            ledger.post_entry(
                session,
                kind=EntryKind.DEPOSIT_MPESA,
                legs=[ledger.Leg(float_id, 10**11), ledger.Leg(account, -(10**11))],
                idempotency_key=f"seed-{account}",
                now=utcnow(),
            )
        session.commit()
    engine.dispose()
    return float_id, ids


def ledger_worker(args: tuple[str, int, list[int], float, int, str, float, int]) -> int:
    """Import, connect and warm up first; then work from the shared start time for ``seconds``."""
    mode, float_id, ids, seconds, seed, tag, start_at, shards = args
    from core.kernel.errors import InsufficientFunds
    from core.ledger import entries as ledger
    from core.ledger.vocabulary import EntryKind
    from db.base import utcnow
    from db.session import make_engine, make_session_factory, run_in_transaction

    engine = make_engine(URL, pool_size=1)
    factory = make_session_factory(engine, ledger_shards=shards)
    with unit_of_work(factory) as session:
        ledger.hot_account_ids(session)
    rng = random.Random(seed)
    done = 0
    time.sleep(max(0.0, start_at - time.time()))
    end = time.time() + seconds
    while time.time() < end:
        amount = rng.randint(1, 10_000)
        if mode == "hot":
            legs = [ledger.Leg(float_id, amount), ledger.Leg(rng.choice(ids), -amount)]
        else:
            a, b = rng.sample(ids, 2)
            legs = [ledger.Leg(a, amount), ledger.Leg(b, -amount)]
        key = f"{tag}-{seed}-{done}"

        def work(session, legs=legs, key=key):  # type: ignore[no-untyped-def]
            ledger.post_entry(
                session, kind=EntryKind.DEPOSIT_MPESA, legs=legs, idempotency_key=key, now=utcnow()
            )
            session.commit()

        with contextlib.suppress(InsufficientFunds):
            run_in_transaction(factory, work)
        done += 1
    engine.dispose()
    return done


def run_ledger(
    mode: str,
    clients: int,
    seconds: float,
    float_id: int,
    ids: list[int],
    rnd: int,
    shards: int = 1,
) -> float:
    """Entries per second; ``shards``: how many rows of the float the hot entries spread
    over (1: the float whole, as before issue 18)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(clients) as pool:
        tag = f"{mode}{clients}s{shards}r{rnd}"
        start_at = time.time() + 4.0  # every process imported and connected by then
        counts = pool.map(
            ledger_worker,
            [(mode, float_id, ids, seconds, i, tag, start_at, shards) for i in range(clients)],
        )
    return sum(counts) / seconds


def setup_pgbench() -> None:
    recreate(PGBENCH_DB)
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "1", "-h", HOST, "-p", PORT, "-U", USER, PGBENCH_DB],
        check=True,
        capture_output=True,
    )


def run_pgbench(clients: int, seconds: float) -> float:
    out = subprocess.run(
        [
            "pgbench",
            "--builtin=tpcb-like",
            "-n",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(int(seconds)),
            "-h",
            HOST,
            "-p",
            PORT,
            "-U",
            USER,
            PGBENCH_DB,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--shards", default="1,4,16", help="shard counts for the hot float")
    opts = parser.parse_args()
    client_counts = [int(c) for c in opts.clients.split(",")]
    shard_counts = [int(n) for n in opts.shards.split(",")]
    load_start = os.getloadavg()
    print(f"load average at the start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    print(
        f"setting up ({ACCOUNTS} accounts, {max(shard_counts)} float shards, pgbench scale 1) ...",
        flush=True,
    )
    float_id, ids = setup_ledger(max(shard_counts))
    setup_pgbench()
    modes = ["cold"] + [f"hot{n}" for n in shard_counts]
    results: dict[tuple[str, int], list[float]] = {}
    for rnd in range(opts.rounds):
        for clients in client_counts:
            # Interleave them all so machine noise hits each alike.
            results.setdefault(("pgbench", clients), []).append(run_pgbench(clients, opts.seconds))
            for mode in modes:
                shards = int(mode[3:]) if mode.startswith("hot") else 1
                results.setdefault((mode, clients), []).append(
                    run_ledger(
                        "hot" if mode.startswith("hot") else "cold",
                        clients,
                        opts.seconds,
                        float_id,
                        ids,
                        rnd,
                        shards,
                    )
                )
        print(f"round {rnd + 1}/{opts.rounds} done", flush=True)
    load_end = os.getloadavg()
    print()
    print(
        f"medians of {opts.rounds} rounds x {opts.seconds:g}s; entries/s (postings/s = 2 x entries/s);"
        " hot N = the float in N shards (1: one row)"
    )
    header = f"{'clients':>7} {'pgbench tps':>12} {'cold':>7} {'ratio':>6}"
    for n in shard_counts:
        header += f" {'hot N=' + str(n):>9} {'ratio':>6}"
    print(header)
    for clients in client_counts:
        pg = statistics.median(results[("pgbench", clients)])
        line = f"{clients:>7} {pg:>12.0f}"
        for mode in modes:
            rate = statistics.median(results[(mode, clients)])
            line += f" {rate:>{7 if mode == 'cold' else 9}.0f} {rate / pg:>6.2f}"
        print(line)
    print(f"load average at the end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    from core.ledger.verify import verify_ledger
    from db.session import make_engine, make_session_factory

    engine = make_engine(URL)
    with make_session_factory(engine)() as session:
        report = verify_ledger(session)
    engine.dispose()
    print(
        f"\nverify-ledger after the run: {'OK' if report.ok else report.problems[:5]} "
        f"({report.entries} entries, {report.postings} postings)"
    )


if __name__ == "__main__":
    main()
