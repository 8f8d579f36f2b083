"""The audit log's hash chain: verified whole, any edit, deletion or truncation named,
concurrent appends serialised, ``manage.py verify-audit`` exits 1 on a break."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.permissions import Principal
from db.base import utcnow
from db.models import AuditEvent
from db.session import make_session_factory, unit_of_work
from tests.settings import PG_URL

ROOT = Path(__file__).resolve().parents[2]
TELLER = Principal(kind="staff", id=7, name="teller7", role="teller", branch="Nairobi",
                   address="10.0.0.7", request_id="req-1")  # fmt: skip


def _append(session: Session, n: int) -> list[int]:
    ids = []
    for i in range(n):
        row = audit.record(
            session, TELLER, "member.cash_deposit", target_type="member", target_id=i,
            before={"balance_cents": i}, after={"balance_cents": i + 100, "note": "ü ✓"},
            now=utcnow(),
        )  # fmt: skip
        ids.append(row.id)
    session.commit()
    return ids


def test_an_untouched_chain_verifies(db_session: Session) -> None:
    _append(db_session, 5)
    report = audit.verify_chain(db_session)
    assert report.ok
    assert report.checked >= 5


def test_an_edited_row_is_named(db_session: Session) -> None:
    ids = _append(db_session, 5)
    db_session.execute(
        update(AuditEvent).where(AuditEvent.id == ids[2]).values(after='{"balance_cents":999999}')
    )
    report = audit.verify_chain(db_session)
    assert report.first_broken_id == ids[2]
    assert "contents" in report.problem


def test_a_rehashed_edit_breaks_the_next_row(db_session: Session) -> None:
    """An attacker who recomputes the edited row's own hash still breaks the link after it."""
    ids = _append(db_session, 4)
    row = db_session.get_one(AuditEvent, ids[1])
    row.actor_name = "someone-else"
    row.hash = audit._hash_of(row, row.prev_hash)
    db_session.flush()
    assert audit.verify_chain(db_session).first_broken_id == ids[2]


def test_a_deleted_row_and_a_cut_tail_are_detected(db_session: Session) -> None:
    ids = _append(db_session, 5)
    db_session.execute(delete(AuditEvent).where(AuditEvent.id == ids[-1]))
    report = audit.verify_chain(db_session)
    assert report.first_broken_id is None
    assert "missing" in report.problem
    db_session.execute(delete(AuditEvent).where(AuditEvent.id == ids[1]))
    assert audit.verify_chain(db_session).first_broken_id == ids[2]


def test_concurrent_appends_keep_one_chain(committed_pg: Engine) -> None:
    factory = make_session_factory(committed_pg)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with unit_of_work(factory) as s:
                for _ in range(20):
                    _append(s, 1)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with unit_of_work(factory) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 80
        report = audit.verify_chain(s)
    assert report.ok, report


def _verify_cli() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SACCO_ENV": "test", "DATABASE_URL": PG_URL, "REDIS_URL": ""}
    return subprocess.run(
        [sys.executable, "manage.py", "verify-audit"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_verify_audit_command_names_the_first_broken_row(committed_pg: Engine) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        ids = _append(s, 3)
    ok = _verify_cli()
    assert ok.returncode == 0, ok.stderr
    assert "audit chain OK: 3 rows" in ok.stdout
    with committed_pg.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET address = '6.6.6.6' WHERE id = :id"), {"id": ids[1]}
        )
    broken = _verify_cli()
    assert broken.returncode == 1
    assert f"AUDIT CHAIN BROKEN at row {ids[1]}" in broken.stderr
