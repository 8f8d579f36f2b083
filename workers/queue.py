"""Enqueueing outbox jobs on RQ, at most once per message per ``requeue_after_s``, and
again at once when that job is lost.

A Redis key ``outbox:queued:<id>`` (SET NX with expiry) holds the id of the RQ job
enqueued for the message, so the sweeper, running every few seconds, does not pile up
duplicate jobs for a message waiting in a long queue. Duplicate jobs would be harmless
anyway: the claim lets only one of them send.

A job can be lost while its mark stands: a worker listening on two queues dequeues with
a plain ``LPOP`` and a worker killed between the pop and the start of the job takes the
job id with it (RQ's job hash still says ``queued``, but no queue lists it). So when the
mark is there the sweeper asks RQ whether its job is still on its way (``job_is_alive``)
and enqueues a new job when it is not: a lost job costs ``lost_after_s`` plus one sweep,
not the mark's five minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus

from observability.logs import job_meta

JOB = "workers.outbox.deliver_message"
MARK = "outbox:queued:{}"
# A job in one of these states is on its way (or a worker has it: a dead worker's
# message is the claim timeout's business, not the queue's).
_ON_ITS_WAY = frozenset({JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED})


def job_is_alive(redis: Any, queue: Queue, job_id: str) -> bool:
    """Whether RQ still holds job ``job_id`` for a worker to run (or running).

    ``queued`` is believed only while a queue lists the id (the queue itself, or the
    intermediate list a single-queue worker moves it to): a worker killed right after
    popping it leaves the status ``queued`` with the id nowhere. A job that finished,
    failed, was stopped or expired is not alive either.
    """
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status in _ON_ITS_WAY:
        return True
    if status != JobStatus.QUEUED:
        return False
    if redis.lpos(queue.key, job_id) is not None:
        return True
    return redis.lpos(IntermediateQueue.get_intermediate_queue_key(queue.key), job_id) is not None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _mark_age_s(redis: Any, key: str, ttl_s: int) -> float:
    """How long ago the mark was set, from its remaining time to live (Redis's clock)."""
    left_ms = redis.pttl(key)
    return ttl_s if left_ms is None or left_ms < 0 else ttl_s - left_ms / 1000


def enqueue_messages(
    redis: Any,
    ids: Iterable[int],
    *,
    queue_name: str = "outbox",
    requeue_after_s: float = 300.0,
    force: bool = False,
    lost_after_s: float | None = None,
) -> list[int]:
    """Enqueue ``deliver_message`` for each id not enqueued recently; returns those enqueued.

    ``lost_after_s`` (the sweeper's): a message whose mark is at least that old and whose
    job RQ no longer holds (``job_is_alive``) is enqueued again. None: the mark alone
    decides (the after-commit hand-off, whose ids are new).

    Raises redis errors: the caller decides (the after-commit hook logs and moves on,
    the sweeper retries next round).
    """
    queue = Queue(queue_name, connection=redis)
    ttl = max(1, int(requeue_after_s))
    enqueued = []
    for message_id in ids:
        key = MARK.format(message_id)
        job_id = uuid.uuid4().hex
        if force:
            redis.set(key, job_id, ex=ttl)
        elif not redis.set(key, job_id, ex=ttl, nx=True):
            if lost_after_s is None or _mark_age_s(redis, key, ttl) < lost_after_s:
                continue
            previous = redis.get(key)
            if previous is None or job_is_alive(redis, queue, _text(previous)):
                continue
            redis.set(key, job_id, ex=ttl)
        queue.enqueue(
            JOB,
            message_id,
            job_id=job_id,
            result_ttl=60,
            failure_ttl=86400,
            job_timeout=600,
            meta=job_meta(),  # the request id, for the worker's log lines
        )
        enqueued.append(message_id)
    return enqueued


def forget(redis: Any, message_id: int) -> None:
    """Called when a job starts, so a later retry of the same message can be enqueued."""
    redis.delete(MARK.format(message_id))
