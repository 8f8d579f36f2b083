"""deploy/backup.sh and deploy/restore.sh round trip on the real PostgreSQL with a real gpg:
the backup is encrypted to a public key (the backup host holds nothing else), written
0600 in a 0700 directory, carries no readable data, and restores with the private key
into an empty database whose books verify-ledger proves."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.savings import accounts as savings
from tests.settings import PG_ADMIN_DSN, PG_DBNAME, PG_URL
from tests.ussdutil import make_member

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("gpg", "pg_dump", "pg_restore")),
    reason="gpg, pg_dump and pg_restore are needed",
)
RESTORE_DB = f"{PG_DBNAME}_restore"


def admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


@pytest.fixture
def restore_url() -> Iterator[str]:
    admin(f'DROP DATABASE IF EXISTS "{RESTORE_DB}"')
    admin(f'CREATE DATABASE "{RESTORE_DB}" TEMPLATE template0')
    yield make_url(PG_URL).set(database=RESTORE_DB).render_as_string(hide_password=False)
    admin(f'DROP DATABASE IF EXISTS "{RESTORE_DB}" WITH (FORCE)')


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--quiet", *args],
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """(the officers' keyring with the private key, the exported public key file)."""
    home = tmp_path / "officers-gnupg"
    home.mkdir(mode=0o700)
    gpg(home, "--passphrase", "", "--quick-gen-key", "SACCO backups <backup@umoja.example>",
        "future-default", "default", "never")  # fmt: skip
    public = tmp_path / "backup-public.asc"
    public.write_text(gpg(home, "--export", "--armor", "backup@umoja.example").stdout)
    return home, public


def run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / script), *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_backup_is_encrypted_private_and_restores_to_verified_books(
    committed_pg: Engine,
    deps: CoreDeps,
    tmp_path: Path,
    keys: tuple[Path, Path],
    restore_url: str,
) -> None:
    with Session(committed_pg) as session:
        member = make_member(session, deps, name="Zawadi Backupova", msisdn="+254712000777")
        savings.credit_member(
            session,
            deps,
            savings.Credit(
                member_id=member.id,
                target="savings",
                amount_cents=Money.of("4321.09").cents,
                source=savings.CreditSource.MPESA,
                idempotency_key="backup-1",
                business_key="deposit_received:backup-1",
            ),
        )
        session.commit()
        member_id = member.id
    officers, public = keys
    backup_host = tmp_path / "backup-host-gnupg"  # holds no key at all
    backup_host.mkdir(mode=0o700)
    dest = tmp_path / "backups"

    made = run(
        "backup.sh",
        str(dest),
        env={"DATABASE_URL": PG_URL, "BACKUP_GPG_RECIPIENT": str(public),
             "GNUPGHOME": str(backup_host)},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    [backup] = dest.iterdir()
    assert backup.name.startswith("sacco-") and backup.name.endswith(".dump.gpg")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    raw = backup.read_bytes()
    assert not raw.startswith(b"PGDMP")  # not a pg_dump file: an OpenPGP message
    assert b"Zawadi" not in raw and b"+254712000777" not in raw and b"members" not in raw

    restored = run(
        "restore.sh",
        str(backup),
        env={"DATABASE_URL": restore_url, "SACCO_ENV": "test", "GNUPGHOME": str(officers)},
    )
    assert restored.returncode == 0, restored.stderr
    assert "ledger OK" in restored.stdout
    check = psycopg2.connect(libpq(restore_url))
    with check, check.cursor() as cur:
        cur.execute("SELECT full_name FROM members WHERE msisdn = %s", ("+254712000777",))
        assert cur.fetchone() == ("Zawadi Backupova",)
        cur.execute(
            "SELECT balance_cents FROM accounts WHERE member_id = %s AND purpose = 'savings'",
            (member_id,),
        )
        assert cur.fetchone() == (432_109,)
    check.close()


def test_backup_refuses_to_run_without_a_recipient_and_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    made = run("backup.sh", str(dest), env={"DATABASE_URL": PG_URL})
    assert made.returncode != 0
    assert "BACKUP_GPG_RECIPIENT" in made.stderr
    assert not dest.exists() or list(dest.iterdir()) == []


def test_a_backup_without_the_private_key_does_not_restore(
    committed_pg: Engine, tmp_path: Path, keys: tuple[Path, Path], restore_url: str
) -> None:
    _, public = keys
    stranger = tmp_path / "stranger-gnupg"
    stranger.mkdir(mode=0o700)
    dest = tmp_path / "backups"
    env = {"DATABASE_URL": PG_URL, "BACKUP_GPG_RECIPIENT": str(public), "GNUPGHOME": str(stranger)}
    assert run("backup.sh", str(dest), env=env).returncode == 0
    [backup] = dest.iterdir()
    refused = run(
        "restore.sh",
        str(backup),
        env={"DATABASE_URL": restore_url, "SACCO_ENV": "test", "GNUPGHOME": str(stranger)},
    )
    assert refused.returncode != 0
    conn = psycopg2.connect(libpq(restore_url))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchone() == (0,)  # nothing restored
    conn.close()
