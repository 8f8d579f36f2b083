"""Outbox throughput and commit-to-send delay: PostgreSQL + Redis + 2 RQ worker
processes + the Africa's Talking stand-in (one command).

    python bench/outbox.py [--messages 2000] [--workers 2] [--rate 0]

1. Throughput: N messages committed (no enqueue), then all enqueued at once; the
   time until the last is recorded as sent gives messages/second end to end
   (claim, HTTP send through the real SDK, record).
2. Delay: N/2 messages, each in its own transaction (a business change), handed to
   RQ by the after-commit hook; delay = our ``sent_at`` - the commit, p50/p99.
   Sent at ``--rate`` per second (default: half the measured throughput, so the
   delay measures the path and not a backlog).
Databases: sacco_bench_outbox on BENCH_PG_HOST (127.0.0.1:5432, user postgres);
Redis BENCH_OUTBOX_REDIS_URL (default redis://127.0.0.1:6379/14, flushed; bench/ussd.py uses db 13).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from core.messaging.notifications import install_dispatch, notify, take_pending_ids  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import OutboxAttempt, OutboxMessage  # noqa: E402
from db.session import make_engine, make_session_factory, unit_of_work  # noqa: E402
from integrations.africastalking.standin import start_standin  # noqa: E402
from workers.dispatch import RqDispatcher  # noqa: E402
from workers.queue import enqueue_messages  # noqa: E402

HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PORT = os.environ.get("BENCH_PG_PORT", "5432")
USER = os.environ.get("BENCH_PG_USER", "postgres")
DB = "sacco_bench_outbox"
URL = f"postgresql+psycopg2://{USER}@{HOST}:{PORT}/{DB}"
REDIS_URL = os.environ.get("BENCH_OUTBOX_REDIS_URL", "redis://127.0.0.1:6379/14")
QUEUE = "outbox-bench"


def recreate() -> None:
    conn = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DB}"')
        cur.execute(f'CREATE DATABASE "{DB}"')
    conn.close()


def start_workers(n: int, standin_url: str) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        SACCO_ENV="test",
        DATABASE_URL=URL,
        REDIS_URL=REDIS_URL,
        AT_BASE_URL=standin_url,
        OUTBOX_QUEUE=QUEUE,
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="WARNING",
    )
    return [
        subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--name", f"bench-{i}-{os.getpid()}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]


def wait_all_sent(factory: object, total: int) -> None:
    while True:
        with factory() as s:  # type: ignore[operator]
            done = s.scalar(
                select(func.count()).where(OutboxMessage.status.in_(("sent", "delivered")))
            )
        if done >= total:
            return
        time.sleep(0.02)


def queue(session: object, key: str, n: int) -> None:
    notify(
        session,  # type: ignore[arg-type]
        template="sms_start_ok",
        business_key=key,
        data={"sacco": "Umoja SACCO"},
        msisdn=f"+2547{n % 100_000_000:08d}",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s for the delay run")
    args = parser.parse_args()

    recreate()
    upgrade(URL)
    engine = make_engine(URL)
    factory = make_session_factory(engine)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    standin = start_standin()
    workers = start_workers(args.workers, standin.url)
    try:
        time.sleep(2)  # workers up
        # 1. throughput
        n = args.messages
        with unit_of_work(factory) as s:
            for i in range(n):
                queue(s, f"bench-t-{i}", i)
            ids = take_pending_ids(s)
            s.commit()
        started = time.monotonic()
        enqueue_messages(client, ids, queue_name=QUEUE)
        wait_all_sent(factory, n)
        elapsed = time.monotonic() - started
        throughput = n / elapsed
        print(
            f"throughput: {n} messages in {elapsed:.2f} s = {throughput:.0f} msg/s "
            f"with {args.workers} workers"
        )

        # 2. commit-to-send delay at a rate below capacity
        install_dispatch(factory, RqDispatcher(client, QUEUE, 300))
        m = max(1, n // 2)
        rate = args.rate or throughput / 2
        committed: dict[int, datetime] = {}
        t0 = time.monotonic()
        for i in range(m):
            with unit_of_work(factory) as s:
                queue(s, f"bench-d-{i}", n + i)
                message_id = s.execute(
                    select(OutboxMessage.id).where(OutboxMessage.business_key == f"bench-d-{i}")
                ).scalar_one()
                s.commit()  # the after-commit hook enqueues
                committed[int(message_id)] = datetime.now(UTC)
            pause = t0 + (i + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        wait_all_sent(factory, n + m)
        with unit_of_work(factory) as s:
            rows = s.execute(
                select(OutboxMessage.id, OutboxMessage.sent_at).where(
                    OutboxMessage.id.in_(list(committed))
                )
            ).all()
        sent = {int(row[0]): row[1] for row in rows}
        delays = sorted((sent[i] - at).total_seconds() * 1000 for i, at in committed.items())
        p50 = statistics.median(delays)
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        print(
            f"commit -> sent at {rate:.0f} msg/s ({m} messages): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {delays[-1]:.1f} ms"
        )
        with unit_of_work(factory) as s:
            attempts = s.execute(
                select(
                    OutboxAttempt.message_id, OutboxAttempt.started_at, OutboxAttempt.finished_at
                ).where(OutboxAttempt.message_id.in_(list(committed)))
            ).all()
        queued = sorted((a[1] - committed[int(a[0])]).total_seconds() * 1000 for a in attempts)
        sending = sorted((a[2] - a[1]).total_seconds() * 1000 for a in attempts)
        print(
            f"  of which commit -> claim p50 {statistics.median(queued):.1f} ms, p99 {queued[int(len(queued) * 0.99)]:.1f} ms;"
            f" claim -> sent p50 {statistics.median(sending):.1f} ms, p99 {sending[int(len(sending) * 0.99)]:.1f} ms"
        )
        print(f"gateway received {len(standin.state.messages)} messages for {n + m} queued")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        standin.stop()
        client.flushdb()
        client.close()
        engine.dispose()


if __name__ == "__main__":
    main()
