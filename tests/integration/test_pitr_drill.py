"""The point-in-time recovery drill of docs/operators/backups.md, run on loopback with
PostgreSQL's own tools and the scripts in deploy/pitr/: a throw-away source cluster (initdb)
archives its WAL encrypted with gpg; the app schema is migrated into it and core writes
members, deposits (ledger entries) and audit rows in three batches: one before the base
backup, one after it, then a moment T is noted, then a third. The base backup is restored
into a fresh data directory with ``recovery_target_time = T``; the restored server must hold
the first two batches and none of the third, and ``manage.py verify-ledger`` and
``verify-audit`` must be green on it. The time from the restore script to the promoted
server is printed as the drill's RTO (quoted in the docs)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.permissions import Principal
from core.savings import accounts as savings
from db.base import utcnow
from db.migrate import upgrade
from tests.ussdutil import make_member

ROOT = Path(__file__).resolve().parents[2]
PITR = ROOT / "deploy" / "pitr"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# initdb refuses to run as root: as root (a container) the clusters run as ``postgres``.
CLUSTER_USER = "postgres" if os.geteuid() == 0 else None
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PG_BIN / "initdb").exists() or shutil.which("gpg") is None,
        reason="PostgreSQL 15 server binaries and gpg are needed",
    ),
]
BATCH = {1: "Kwanza", 2: "Pili", 3: "Tatu"}  # the first, second and third member
TELLER = Principal(kind="staff", id=9, name="drill", role="teller", branch="Nairobi",
                   address="127.0.0.1", request_id="pitr-drill")  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Drill:
    work: Path

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> str:
        """A command as the cluster's user, with the PostgreSQL 15 tools first on PATH."""
        path = f"{PG_BIN}:{os.environ['PATH']}"
        command = ["env", f"PATH={path}", *(f"{k}={v}" for k, v in (env or {}).items())]
        if CLUSTER_USER:
            command = ["runuser", "-u", CLUSTER_USER, "--", *command]
        done = subprocess.run(
            [*command, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done.stdout

    def mkdir(self, name: str) -> Path:
        path = self.work / name
        self.run("mkdir", "-m", "0700", path)
        return path


@pytest.fixture
def drill() -> Iterator[Drill]:
    work = Path(tempfile.mkdtemp(prefix="pitr-", dir="/tmp"))  # short: socket paths
    if CLUSTER_USER:
        user = pwd.getpwnam(CLUSTER_USER)
        os.chown(work, user.pw_uid, user.pw_gid)
    made = Drill(work)
    yield made
    for data in ("source", "restored", "latest"):
        if (work / data / "postmaster.pid").exists():
            made.run(PG_BIN / "pg_ctl", "-D", work / data, "-m", "immediate", "stop")
    for home in ("officers", "archiver"):
        subprocess.run(["gpgconf", "--homedir", str(work / home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def cluster_url(port: int, database: str = "sacco") -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"


def write_batch(url: str, deps: CoreDeps, n: int) -> None:
    """Through core: a member, a deposit (a ledger entry) and an audit row, committed."""
    engine = create_engine(url)
    with Session(engine) as session:
        member = make_member(session, deps, name=f"{BATCH[n]} Mwanachama",
                             msisdn=f"+2547120{n:02d}001", national_id=f"3000000{n}")  # fmt: skip
        savings.credit_member(
            session,
            deps,
            savings.Credit(
                member_id=member.id, target="savings", amount_cents=n * 100_000,
                source=savings.CreditSource.MPESA, idempotency_key=f"pitr-{n}",
                business_key=f"deposit_received:pitr-{n}",
            ),
        )  # fmt: skip
        audit.record(session, TELLER, "drill.batch", target_type="member",
                     target_id=member.id, after={"batch": n}, now=utcnow())  # fmt: skip
        session.commit()
    engine.dispose()


def query(port: int, sql: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="sacco")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
        rows: list[tuple[Any, ...]] = cur.fetchall()
    conn.close()
    return rows


def manage(url: str, command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SACCO_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), command],
        env={**env, "SACCO_ENV": "test", "DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_restore_to_a_moment_between_two_batches_keeps_the_first_and_loses_the_second(
    drill: Drill, deps: CoreDeps
) -> None:
    started = time.monotonic()
    work = drill.work
    officers, archiver = drill.mkdir("officers"), drill.mkdir("archiver")
    drill.run("gpg", "--homedir", officers, "--batch", "--quiet", "--passphrase", "",
              "--quick-gen-key", "SACCO backups <backup@umoja.example>",
              "future-default", "default", "never")  # fmt: skip
    public = work / "backup-public.asc"
    public.write_text(drill.run("gpg", "--homedir", officers, "--export", "--armor",
                                "backup@umoja.example"))  # fmt: skip
    wal, bases = work / "wal", work / "base"

    # The source: archiving on, as docs/operators/backups.md configures it.
    source, port = work / "source", free_port()
    drill.run(PG_BIN / "initdb", "-D", source, "-U", "postgres", "--auth=trust", "--no-sync")
    with (source / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
            "wal_level = replica\narchive_mode = on\narchive_timeout = 60\n"
            f"archive_command = '{PITR / 'archive-wal.sh'} {wal} {public} %p %f'\n"
        )
    drill.run(PG_BIN / "pg_ctl", "-D", source, "-l", work / "source.log", "-w", "start",
              env={"GNUPGHOME": str(archiver)})  # fmt: skip
    admin = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE sacco")
    admin.close()
    upgrade(cluster_url(port))

    write_batch(cluster_url(port), deps, 1)
    made = drill.run(PITR / "base-backup.sh", bases, env={
        "BACKUP_GPG_RECIPIENT": str(public), "GNUPGHOME": str(archiver),
        "PITR_CONNINFO": f"host=127.0.0.1 port={port} user=postgres dbname=postgres"})  # fmt: skip
    print(made.strip())
    [backup] = bases.glob("base-*.tar.gpg")
    assert b"PG_VERSION" not in backup.read_bytes()  # an OpenPGP message, not a tar
    write_batch(cluster_url(port), deps, 2)
    [(moment,)] = query(port, "SELECT clock_timestamp()")
    time.sleep(0.05)
    write_batch(cluster_url(port), deps, 3)
    [(last,)] = query(port, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 30
    while (wal / f"{last}.gpg").exists() is False:
        assert time.monotonic() < deadline, "the last segment was never archived"
        time.sleep(0.1)
    # The disaster: the source is gone; only the archive and the base backup remain.
    drill.run(PG_BIN / "pg_ctl", "-D", source, "-m", "immediate", "stop")
    archived = list(wal.glob("*.gpg"))
    assert not any(b"Mwanachama" in f.read_bytes() for f in archived)
    assert {oct(f.stat().st_mode & 0o777) for f in [*archived, backup]} == {"0o600"}

    clock = time.monotonic()
    restored, port2 = work / "restored", free_port()
    said = drill.run(PITR / "restore.sh", "--base", backup, "--wal-archive", wal,
                     "--pgdata", restored, "--target-time", moment.isoformat(),
                     "--port", str(port2), env={"GNUPGHOME": str(officers)})  # fmt: skip
    print(said.strip())
    drill.run(PG_BIN / "pg_ctl", "-D", restored, "-l", work / "restored.log", "-w", "start")
    deadline = time.monotonic() + 30
    while query(port2, "SELECT pg_is_in_recovery()") != [(False,)]:
        assert time.monotonic() < deadline, (work / "restored.log").read_text()
        time.sleep(0.05)
    rto = time.monotonic() - clock

    names = [r[0] for r in query(port2, "SELECT full_name FROM members ORDER BY id")]
    assert names == ["Kwanza Mwanachama", "Pili Mwanachama"]
    balances = query(port2, "SELECT balance_cents FROM accounts WHERE member_id IS NOT NULL "
                            "AND purpose = 'savings' ORDER BY member_id")  # fmt: skip
    assert balances == [(100_000,), (200_000,)]
    assert query(port2, "SELECT count(*) FROM audit_log WHERE action = 'drill.batch'") == [(2,)]
    ledger = manage(cluster_url(port2), "verify-ledger")
    assert ledger.returncode == 0 and "ledger OK" in ledger.stdout, ledger.stdout + ledger.stderr
    chain = manage(cluster_url(port2), "verify-audit")
    assert chain.returncode == 0 and "audit chain OK" in chain.stdout, chain.stdout + chain.stderr
    # Restore to the latest moment: everything archived is back, batch three included.
    latest, port3 = work / "latest", free_port()
    drill.run(PITR / "restore.sh", "--base", backup, "--wal-archive", wal, "--pgdata", latest,
              "--port", str(port3), env={"GNUPGHOME": str(officers)})  # fmt: skip
    drill.run(PG_BIN / "pg_ctl", "-D", latest, "-l", work / "latest.log", "-w", "start")
    deadline = time.monotonic() + 30
    while query(port3, "SELECT pg_is_in_recovery()") != [(False,)]:
        assert time.monotonic() < deadline, (work / "latest.log").read_text()
        time.sleep(0.05)
    everything = [r[0] for r in query(port3, "SELECT full_name FROM members ORDER BY id")]
    assert everything == ["Kwanza Mwanachama", "Pili Mwanachama", "Tatu Mwanachama"]
    # A second restore into the same (now full) data directory is refused.
    refused = subprocess.run(
        ["bash", str(PITR / "restore.sh"), "--base", str(backup), "--wal-archive", str(wal),
         "--pgdata", str(restored)], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 3 and "is not empty" in refused.stderr
    print(f"target {moment.isoformat()}: batches 1-2 restored, batch 3 absent; "
          "to the latest moment: batches 1-3")  # fmt: skip
    print(ledger.stdout.strip())
    print(chain.stdout.strip())
    print(f"RTO (restore script to promoted server): {rto:.1f} s; whole drill "
          f"{time.monotonic() - started:.1f} s; RPO bound: archive_timeout = 60 s")  # fmt: skip
