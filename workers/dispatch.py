"""After-commit dispatchers, chosen by the composition root.

* ``RqDispatcher``: Redis configured. Enqueue one RQ job per new message. If
  Redis is down the commit has happened anyway; the error is logged and the
  sweeper (``manage.py scheduler``) enqueues the rows later.
* ``InProcessDispatcher``: no Redis (the embedded demo). Deliver on a small
  thread pool in this process right after the commit, and sweep on a
  background thread for retries and anything left behind.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from workers.context import DeliveryContext
from workers.outbox import deliver
from workers.queue import enqueue_messages
from workers.sweeper import run_forever

log = logging.getLogger(__name__)


class RqDispatcher:
    def __init__(self, redis: Any, queue_name: str, requeue_after_s: float) -> None:
        self.redis, self.queue_name, self.requeue_after_s = redis, queue_name, requeue_after_s

    def close(self) -> None:
        """Nothing to stop: the jobs live in Redis."""

    def __call__(self, ids: list[int]) -> None:
        enqueue_messages(
            self.redis, ids, queue_name=self.queue_name, requeue_after_s=self.requeue_after_s
        )


class InProcessDispatcher:
    """Deliver in this process. Threads start on first use (after a gunicorn fork)."""

    def __init__(self, ctx: DeliveryContext, sweep_interval_s: float, workers: int = 2) -> None:
        self.ctx, self.sweep_interval_s, self.workers = ctx, sweep_interval_s, workers
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()
        self._queued: set[int] = set()

    def start(self) -> None:
        self._start()

    def _start(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="outbox")
                self._sweeper = threading.Thread(
                    target=run_forever,
                    args=(self.ctx, self._enqueue, self.sweep_interval_s, self._stop),
                    name="outbox-sweeper",
                    daemon=True,
                )
                self._sweeper.start()
            return self._pool

    def _run(self, message_id: int) -> None:
        with self._lock:
            self._queued.discard(message_id)
        try:
            deliver(self.ctx, message_id)
        except Exception:
            log.exception("in-process delivery of %s failed; the sweeper will retry", message_id)

    def _enqueue(self, ids: list[int], _reclaimed: list[int] | None = None) -> None:
        pool = self._start()
        for message_id in ids:
            with self._lock:
                if message_id in self._queued or self._stop.is_set():
                    continue
                self._queued.add(message_id)
            pool.submit(self._run, message_id)

    def __call__(self, ids: list[int]) -> None:
        self._enqueue(ids)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            pool, sweeper = self._pool, self._sweeper
        if sweeper is not None:
            sweeper.join()
        if pool is not None:
            pool.shutdown(wait=True)


def install_outbox_dispatch(settings: Any, session_factory: Any, redis: Any | None) -> Any:
    """Wire the after-commit hook on the runtime's session factory (composition root)."""
    from core.messaging.notifications import install_dispatch

    dispatcher: Any
    if redis is not None:
        dispatcher = RqDispatcher(redis, settings.outbox_queue, settings.outbox_requeue_after_s)
    else:
        ctx = DeliveryContext.from_settings(settings, session_factory)
        dispatcher = InProcessDispatcher(ctx, settings.outbox_sweep_interval_s)
        if settings.sacco_env == "demo":
            # The demo server: start sweeping now, so messages queued by seed-demo
            # (operator commands do not dispatch) go out without waiting for a commit.
            dispatcher.start()
    install_dispatch(session_factory, dispatcher)
    return dispatcher
