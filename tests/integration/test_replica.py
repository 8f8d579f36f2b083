"""Reports off the primary (issue 16, part 6): a throw-away primary on loopback (initdb), a
real streaming replica of it (pg_basebackup -R -X stream, hot standby), entries written on
the primary through core, and the report read from the replica, with where it came from and
the replica's lag on it; through the runtime the app builds and through ``manage.py report``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from config import load_settings
from core.ledger.chart import AccountType, Purpose, SystemAccount
from core.reports import jobs
from core.reports import source as report_source
from db.migrate import upgrade
from runtime import build_runtime
from tests.integration.test_pitr_drill import CLUSTER_USER, PG_BIN, Drill, free_port
from tests.reportutil import account, post

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PG_BIN / "pg_basebackup").exists(), reason="PostgreSQL 15 server binaries needed"
    ),
]


def url(port: int) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/sacco"


@pytest.fixture
def clusters() -> Iterator[tuple[int, int]]:
    work = Path(tempfile.mkdtemp(prefix="repl-", dir="/tmp"))
    if CLUSTER_USER:
        shutil.chown(work, CLUSTER_USER, CLUSTER_USER)
    run = Drill(work).run
    primary, replica = work / "primary", work / "replica"
    p_port, r_port = free_port(), free_port()
    try:
        run(PG_BIN / "initdb", "-D", primary, "-U", "postgres", "--auth=trust", "--no-sync")
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {p_port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{work}'\nwal_level = replica\nmax_wal_senders = 4\n"
                "fsync = off\n"
            )
        run(PG_BIN / "pg_ctl", "-D", primary, "-l", work / "primary.log", "-w", "start")
        admin = psycopg2.connect(host="127.0.0.1", port=p_port, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("CREATE DATABASE sacco")
        admin.close()
        upgrade(url(p_port))
        run(PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", str(p_port), "-U", "postgres",
            "-D", replica, "-R", "-X", "stream", "-c", "fast", "--no-sync")  # fmt: skip
        with (replica / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {r_port}\nhot_standby = on\n")
        run(PG_BIN / "pg_ctl", "-D", replica, "-l", work / "replica.log", "-w", "start")
        yield p_port, r_port
    finally:
        for data in (replica, primary):
            if (data / "postmaster.pid").exists():
                run(PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(work, ignore_errors=True)


def wait_for(r_port: int, code: str, deadline_s: float = 30) -> None:
    engine = create_engine(url(r_port))
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end:
            with engine.connect() as conn:
                if conn.execute(
                    text("SELECT 1 FROM accounts WHERE code = :c"), {"c": code}
                ).first():
                    return
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise AssertionError("the replica did not replay the primary's writes")


def test_reports_read_the_replica_and_show_its_lag(clusters: tuple[int, int]) -> None:
    p_port, r_port = clusters
    primary = create_engine(url(p_port))
    with Session(primary) as s:
        mpesa = account(s, SystemAccount.MPESA_COLLECTIONS_FLOAT, AccountType.ASSET)
        savings = account(s, "2000-REPL1", AccountType.LIABILITY, Purpose.SAVINGS)
        post(s, date(2026, 3, 2), (mpesa, 4_200_000), (savings, -4_200_000))
        s.commit()
    primary.dispose()
    wait_for(r_port, "2000-REPL1")

    settings = load_settings(
        sacco_env="test", database_url=url(p_port), replica_database_url=url(r_port)
    )
    rt = build_runtime(settings, dispatch=False)
    assert rt.replica_session_factory is not None
    with rt.report_session() as read:
        where = report_source.describe(read, replica=True)
        built = jobs.build_now(
            read, "trial_balance", {"as_of": "2026-03-31"}, today=date(2026, 12, 1), source=where
        )
        with pytest.raises(DBAPIError, match="read-only transaction"):  # it is the standby
            read.execute(text("UPDATE accounts SET name = name"))
    assert built.meta["database"] == "replica"
    assert isinstance(built.meta["lag_seconds"], float) and built.meta["lag_seconds"] >= 0
    rows = {r[0]: r[3:] for r in built.sections[0].rows}
    assert rows["2000-REPL1"] == (0, 4_200_000) and built.checks == (("debits = credits", True),)
    with rt.session() as s:  # the primary is not in recovery: no lag, and "primary"
        assert report_source.describe(s, replica=False) == {
            "database": "primary",
            "lag_seconds": None,
        }
    rt.engine.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(SACCO_ENV="test", DATABASE_URL=url(p_port), REPLICA_DATABASE_URL=url(r_port),
               PYTHONPATH=str(ROOT))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "manage.py", "report", "financial_position", "--date", "2026-03-31"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "database,replica" in done.stdout and "lag_seconds," in done.stdout
    assert "Members' savings,42000.00" in done.stdout
