"""Paybill (C2B) confirmations per second through gunicorn, beside the ledger's own figure.

    .venv/bin/python bench/mpesa.py [--seconds 10] [--senders 8] [--workers 4] [--members 200]

* Database ``sacco_bench_mpesa`` (recreated, migrated) on BENCH_PG (default
  127.0.0.1:5432, user postgres), ``--members`` active members.
* gunicorn serves ``wsgi:app`` (deploy/gunicorn.conf.py, ``--workers`` processes x 4
  threads) on a free port; ``--senders`` threads POST Daraja's exact confirmation
  JSON to ``/hooks/mobile/c2b/confirmation?token=...`` (the URL Daraja is given); 20% of the posts repeat a TransID
  already sent (Safaricom's duplicates), the rest are new payments.
* At the end: verify-ledger, and the credited total must equal the sum of the
  distinct payments acknowledged (not one cent more or less), one C2B row and one
  journal entry per distinct TransID.
* Then bench/ledger.py's hot-float deposit benchmark (a short single run, the same
  sender count) for the ledger's raw entries/s on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg2  # noqa: E402
import requests  # noqa: E402

HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PORT = os.environ.get("BENCH_PG_PORT", "5432")
USER = os.environ.get("BENCH_PG_USER", "postgres")
DB = "sacco_bench_mpesa"
URL = f"postgresql+psycopg2://{USER}@{HOST}:{PORT}/{DB}"
TOKEN = "bench-callback-token-0123456789abcdef"
DUPLICATE_SHARE = 0.2


def recreate() -> None:
    conn = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DB}"')
        cur.execute(f'CREATE DATABASE "{DB}"')
    conn.close()


def setup(members_n: int) -> list[str]:
    from config import load_settings
    from core.members import registration as members
    from db.migrate import upgrade
    from runtime import build_runtime

    recreate()
    upgrade(URL)
    runtime = build_runtime(load_settings(sacco_env="test", database_url=URL))
    numbers = []
    for i in range(members_n):
        with runtime.unit_of_work() as session:
            m = members.register_member(
                session,
                runtime.deps,
                full_name=f"Bench Member{chr(65 + i % 26)}",
                msisdn=f"+2547{10_000_000 + i:08d}",
                national_id=str(30_000_000 + i),
                consent=True,
            )
            members.set_status(session, m.id, "active")
            numbers.append(str(m.member_number))
    runtime.engine.dispose()
    return numbers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gunicorn(workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "SACCO_ENV": "test",
        "DATABASE_URL": URL,
        "MPESA_CALLBACK_TOKEN": TOKEN,
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": "4",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "-c",
            "deploy/gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with requests.get(url + "/healthz", timeout=1) as r:
                if r.status_code == 200:
                    return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def body(trans_id: str, member_number: str, amount_kes: int) -> dict[str, str]:
    return {
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": time.strftime("%Y%m%d%H%M%S"),
        "TransAmount": f"{amount_kes}.00",
        "BusinessShortCode": "174379",
        "BillRefNumber": member_number,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 126",
        "FirstName": "BENCH",
        "MiddleName": "",
        "LastName": "",
    }


def sender(
    n: int,
    url: str,
    numbers: list[str],
    start_at: float,
    seconds: float,
    out: list[dict[str, object]],
) -> None:
    rng = random.Random(n)
    sent: list[dict[str, str]] = []
    acked: dict[str, int] = {}
    posts = errors = 0
    target = f"{url}/hooks/mobile/c2b/confirmation?token={TOKEN}"
    with requests.Session() as http:
        time.sleep(max(0.0, start_at - time.time()))
        end = time.time() + seconds
        while time.time() < end:
            if sent and rng.random() < DUPLICATE_SHARE:
                payload = rng.choice(sent)
            else:
                amount = rng.randint(10, 5_000)
                payload = body(f"B{n}X{len(sent):07d}", rng.choice(numbers), amount)
                sent.append(payload)
            with http.post(target, json=payload, timeout=30) as r:
                posts += 1
                if r.status_code == 200 and r.json().get("ResultCode") == 0:
                    acked[payload["TransID"]] = int(payload["TransAmount"].split(".")[0]) * 100
                else:
                    errors += 1
    out.append({"posts": posts, "errors": errors, "acked": acked})


def check_ledger(expected_cents: int, distinct: int) -> tuple[bool, str]:
    from sqlalchemy import func, select

    from core.ledger.verify import verify_ledger
    from db.models import Account, JournalEntry
    from db.models_mpesa import C2BPayment
    from db.session import make_engine, make_session_factory

    engine = make_engine(URL)
    with make_session_factory(engine)() as s:
        report = verify_ledger(s)
        credited = s.scalar(
            select(func.sum(Account.balance_cents)).where(Account.purpose == "savings")
        )
        rows = s.scalar(select(func.count()).select_from(C2BPayment))
        entries = s.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.idempotency_key.like("mpesa:receipt:%"))
        )
    engine.dispose()
    ok = report.ok and credited == expected_cents and rows == distinct == entries
    detail = (
        f"verify-ledger {'OK' if report.ok else report.problems[:3]}; credited "
        f"{credited} cents, expected {expected_cents}; {rows} C2B rows, {entries} entries, "
        f"{distinct} distinct payments"
    )
    return ok, detail


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--ledger-seconds", type=float, default=5)
    opts = parser.parse_args()
    print(f"setting up {DB} with {opts.members} members ...", flush=True)
    numbers = setup(opts.members)
    proc, url = start_gunicorn(opts.workers)
    try:
        results: list[dict[str, object]] = []
        start_at = time.time() + 1.0
        threads = [
            threading.Thread(target=sender, args=(i, url, numbers, start_at, opts.seconds, results))
            for i in range(opts.senders)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    posts = sum(int(r["posts"]) for r in results)  # type: ignore[call-overload]
    errors = sum(int(r["errors"]) for r in results)  # type: ignore[call-overload]
    acked: dict[str, int] = {}
    for r in results:
        acked.update(dict(r["acked"]))  # type: ignore[call-overload]
    expected = sum(acked.values())
    ok, detail = check_ledger(expected, len(acked))

    import ledger as ledger_bench  # bench/ledger.py

    float_id, ids = ledger_bench.setup_ledger()
    ledger_rate = ledger_bench.run_ledger(
        "hot", opts.senders, opts.ledger_seconds, float_id, ids, 0
    )
    c2b_rate = posts / opts.seconds
    print()
    print(
        f"C2B confirmations through gunicorn ({opts.workers} workers x 4 threads), "
        f"{opts.senders} senders, {opts.seconds:g}s, {DUPLICATE_SHARE:.0%} duplicates"
    )
    print(
        f"  {'C2B confirmations/s':<34} {c2b_rate:>8.0f}   ({posts} posts, {len(acked)} "
        f"distinct, {errors} not acknowledged)"
    )
    print(
        f"  {'ledger hot-float entries/s':<34} {ledger_rate:>8.0f}   (bench/ledger.py, "
        f"{opts.senders} processes, same run)"
    )
    print(f"  {'ratio C2B / ledger':<34} {c2b_rate / ledger_rate:>8.2f}")
    print(f"  exact ledger: {'YES' if ok else 'NO'} - {detail}")
    if not ok or errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
