"""Issue 17's faults, injected for real: an RQ job lost between pop and start, a Redis
outage under a busy worker, a delivery report that proves a send the worker never recorded.

Real ``manage.py worker`` processes, real Redis, real PostgreSQL commits, the Africa's
Talking stand-in.
"""

from __future__ import annotations

import pytest
import redis as redis_lib
from rq import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_session_factory
from integrations.africastalking.standin import StandinHandle
from tests.outboxutil import gateway_messages, make_ctx
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


@pytest.fixture
def factory(committed_pg: Engine) -> sessionmaker[Session]:
    return make_session_factory(committed_pg)


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
