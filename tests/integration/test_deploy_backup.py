"""deploy/backup.sh and deploy/restore.sh round trip on the real PostgreSQL with a real gpg:
the backup is encrypted to a public key (the backup host holds nothing else), written
0600 in a 0700 directory, carries no readable data, is verified by restoring the dump into a
scratch database (a dump whose books do not balance is not kept), and restores with the
private key, run exactly as docs/operators/backups.md writes it (``--env-file`` with a
production settings file), into an empty database whose books verify-ledger and
verify-audit prove; a database that is not empty is refused. deploy/pitr/prune.sh keeps
what the oldest kept base backup needs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from config import DEMO_SECRETS
from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.savings import accounts as savings
from tests.settings import PG_ADMIN_DSN, PG_DBNAME, PG_URL, REDIS_URL
from tests.ussdutil import make_member

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("gpg", "pg_dump", "pg_restore")),
    reason="gpg, pg_dump and pg_restore are needed",
)
RESTORE_DB = f"{PG_DBNAME}_restore"
SCRATCH_DB = f"{PG_DBNAME}_scratch"


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


@pytest.fixture(scope="module")
def scratch_url() -> str:
    """The scratch database backup.sh restores each dump into to check it. backup.sh wipes
    it itself, so it is made once and kept like the test database (DROP DATABASE costs a
    checkpoint)."""
    conn = psycopg2.connect(PG_ADMIN_DSN)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (SCRATCH_DB,))
        exists = cur.fetchone() is not None
    conn.close()
    if not exists:
        admin(f'CREATE DATABASE "{SCRATCH_DB}" TEMPLATE template0')
    return make_url(PG_URL).set(database=SCRATCH_DB).render_as_string(hide_password=False)


@pytest.fixture
def production_env(tmp_path: Path) -> Path:
    """/etc/sacco/env as the install guide has it: production, every secret set. Its
    DATABASE_URL is the live database; the commands below override it on the command line."""
    path = tmp_path / "env"
    lines = {name.upper(): "p" * 40 for name in DEMO_SECRETS}
    lines["PII_KEYS"] = Fernet.generate_key().decode()
    lines.update(SACCO_ENV="production", DATABASE_URL=PG_URL, REDIS_URL=REDIS_URL,
                 USSD_CALLBACK_TOKEN="Zq8" * 11, SMS_CALLBACK_TOKEN="Zs8" * 11,
                 TRUSTED_PROXY_HOPS="1")  # fmt: skip
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    path.chmod(0o600)
    return path


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_HOMES: list[Path] = []


def gnupg_home(name: str) -> Path:
    """A GnuPG home under /tmp with a short path: gpg-agent makes its sockets in the home,
    and a socket's path may not pass 107 characters; pytest's ``tmp_path`` under xdist
    comes within a few characters of that, and goes over once pytest's run counter has
    three digits (``gpg: failed to start agent``)."""
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    path.chmod(0o700)
    _HOMES.append(path)
    return path


@pytest.fixture(autouse=True)
def _gnupg_homes_removed() -> Iterator[None]:
    yield
    while _HOMES:
        path = _HOMES.pop()
        subprocess.run(["gpgconf", "--homedir", str(path), "--kill", "all"], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """gpg on ``home``; once more after restarting its agent when the first try fails (seen
    once under a loaded suite: the agent gpg starts on demand did not answer in time),
    then a failure that shows what gpg said."""
    command = ["gpg", "--homedir", str(home), "--batch", "--quiet", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)}: exit {done.returncode}: {done.stderr}"
    return done


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """(the officers' keyring with the private key, the exported public key file)."""
    home = gnupg_home("officers")
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
    scratch_url: str,
    production_env: Path,
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
    documents = tmp_path / "documents"  # DOCUMENT_DIR
    documents.mkdir()
    (documents / "id-1.enc").write_bytes(b"scan of an ID")
    backup_host = gnupg_home("backup-host")  # holds no key at all
    dest = tmp_path / "backups"

    made = run(
        "backup.sh",
        str(dest),
        env={"DATABASE_URL": PG_URL, "BACKUP_GPG_RECIPIENT": str(public),
             "GNUPGHOME": str(backup_host), "BACKUP_VERIFY_DATABASE_URL": scratch_url,
             "SACCO_ENV_FILE": str(production_env),
             "BACKUP_FILES": f"{documents} {production_env}"},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "ledger OK" in made.stdout and "audit chain OK" in made.stdout
    assert "verify-ledger and verify-audit passed" in made.stdout
    wiped = psycopg2.connect(libpq(scratch_url))
    with wiped, wiped.cursor() as cur:  # no second copy of the members' data left behind
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchone() == (0,)
    wiped.close()
    # The KYC documents and the settings (the keys) go with the dump, encrypted the same way.
    [files] = dest.glob("files-*.tar.gpg")
    assert stat.S_IMODE(files.stat().st_mode) == 0o600
    assert b"PII_KEYS" not in files.read_bytes() and b"scan of an ID" not in files.read_bytes()
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    clear = gpg(officers, "--decrypt", "--output", str(tmp_path / "files.tar"), str(files))
    assert clear.returncode == 0
    subprocess.run(["tar", "-xf", str(tmp_path / "files.tar"), "-C", str(unpacked)], check=True)
    assert (unpacked / str(documents / "id-1.enc").lstrip("/")).read_bytes() == b"scan of an ID"
    assert "PII_KEYS=" in (unpacked / str(production_env).lstrip("/")).read_text()
    [backup] = dest.glob("sacco-*.dump.gpg")
    assert backup.name.startswith("sacco-") and backup.name.endswith(".dump.gpg")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    raw = backup.read_bytes()
    assert not raw.startswith(b"PGDMP")  # not a pg_dump file: an OpenPGP message
    assert b"Zawadi" not in raw and b"+254712000777" not in raw and b"members" not in raw

    # As docs/operators/backups.md writes it: the target on the command line, the live
    # settings file for the checks.
    as_documented = ("--env-file", str(production_env), str(backup))
    restored = run("restore.sh", *as_documented,
                   env={"DATABASE_URL": restore_url, "GNUPGHOME": str(officers)})  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "ledger OK" in restored.stdout and "audit chain OK" in restored.stdout
    again = run("restore.sh", *as_documented,
                env={"DATABASE_URL": restore_url, "GNUPGHOME": str(officers)})  # fmt: skip
    assert again.returncode == 3, again.stderr
    assert "the target database is not empty" in again.stderr
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
    stranger = gnupg_home("stranger")
    dest = tmp_path / "backups"
    env = {"DATABASE_URL": PG_URL, "BACKUP_GPG_RECIPIENT": str(public), "GNUPGHOME": str(stranger)}
    made = run("backup.sh", str(dest), env=env)
    assert made.returncode == 0
    assert "NOT verified" in made.stdout  # it says what it did not do
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


def test_a_dump_whose_books_do_not_balance_is_not_kept(
    committed_pg: Engine, deps: CoreDeps, tmp_path: Path, keys: tuple[Path, Path],
    scratch_url: str, production_env: Path,
) -> None:  # fmt: skip
    with Session(committed_pg) as session:
        make_member(session, deps, name="Baraka Hesabu", msisdn="+254712000778")
        session.commit()
    conn = psycopg2.connect(libpq(PG_URL))
    with conn, conn.cursor() as cur:  # a balance edited behind the ledger's back
        cur.execute("UPDATE accounts SET balance_cents = balance_cents + 1 "
                    "WHERE id = (SELECT min(id) FROM accounts)")  # fmt: skip
    conn.close()
    dest = tmp_path / "backups"
    made = run(
        "backup.sh",
        str(dest),
        env={"DATABASE_URL": PG_URL, "BACKUP_GPG_RECIPIENT": str(keys[1]),
             "GNUPGHOME": str(gnupg_home("backup-host")), "BACKUP_VERIFY_DATABASE_URL": scratch_url,
             "SACCO_ENV_FILE": str(production_env)},
    )  # fmt: skip
    assert made.returncode == 1
    assert "backup NOT kept: verify-ledger failed" in made.stderr
    assert list(dest.iterdir()) == []


def test_pitr_retention_keeps_what_the_oldest_kept_base_backup_needs(tmp_path: Path) -> None:
    base, wal = tmp_path / "base", tmp_path / "wal"
    base.mkdir()
    wal.mkdir()
    old, kept, new = "20200101T000000Z", "29991231T000000Z", "29991231T120000Z"
    for stamp, start in ((old, "000000010000000000000003"), (kept, "000000010000000000000007"),
                         (new, "00000002000000000000000A")):  # fmt: skip
        (base / f"base-{stamp}.tar.gpg").write_bytes(b"x")
        (base / f"base-{stamp}.start-wal").write_text(start + "\n")
    names = [f"0000000{tli}00000000000000{seg:02X}{ext}" for tli, seg in
             ((1, 3), (1, 6), (1, 7), (1, 8), (2, 10)) for ext in (".gpg", ".sha256")]  # fmt: skip
    names += ["000000010000000000000007.00000028.backup.gpg", "00000002.history.gpg"]
    for name in names:
        (wal / name).write_bytes(b"x")
    done = run("pitr/prune.sh", str(base), str(wal), "30", env={})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in base.iterdir()) == sorted(
        f"base-{s}{e}" for s in (kept, new) for e in (".tar.gpg", ".start-wal")
    )
    assert sorted(p.name for p in wal.iterdir()) == sorted(
        n
        for n in names
        if not n.startswith(("000000010000000000000003", "000000010000000000000006"))
    )
    # The newest base backup is kept however old it is: pruning never leaves nothing.
    for stamp in (kept, new):
        (base / f"base-{stamp}.tar.gpg").rename(
            base / f"base-2020010{2 if stamp == kept else 3}T000000Z.tar.gpg"
        )
        (base / f"base-{stamp}.start-wal").rename(
            base / f"base-2020010{2 if stamp == kept else 3}T000000Z.start-wal"
        )
    assert run("pitr/prune.sh", str(base), str(wal), "30", env={}).returncode == 0
    assert sorted(p.name for p in base.glob("*.tar.gpg")) == ["base-20200103T000000Z.tar.gpg"]
    assert run("pitr/prune.sh", str(base), str(wal), "thirty", env={}).returncode == 2


def test_wal_archiving_encrypts_accepts_a_repeat_and_never_overwrites(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    officers, public = keys
    host = gnupg_home("db-host")  # the database server holds no private key
    archive, segment = tmp_path / "wal", tmp_path / "000000010000000000000005"
    segment.write_bytes(b"Zawadi +254712000777 " * 1000)
    args = (str(archive), str(public), str(segment), segment.name)
    first = run("pitr/archive-wal.sh", *args, env={"GNUPGHOME": str(host)})
    assert first.returncode == 0, first.stderr
    stored = archive / f"{segment.name}.gpg"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and b"Zawadi" not in stored.read_bytes()
    # PostgreSQL crashed before noting the success and archives the same segment again.
    assert run("pitr/archive-wal.sh", *args, env={"GNUPGHOME": str(host)}).returncode == 0
    before = stored.read_bytes()
    segment.write_bytes(b"something else")
    clash = run("pitr/archive-wal.sh", *args, env={"GNUPGHOME": str(host)})
    assert clash.returncode == 1 and "refusing to overwrite" in clash.stderr
    assert stored.read_bytes() == before
    # restore_command: the officers' key gives the segment back; a missing one is "no more".
    target = tmp_path / "RECOVERYXLOG"
    back = run("pitr/restore-wal.sh", str(archive), segment.name, str(target),
               env={"GNUPGHOME": str(officers)})  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert target.read_bytes() == b"Zawadi +254712000777 " * 1000
    missing = run("pitr/restore-wal.sh", str(archive), "000000010000000000000006", str(target),
                  env={"GNUPGHOME": str(officers)})  # fmt: skip
    assert missing.returncode == 1 and missing.stderr == ""
