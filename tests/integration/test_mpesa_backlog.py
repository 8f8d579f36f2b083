"""The M-Pesa backlog (issue 17): callbacks acknowledged but not applied, STK pushes and
payouts without an outcome, counted with the age of the oldest; ``manage.py backlog``
prints it and exits 1 when something waited too long."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.backlog import mpesa_backlog
from db.base import utcnow
from db.session import make_session_factory, unit_of_work
from tests.integration.test_mpesa_payouts import T0, withdrawal
from tests.workerprocs import run_manage


def callback(session: Session, deps: CoreDeps, status: str) -> int:
    callback_id = mpesa.store_callback(
        session, deps, kind="c2b_confirmation", headers={}, body=b"{}"
    )
    if status != "received":
        mpesa.mark_callback(session, deps, callback_id, status=status, detail="test")
    return callback_id


def test_the_backlog_counts_what_waits_and_the_age_of_the_oldest(
    db_session: Session, deps: CoreDeps
) -> None:
    then = replace(deps, now=lambda: T0)
    later = replace(deps, now=lambda: T0 + timedelta(minutes=4))
    callback(db_session, then, "received")  # acknowledged, the database cut mid-apply
    callback(db_session, later, "received")
    callback(db_session, later, "error")
    callback(db_session, then, "processed")  # done: not backlog
    withdrawal(db_session, then)  # a payout requested, never sent
    lines = {line.name: line for line in mpesa_backlog(db_session, T0 + timedelta(minutes=10))}
    assert (lines["callbacks.received"].count, lines["callbacks.received"].oldest_age_s) == (2, 600)
    assert (lines["callbacks.error"].count, lines["callbacks.error"].oldest_age_s) == (1, 360)
    assert (lines["payouts.requested"].count, lines["payouts.requested"].oldest_age_s) == (1, 600)
    # every waiting state is a line, zeros included: a gauge must not vanish
    assert (lines["payouts.review"].count, lines["payouts.review"].oldest_age_s) == (0, None)
    assert {name.split(".")[0] for name in lines} == {"callbacks", "stk", "payouts"}
    assert "callbacks.processed" not in lines


def run_backlog(*args: str) -> subprocess.CompletedProcess[str]:
    return run_manage("backlog", *args)


def test_manage_py_backlog_prints_each_line_and_exits_1_past_the_alert_age(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    clean = run_backlog("--alert-after-minutes", "5")
    assert clean.returncode == 0, clean.stderr
    assert "callbacks.received         0  oldest -" in clean.stdout
    with unit_of_work(make_session_factory(committed_pg)) as s:
        callback(s, replace(deps, now=lambda: utcnow() - timedelta(minutes=10)), "error")
    late = run_backlog("--alert-after-minutes", "5")
    assert late.returncode == 1
    assert "callbacks.error            1  oldest 10." in late.stdout
    assert "waiting longer than 5.0 min: callbacks.error" in late.stderr
    assert run_backlog().returncode == 0  # no threshold: a report only
