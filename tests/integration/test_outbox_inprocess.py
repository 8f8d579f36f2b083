"""The embedded demo's path: no Redis, SQLite, delivery in the process right after commit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from config import load_settings
from core.members import registration as members
from db.migrate import upgrade
from db.models import OutboxMessage
from integrations.africastalking.standin import StandinHandle
from runtime import Runtime, build_runtime
from tests.outboxutil import gateway_messages


@pytest.fixture
def demo_runtime(tmp_path: Path, standin: StandinHandle) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(url)
    settings = load_settings(
        sacco_env="demo",
        database_url=url,
        redis_url="",
        at_base_url=standin.url,
        outbox_sweep_interval_s=0.2,
        outbox_backoff_base_s=0.2,
    )
    runtime = build_runtime(settings)
    yield runtime
    assert runtime.outbox_dispatch is not None
    runtime.outbox_dispatch.close()
    runtime.engine.dispose()


def wait_until_sent(runtime: Runtime, member_id: int) -> OutboxMessage:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with runtime.unit_of_work() as s:
            message = s.scalars(
                select(OutboxMessage).where(OutboxMessage.member_id == member_id)
            ).one()
            if message.status == "sent":
                return message
        time.sleep(0.05)
    raise AssertionError("not sent")


def test_a_registration_sms_goes_out_in_process_after_commit(
    demo_runtime: Runtime, standin: StandinHandle
) -> None:
    with demo_runtime.unit_of_work() as s:
        member = members.register_member(
            s,
            demo_runtime.deps,
            full_name="Amina Wanjiru",
            msisdn="0712000901",
            national_id="23456901",
            consent=True,
        )
    message = wait_until_sent(demo_runtime, member.id)
    [received] = gateway_messages(standin.url, "+254712000901")
    assert received["id"] == message.provider_message_id and "Welcome" in received["message"]


def test_in_process_retries_after_a_gateway_failure(
    demo_runtime: Runtime, standin: StandinHandle
) -> None:
    standin.state.fail_next = 1
    with demo_runtime.unit_of_work() as s:
        member = members.register_member(
            s,
            demo_runtime.deps,
            full_name="Otieno Kamau",
            msisdn="0722000902",
            national_id="23456902",
            consent=True,
        )
    message = wait_until_sent(demo_runtime, member.id)
    assert message.attempts == 2
    assert len(gateway_messages(standin.url, "+254722000902")) == 1
