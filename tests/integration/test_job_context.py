"""In-process jobs run with the context of the app that queued them, never a process-wide one:
two apps in one process (tests, the demo beside a command) each send their own STK pushes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from app_factory import create_app
from config import load_settings
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from db.migrate import upgrade
from db.models_mpesa import StkRequest
from integrations.mpesa.standin import StandinHandle
from integrations.mpesa.standin import start_standin as start_daraja
from runtime import Runtime


@pytest.fixture
def daraja() -> Iterator[StandinHandle]:
    with start_daraja(port=0, delay=0) as handle:
        requests.post(f"{handle.url}/_control", json={"never": True}, timeout=5)
        yield handle


def demo_app(tmp_path: Path, name: str, daraja: StandinHandle) -> Flask:
    url = f"sqlite:///{tmp_path / name}.db"
    upgrade(url)
    return create_app(
        load_settings(
            sacco_env="demo",
            database_url=url,
            mpesa_base_url=daraja.url,
            mpesa_callback_base_url="http://127.0.0.1:9",
        )
    )


def queue_push(app: Flask, phone: str) -> int:
    ctx = app.extensions["mpesa"]
    runtime = ctx.runtime
    with runtime.unit_of_work() as s:
        m = members.register_member(
            s, runtime.deps, full_name="Grace Akinyi", msisdn=phone, national_id=phone[-8:],
            consent=True,
        )  # fmt: skip
        members.set_status(s, m.id, "active")
        started = mpesa.start_deposit(
            s, runtime.deps, member_id=m.id, target="savings", amount_cents=50_000,
            policy=ctx.policy, idempotency_key=f"push-{phone}",
        )  # fmt: skip
    ctx.jobs.enqueue("workers.mpesa.send_stk_push", started.request_id)
    ctx.jobs.drain()
    return started.request_id


def status(app: Flask, request_id: int) -> str:
    runtime: Runtime = app.extensions["sacco"]
    with runtime.unit_of_work() as s:
        row = s.get(StkRequest, request_id)
        assert row is not None
        return row.status


def test_each_app_sends_its_own_push_whichever_was_built_last(
    tmp_path: Path, daraja: StandinHandle
) -> None:
    first = demo_app(tmp_path, "first", daraja)
    second = demo_app(tmp_path, "second", daraja)  # built after: it must not take over
    try:
        pushed = queue_push(first, "+254712000901")
        assert status(first, pushed) == "pending"  # sent to Daraja, awaiting the member
        other = queue_push(second, "+254712000902")
        assert status(second, other) == "pending"
    finally:
        for app in (first, second):
            app.extensions["mpesa"].jobs.close()
            app.extensions["mpesa"].close()
            app.extensions["sacco"].engine.dispose()
