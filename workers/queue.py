"""Enqueueing outbox jobs on RQ, at most once per message per ``requeue_after_s``.

A Redis key ``outbox:queued:<id>`` (SET NX with expiry) marks a message as
enqueued, so the sweeper, running every few seconds, does not pile up duplicate
jobs for a message waiting in a long queue. Duplicate jobs would be harmless
anyway: the claim lets only one of them send.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rq import Queue

from observability.logs import job_meta

JOB = "workers.outbox.deliver_message"
MARK = "outbox:queued:{}"


def enqueue_messages(
    redis: Any,
    ids: Iterable[int],
    *,
    queue_name: str = "outbox",
    requeue_after_s: float = 300.0,
    force: bool = False,
) -> list[int]:
    """Enqueue ``deliver_message`` for each id not enqueued recently; returns those enqueued.

    Raises redis errors: the caller decides (the after-commit hook logs and moves on,
    the sweeper retries next round).
    """
    queue = Queue(queue_name, connection=redis)
    ttl = max(1, int(requeue_after_s))
    enqueued = []
    for message_id in ids:
        key = MARK.format(message_id)
        if force:
            redis.set(key, 1, ex=ttl)
        elif not redis.set(key, 1, ex=ttl, nx=True):
            continue
        queue.enqueue(
            JOB,
            message_id,
            job_id=None,
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
