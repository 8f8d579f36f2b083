"""Issue 17's faults, injected for real: an RQ job lost between pop and start, a Redis
outage under a busy worker, a delivery report that proves a send the worker never recorded.

Real ``manage.py worker`` processes, real Redis, real PostgreSQL commits, the Africa's
Talking stand-in.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from rq import Queue
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from app_factory import create_app
from config import Settings
from core.kernel.deps import CoreDeps
from core.messaging.outbox import OutboxPolicy
from db.models import SmsDeliveryReport
from db.session import make_session_factory, unit_of_work
from integrations.africastalking.standin import StandinHandle, start_standin
from runtime import Runtime
from tests.outboxutil import control, gateway_messages, make_ctx
from tests.settings import REDIS_URL
from tests.tcpproxy import TcpProxy
from tests.workerprocs import (
    QUEUE,
    Processes,
    phones,
    queue_messages,
    statuses,
    wait_for,
)
from workers.queue import MARK, enqueue_messages
from workers.sweeper import rq_enqueuer, sweep_once

pytestmark = pytest.mark.slow


def test_a_job_lost_between_pop_and_start_is_enqueued_again_by_the_next_sweep(
    factory: sessionmaker[Session],
    procs: Processes,
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
) -> None:
    lost_phone, waiting_phone = phones(2, start=600)
    lost, waiting = queue_messages(factory, [lost_phone, waiting_phone])
    queue = Queue(QUEUE, connection=redis_client)
    assert enqueue_messages(redis_client, [lost, waiting], queue_name=QUEUE) == [lost, waiting]
    # exactly what a worker killed between RQ's LPOP and the job's start leaves behind:
    # the id gone from the queue, the job hash still "queued", our mark still standing
    popped = redis_client.lpop(queue.key)
    assert popped is not None and redis_client.get(MARK.format(lost)) == popped
    assert queue.job_ids == [redis_client.get(MARK.format(waiting)).decode()]  # type: ignore[union-attr]
    ctx = make_ctx(factory, standin.url)
    # within the grace period nothing moves (a live worker is between pop and start)
    result = sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 300, lost_after_s=60))
    assert sorted(result.due) == sorted([lost, waiting]) and queue.count == 1
    # past it: the lost one is enqueued again, the one still waiting in the queue is not
    result = sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 300, lost_after_s=0))
    assert queue.count == 2
    assert redis_client.get(MARK.format(lost)) != popped
    procs.worker()
    wait_for(lambda: statuses(factory, [lost, waiting]) == {lost: "sent", waiting: "sent"}, "sent")
    assert [len(gateway_messages(standin.url, p)) for p in (lost_phone, waiting_phone)] == [1, 1]
    # the finished jobs' marks are gone; nothing more is enqueued however often it sweeps
    for _ in range(2):
        assert sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 300, lost_after_s=0)).due == []


@pytest.fixture
def delivery_app(settings: Settings, deps: CoreDeps, committed_pg: Engine) -> Iterator[str]:
    """The app's ``/sms/delivery`` over HTTP on committed PostgreSQL; yields its URL."""
    runtime = Runtime(committed_pg, make_session_factory(committed_pg), deps, None, "Umoja SACCO")
    server = make_server("127.0.0.1", 0, create_app(settings, runtime), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/sms/delivery"
    server.shutdown()
    thread.join()


def test_a_worker_killed_in_a_stalled_send_is_not_resent_when_its_report_arrived(
    factory: sessionmaker[Session],
    delivery_app: str,
    tmp_path: Path,
    redis_client: redis_lib.Redis,
) -> None:
    phone, other = phones(2, start=700)
    with start_standin(port=0, delivery_callback=delivery_app, delivery_delay=0.05) as standin:
        procs = Processes(tmp_path, standin.url)
        try:
            (message_id,) = queue_messages(factory, [phone])
            control(standin.url, hang_next=1, hang_seconds=2)  # the send stalls at the gateway
            worker = procs.worker()
            enqueue_messages(redis_client, [message_id], queue_name=QUEUE)
            wait_for(lambda: standin.state.hang_next == 0, "the gateway holding the send")
            worker.send_signal(signal.SIGKILL)  # the worker dies before the answer
            worker.wait()
            # the gateway takes the message and its delivery report reaches the app, which
            # stores it: an id no attempt of ours recorded
            wait_for(lambda: len(gateway_messages(standin.url, phone)) == 1, "sent once")
            wait_for(lambda: stored_reports(factory) == 1, "the report stored")
            assert statuses(factory, [message_id]) == {message_id: "sending"}
            procs.worker()  # a live worker, ready to send anything enqueued
            ctx = make_ctx(factory, standin.url, policy=OutboxPolicy(claim_timeout_s=0.5))
            time.sleep(0.6)  # the claim really ages: the worker processes read the real clock
            result = sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 60))
            assert result.adopted == [message_id] and result.reclaimed == []
            assert statuses(factory, [message_id]) == {message_id: "delivered"}
            # a later message to another phone goes through the live worker meanwhile
            (later,) = queue_messages(factory, [other])
            enqueue_messages(redis_client, [later], queue_name=QUEUE)
            wait_for(lambda: statuses(factory, [later])[later] in ("sent", "delivered"), "sent")
            wait_for(lambda: stored_reports(factory) == 2, "its report stored")
            # (its report may race the worker's record; the sweeper applies what is left)
            assert sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 60)).due == []
            assert statuses(factory, [message_id, later]) == dict.fromkeys(
                [message_id, later], "delivered"
            )
            assert len(gateway_messages(standin.url, phone)) == 1  # no duplicate
        finally:
            procs.stop_all()


def stored_reports(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as s:
        return int(s.scalar(select(func.count()).select_from(SmsDeliveryReport)) or 0)


def test_a_busy_worker_survives_a_redis_outage_and_takes_later_jobs(
    factory: sessionmaker[Session],
    procs: Processes,
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
) -> None:
    server = urlsplit(REDIS_URL)
    busy_phone, later_phone = phones(2, start=800)
    with TcpProxy(server.hostname or "127.0.0.1", server.port or 6379) as proxy:
        worker = procs.worker(REDIS_URL=f"redis://127.0.0.1:{proxy.port}{server.path}")
        (busy,) = queue_messages(factory, [busy_phone])
        control(standin.url, hang_next=1, hang_seconds=2)  # the worker is busy sending
        enqueue_messages(redis_client, [busy], queue_name=QUEUE)
        wait_for(lambda: standin.state.hang_next == 0, "the send in progress")
        proxy.cut()  # Redis "restarts" while the job runs and ends: every RQ call fails
        wait_for(lambda: statuses(factory, [busy]) == {busy: "sent"}, "the send recorded")
        time.sleep(2)  # RQ's end-of-job bookkeeping and its next dequeue meet a dead Redis
        proxy.start()
        assert worker.poll() is None, "the worker exited"
        (later,) = queue_messages(factory, [later_phone])
        enqueue_messages(redis_client, [later], queue_name=QUEUE)
        wait_for(lambda: statuses(factory, [later]) == {later: "sent"}, "a later job taken")
        assert worker.poll() is None
    assert [len(gateway_messages(standin.url, p)) for p in (busy_phone, later_phone)] == [1, 1]


def test_a_worker_killed_with_sigkill_starts_again_under_its_own_name(
    factory: sessionmaker[Session],
    procs: Processes,
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
) -> None:
    """systemd restarts ``sacco-worker@N`` with the same ``--name`` after a SIGKILL (the OOM
    killer, the fault test): the dead process's registration must not refuse it."""
    name = "test-killed-and-back"
    first = procs.start("worker", "--name", name)
    wait_for(lambda: redis_client.exists(f"rq:worker:{name}") == 1, "the first registration")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    second = procs.start("worker", "--name", name)
    (message,) = queue_messages(factory, phones(1, start=900))
    enqueue_messages(redis_client, [message], queue_name=QUEUE)
    wait_for(lambda: statuses(factory, [message]) == {message: "sent"}, "the message sent")
    assert second.poll() is None, "the restarted worker exited"
    assert redis_client.hget(f"rq:worker:{name}", "pid") == str(second.pid).encode()
