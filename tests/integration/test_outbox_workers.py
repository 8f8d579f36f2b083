"""Real RQ worker processes (``manage.py worker``), real Redis, real commits.

A worker SIGKILLed in the middle of a send, the sweeper and another worker
finishing the job; the duplicate window being exactly "accepted by the gateway,
not yet recorded"; backoff and the attempt limit through the scheduler process.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis as redis_lib
from sqlalchemy.orm import Session, sessionmaker

from core.messaging.outbox import OutboxPolicy, claim_message
from db.base import utcnow
from db.models import OutboxMessage
from db.session import unit_of_work
from integrations.africastalking.standin import StandinHandle
from tests.outboxutil import control, gateway_messages, make_ctx
from tests.workerprocs import QUEUE, Processes, phones, queue_messages, statuses, wait_for
from workers.queue import enqueue_messages
from workers.sweeper import rq_enqueuer, sweep_once

pytestmark = pytest.mark.slow


def test_a_worker_killed_mid_send_loses_nothing_and_duplicates_only_the_accepted_message(
    factory: sessionmaker[Session],
    procs: Processes,
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
) -> None:
    numbers = phones(6)
    ids = queue_messages(factory, numbers[:1])
    control(standin.url, hang_next=1, hang_seconds=4)  # hold the first send at the gateway
    first = procs.worker()
    enqueue_messages(redis_client, ids, queue_name=QUEUE)
    wait_for(lambda: statuses(factory, ids)[ids[0]] == "sending", "the first send in flight")
    wait_for(lambda: standin.state.hang_next == 0, "the gateway holding the request")
    first.send_signal(signal.SIGKILL)  # the worker dies mid-send
    first.wait()
    # the business goes on: more messages, and another worker
    more = queue_messages(factory, numbers[1:])
    enqueue_messages(redis_client, more, queue_name=QUEUE)
    procs.worker()
    procs.worker()
    wait_for(
        lambda: all(st == "sent" for i, st in statuses(factory, more).items()), "the others sent"
    )
    assert statuses(factory, ids) == {ids[0]: "sending"}  # still the dead worker's
    # the sweeper, once the claim is older than its timeout, hands it to a live worker
    # Real time, not a fake clock: the sweeper hands the message back due "now" and the
    # worker processes read the real clock, so the claim must really age past the timeout.
    ctx = make_ctx(factory, standin.url, policy=OutboxPolicy(claim_timeout_s=0.5))
    time.sleep(0.6)
    result = sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 60))
    assert result.reclaimed == ids
    wait_for(lambda: statuses(factory, ids)[ids[0]] == "sent", "the reclaimed message sent")
    # the held request completes at the gateway: it had been accepted, never recorded
    wait_for(lambda: len(gateway_messages(standin.url)) == len(numbers) + 1, "held request")
    counts = {n: len(gateway_messages(standin.url, n)) for n in numbers}
    assert counts == {numbers[0]: 2, **dict.fromkeys(numbers[1:], 1)}
    # and nothing else happens however often the sweeper runs
    for _ in range(3):
        assert sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 60)).due == []
    assert len(gateway_messages(standin.url)) == len(numbers) + 1


def test_a_worker_that_died_before_reaching_the_gateway_causes_no_duplicate(
    factory: sessionmaker[Session],
    procs: Processes,
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
) -> None:
    numbers = phones(3, start=400)
    ids = queue_messages(factory, numbers)
    with unit_of_work(factory) as s:  # a worker claims one, then dies before sending
        assert claim_message(s, ids[0], utcnow()) is not None
    procs.worker()
    enqueue_messages(redis_client, ids, queue_name=QUEUE)
    wait_for(lambda: statuses(factory, ids[1:]) == dict.fromkeys(ids[1:], "sent"), "others")
    ctx = make_ctx(factory, standin.url, policy=OutboxPolicy(claim_timeout_s=0.2))
    time.sleep(0.3)
    assert sweep_once(ctx, rq_enqueuer(redis_client, QUEUE, 60)).reclaimed == [ids[0]]
    wait_for(lambda: statuses(factory, ids) == dict.fromkeys(ids, "sent"), "all sent")
    assert sorted(m["to"] for m in gateway_messages(standin.url)) == sorted(numbers)


def test_gateway_errors_back_off_through_the_scheduler_then_send_or_fail_at_the_limit(
    factory: sessionmaker[Session],
    procs: Processes,
    standin: StandinHandle,
    redis_client: redis_lib.Redis,
) -> None:
    flaky, broken = phones(2, start=500)
    control(standin.url, number=broken, status_code=500)  # InternalServerError, retryable
    control(standin.url, fail_next=2)  # HTTP 500 for the next two requests
    fast = {"OUTBOX_BACKOFF_BASE_S": "0.2", "OUTBOX_MAX_ATTEMPTS": "3"}
    procs.worker(**fast)
    procs.start("scheduler", "--interval", "0.2", **fast)
    ids = queue_messages(factory, [flaky])
    enqueue_messages(redis_client, ids, queue_name=QUEUE)
    wait_for(lambda: statuses(factory, ids)[ids[0]] == "sent", "sent after backoff")
    broken_ids = queue_messages(factory, [broken])
    enqueue_messages(redis_client, broken_ids, queue_name=QUEUE)
    wait_for(lambda: statuses(factory, broken_ids)[broken_ids[0]] == "failed", "failed")
    with unit_of_work(factory) as s:
        sent = s.get_one(OutboxMessage, ids[0])
        failed = s.get_one(OutboxMessage, broken_ids[0])
    assert sent.attempts == 3 and failed.attempts == 3
    assert "InternalServerError" in (failed.last_error or "")
    assert len(gateway_messages(standin.url, flaky)) == 1
    assert gateway_messages(standin.url, broken) == []
