"""Paybill (C2B) confirmations per second through gunicorn, beside the ledger's own figure.

    .venv/bin/python bench/mpesa.py [--seconds 10] [--senders 8] [--workers 4] [--members 200]
        [--before REV] [--rounds 3] [--profile DIR]

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
* ``--before REV``: the same load is also served by the code of git revision REV
  (exported with ``git archive`` into a temporary directory, gunicorn started there, on
  the same database), rounds alternating before/after; medians of the rounds and both
  ratios to the ledger are printed. ``--profile DIR``: py-spy records every gunicorn
  process of the first round of each side into ``DIR/c2b-before.svg`` / ``c2b-after.svg``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
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


def export_tree(rev: str, into: Path) -> Path:
    """The code of git revision ``rev`` (``git archive``), to serve the 'before' side."""
    tree = into / "before"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def start_gunicorn(workers: int, tree: Path = ROOT) -> tuple[subprocess.Popen[bytes], str]:
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
        "PYTHONPATH": str(tree),
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
        cwd=tree,
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
    prefix: str,
    url: str,
    numbers: list[str],
    start_at: float,
    seconds: float,
    out: list[dict[str, object]],
) -> None:
    rng = random.Random(f"{prefix}{n}")
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
                payload = body(f"{prefix}{n}X{len(sent):06d}", rng.choice(numbers), amount)
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


def run_round(
    label: str,
    prefix: str,
    tree: Path,
    numbers: list[str],
    opts: argparse.Namespace,
    profile: Path | None,
) -> tuple[float, int, int, dict[str, int]]:
    """One timed load against gunicorn serving ``tree``: (posts/s, posts, errors, acked)."""
    proc, url = start_gunicorn(opts.workers, tree)
    spy = None
    try:
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")), "record", "--subprocesses",
                    "--pid", str(proc.pid), "--duration", str(int(opts.seconds) + 1),
                    "--rate", "200", "--format", "flamegraph", "--output", str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        results: list[dict[str, object]] = []
        start_at = time.time() + 1.0
        threads = [
            threading.Thread(
                target=sender, args=(i, prefix, url, numbers, start_at, opts.seconds, results)
            )
            for i in range(opts.senders)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if spy is not None:
            spy.wait(timeout=120)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    posts = sum(int(r["posts"]) for r in results)  # type: ignore[call-overload]
    errors = sum(int(r["errors"]) for r in results)  # type: ignore[call-overload]
    acked: dict[str, int] = {}
    for r in results:
        acked.update(dict(r["acked"]))  # type: ignore[call-overload]
    rate = posts / opts.seconds
    print(f"  round {prefix:<4} {label:<7} {rate:>7.0f} confirmations/s ({posts} posts, "
          f"{len(acked)} distinct, {errors} not acknowledged)", flush=True)  # fmt: skip
    return rate, posts, errors, acked


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--ledger-seconds", type=float, default=5)
    parser.add_argument("--before", help="git revision whose code path is measured too")
    parser.add_argument("--rounds", type=int, default=0, help="default 3 with --before, else 1")
    parser.add_argument("--profile", type=Path, help="directory for py-spy flame graphs (SVG)")
    opts = parser.parse_args()
    rounds = opts.rounds or (3 if opts.before else 1)
    load_start = os.getloadavg()
    print(f"setting up {DB} with {opts.members} members ...", flush=True)
    numbers = setup(opts.members)
    sides: list[tuple[str, Path]] = [("after", ROOT)]
    with tempfile.TemporaryDirectory() as tmp:
        if opts.before:
            sides.insert(0, ("before", export_tree(opts.before, Path(tmp))))
        if opts.profile is not None:
            opts.profile.mkdir(parents=True, exist_ok=True)
        rates: dict[str, list[float]] = {label: [] for label, _ in sides}
        acked: dict[str, int] = {}
        errors = posts = 0
        for n in range(rounds):
            for label, tree in sides:
                profile = (
                    opts.profile / f"c2b-{label}.svg"
                    if opts.profile is not None and n == 0
                    else None
                )
                prefix = f"{label[0].upper()}{n}"
                rate, p, e, a = run_round(label, prefix, tree, numbers, opts, profile)
                rates[label].append(rate)
                posts, errors = posts + p, errors + e
                acked.update(a)
    expected = sum(acked.values())
    ok, detail = check_ledger(expected, len(acked))

    import ledger as ledger_bench  # bench/ledger.py

    float_id, ids = ledger_bench.setup_ledger()
    ledger_rate = ledger_bench.run_ledger(
        "hot", opts.senders, opts.ledger_seconds, float_id, ids, 0
    )
    load_end = os.getloadavg()
    print()
    print(
        f"C2B confirmations through gunicorn ({opts.workers} workers x 4 threads), "
        f"{opts.senders} senders, {opts.seconds:g}s a round, {rounds} round(s) a side, "
        f"{DUPLICATE_SHARE:.0%} duplicates; medians"
    )
    for label, _ in sides:
        c2b_rate = statistics.median(rates[label])
        print(
            f"  {'C2B confirmations/s, ' + label:<34} {c2b_rate:>8.0f}   ratio to the ledger "
            f"{c2b_rate / ledger_rate:.2f}   (rounds: "
            f"{', '.join(f'{r:.0f}' for r in rates[label])})"
        )
    print(
        f"  {'ledger hot-float entries/s':<34} {ledger_rate:>8.0f}   (bench/ledger.py, "
        f"{opts.senders} processes, same run)"
    )
    if opts.before:
        after, before = statistics.median(rates["after"]), statistics.median(rates["before"])
        print(f"  {'after / before':<34} {after / before:>8.2f}   (before = {opts.before})")
    print(f"  load average: {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end")
    print(f"  exact ledger: {'YES' if ok else 'NO'} - {detail}")
    if not ok or errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
