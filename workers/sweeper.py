"""The sweeper: recover messages from dead workers and lost enqueues, retry due ones.

``sweep_once`` runs ``core.messaging.outbox.sweep`` and hands the due ids to an enqueue
function (RQ in production, the in-process executor in the demo).
``run_forever`` is what ``python manage.py scheduler`` runs: a plain loop, one
process, every ``OUTBOX_SWEEP_INTERVAL_S`` seconds (see docs/channels/sms.md for why
not rq-scheduler).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from core.messaging.outbox import SweepResult, sweep
from db.session import unit_of_work
from workers.context import DeliveryContext
from workers.queue import enqueue_messages

log = logging.getLogger(__name__)


def sweep_once(ctx: DeliveryContext, enqueue: Callable[[list[int], list[int]], Any]) -> SweepResult:
    """One sweep; ``enqueue(due_ids, reclaimed_ids)`` (reclaimed ones must bypass dedup)."""
    with unit_of_work(ctx.session_factory) as session:
        result = sweep(session, ctx.policy, ctx.now())
    if result.due:
        enqueue(result.due, result.reclaimed)
    return result


def rq_enqueuer(
    redis: Any, queue_name: str, requeue_after_s: float, lost_after_s: float = 10.0
) -> Callable[[list[int], list[int]], list[int]]:
    """Enqueue due messages on RQ: reclaimed ones at once, the others unless enqueued
    recently and their job is still held by RQ (``workers.queue.job_is_alive``; a job
    lost by a killed worker is replaced once its mark is ``lost_after_s`` old)."""

    def enqueue(due: list[int], reclaimed: list[int]) -> list[int]:
        forced = set(reclaimed)
        done = enqueue_messages(
            redis,
            [i for i in due if i in forced],
            queue_name=queue_name,
            requeue_after_s=requeue_after_s,
            force=True,
        )
        done += enqueue_messages(
            redis,
            [i for i in due if i not in forced],
            queue_name=queue_name,
            requeue_after_s=requeue_after_s,
            lost_after_s=lost_after_s,
        )
        return done

    return enqueue


def run_forever(
    ctx: DeliveryContext,
    enqueue: Callable[[list[int], list[int]], Any],
    interval_s: float,
    stop: threading.Event | None = None,
) -> None:
    """Sweep every ``interval_s`` until ``stop`` is set; an error is logged, never fatal
    (Redis or the database down: try again next round)."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            result = sweep_once(ctx, enqueue)
            if result.reclaimed or result.given_up or result.reports_applied:
                log.info("sweep: %s", result)
        except Exception:
            log.exception("sweep failed; retrying in %s s", interval_s)
        stop.wait(interval_s)
