"""``manage.py worker``: an RQ ``SimpleWorker`` that outlives a Redis restart.

RQ's own loop retries a lost connection only while it waits for a job; anywhere else (a
job ending, its heartbeat, its bookkeeping) a Redis error makes ``work()`` log "found an
unhandled exception, quitting" and return, and delivery would stop until something
restarted the process. ``run_worker`` therefore runs ``work()`` again, after waiting for
Redis with a capped exponential backoff, until the worker is asked to stop (SIGTERM,
SIGINT) or, with ``burst``, has emptied its queues. systemd's ``Restart=always`` stays
the second line: whatever still ends the process, the unit starts it again.

Its jobs log with the request id of the request that queued them (the job's
``meta["request_id"]``, set at enqueue by ``observability.logs.job_meta``).

Nothing is lost meanwhile: a job's state is in PostgreSQL (the outbox row, the M-Pesa
request), the sweeper re-enqueues a message whose job vanished
(``workers.queue.job_is_alive``), and the M-Pesa reconciliation settles requests.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker

from observability.logs import request_id_bound, valid_request_id

log = logging.getLogger(__name__)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RequestIdWorker(SimpleWorker):
    """RQ's ``SimpleWorker`` (jobs in this process), each job logging with its request id."""

    def perform_job(self, job: Any, queue: Any) -> bool:
        meta = job.meta if isinstance(job.meta, dict) else {}
        with request_id_bound(valid_request_id(meta.get("request_id"))):
            return bool(super().perform_job(job, queue))


class _Worker(RequestIdWorker):
    """Remembers that it was asked to stop (RQ does not say why ``work()`` returned)."""

    stop_signalled = False

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stop_signalled = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]


def _wait_for_redis(connection: Any, stop: threading.Event, delay_s: float, max_s: float) -> bool:
    """Ping every ``delay_s`` (doubling up to ``max_s``) until Redis answers (True) or a
    stop signal arrives (False)."""
    while not stop.wait(delay_s):
        try:
            connection.ping()
            return True
        except RedisError as exc:
            log.warning("Redis still unreachable (%s); next try in %s s", exc, delay_s)
        delay_s = min(max_s, delay_s * 2)
    return False


def free_stale_name(connection: Any, queue_names: Sequence[str], name: str | None) -> bool:
    """Mark dead the registration a killed worker of this ``name`` left behind, so that the
    same name can start again. True if there was one.

    A worker killed with SIGKILL (the OOM killer, ``kill -9``, the fault test) never records
    its death, and RQ refuses to start another worker of that name ("There exists an active
    worker named ... already") until the old key expires, minutes later: systemd would
    restart ``sacco-worker@N`` (``--name %H-outbox-%i``) into that refusal again and again.
    Only a registration from this host whose process is gone is freed; another host's, or a
    live process's, is left alone."""
    if not name:
        return False
    key = f"{_Worker.redis_worker_namespace_prefix}{name}"
    pid, host, death = connection.hmget(key, "pid", "hostname", "death")
    if pid is None or death is not None:
        return False
    if host is None or host.decode() != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        pass
    except (PermissionError, ValueError):
        return False
    else:
        return False  # alive: a second worker really is using that name
    stale = _Worker([Queue(q, connection=connection) for q in queue_names],
                    connection=connection, name=name)  # fmt: skip
    stale.register_death()  # type: ignore[no-untyped-call]
    log.warning("worker %s: freed the name its killed process (pid %s) left registered", name,
                int(pid))  # fmt: skip
    return True


def run_worker(
    connection: Any,
    queue_names: Sequence[str],
    *,
    name: str | None = None,
    burst: bool = False,
    first_backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
) -> None:
    """Work the queues until stopped, starting RQ's loop again after a Redis outage
    (also one at start). A loop that keeps ending at once backs off up to ``max_backoff_s``
    between starts."""
    stop = threading.Event()  # a stop signal while waiting (RQ handles its own in work())
    delay = first_backoff_s
    while True:
        worker: _Worker | None = None
        started = time.monotonic()
        try:
            free_stale_name(connection, queue_names, name)
            worker = _Worker(
                [Queue(q, connection=connection) for q in queue_names],
                connection=connection,
                name=name,
            )
            worker.work(burst=burst)
        except RedisError as exc:  # at start, or its teardown could not reach Redis either
            log.error("worker %s: Redis unreachable: %s", name or "", exc)
        else:
            if burst:
                return
        if worker is not None:
            if worker.stop_signalled:
                return
            name = worker.name  # the same name again: it is ours
        if time.monotonic() - started > max_backoff_s:
            delay = first_backoff_s  # it had been working: a fresh outage
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
        try:
            log.warning("worker %s stopped working (Redis?); reconnecting", name or "")
            if not _wait_for_redis(connection, stop, delay, max_backoff_s):
                return
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        delay = min(max_backoff_s, delay * 2)
        if worker is not None:
            try:  # its first life may have ended without a death record; free its name
                worker.register_death()  # type: ignore[no-untyped-call]
            except RedisError:
                log.warning("worker %s: could not clear its old registration", name)
        log.info("worker %s: Redis answers, working again", name or "")
