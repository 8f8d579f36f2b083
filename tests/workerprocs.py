"""Real ``manage.py`` worker and scheduler processes for outbox tests (the ``procs``
fixture, tests/integration/conftest.py), and the polling helpers those tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.messaging.notifications import notify, take_pending_ids
from db.base import utcnow
from db.models import OutboxMessage
from db.session import unit_of_work
from tests.settings import PG_URL, REDIS_URL

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "outbox-proc-test"
WAIT_S = 60  # generous upper bound for polling; never asserted as a duration


class Processes:
    def __init__(self, tmp: Path, standin_url: str) -> None:
        self.tmp, self.standin_url = tmp, standin_url
        self.running: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(
            SACCO_ENV="test",
            DATABASE_URL=PG_URL,
            REDIS_URL=REDIS_URL,
            AT_BASE_URL=self.standin_url,
            AT_SMS_TIMEOUT_S="30",
            OUTBOX_QUEUE=QUEUE,
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)  # may override the above (REDIS_URL through a proxy)
        return env

    def start(self, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{args[0]}-{uuid.uuid4().hex[:6]}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.running.append(proc)
        return proc

    def worker(self, **extra: str) -> subprocess.Popen[bytes]:
        return self.start("worker", "--name", f"test-{uuid.uuid4().hex[:8]}", **extra)

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_manage(
    *args: str, drop: tuple[str, ...] = ("DATABASE_", "REDIS_"), **env: str
) -> subprocess.CompletedProcess[str]:
    """``manage.py ARGS`` as a process on the test database, its output captured. ``drop``:
    prefixes of this process's variables the child must not inherit; ``env``: added."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    child.update(SACCO_ENV="test", DATABASE_URL=PG_URL, PYTHONPATH=str(ROOT))
    child.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.05)


def queue_messages(factory: sessionmaker[Session], phones: list[str]) -> list[int]:
    with unit_of_work(factory) as s:
        for phone in phones:
            notify(
                s,
                template="sms_start_ok",
                business_key=f"proc:{phone}",
                now=utcnow(),
                data={"sacco": "Umoja SACCO"},
                msisdn=phone,
            )
        ids = take_pending_ids(s)
        s.commit()
    return ids


def statuses(factory: sessionmaker[Session], ids: list[int]) -> dict[int, str]:
    with unit_of_work(factory) as s:
        rows = s.execute(
            select(OutboxMessage.id, OutboxMessage.status).where(OutboxMessage.id.in_(ids))
        ).all()
    return {int(i): str(st) for i, st in rows}


def phones(n: int, start: int = 300) -> list[str]:
    return [f"+2547120{start + i:05d}" for i in range(n)]
