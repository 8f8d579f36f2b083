"""Job runners: RQ in production, a small in-process pool in the embedded demo.

Core asks for typed jobs (``core.payments.mpesa.jobs.SendB2C(42)``, deferred on its unit
of work and handed over after the commit: ``core.kernel.uow``); ``JOBS`` maps each type
to its worker function here, the one place that names them. ``submit(job)`` queues one;
underneath, a job is a dotted path and ids (``"workers.mpesa.send_b2c", 42``), exactly
as ``rq.Queue.enqueue`` takes them, so switching to RQ is a change of runner, not of
callers.

* ``InProcessJobs()``: a small thread pool (the embedded demo: the USSD hop
  returns at once, the STK push or B2C call happens just after).
* ``InProcessJobs(synchronous=True)``: runs the job inside ``enqueue`` (CLI, tests).

In process, the runner hands each job the context its wiring bound to it
(``bind(ctx)``: the M-Pesa context of the app that owns the runner) as the keyword
``ctx``; an RQ worker process has no app, so there a job builds its worker's own.
Nothing is kept in a module: two apps in one process never share a context.

A job that raises is logged; nothing is lost, because every job's state is in
the database and ``workers.mpesa.reconcile_pending`` picks up what is left.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from threading import Lock
from typing import Any

from core.kernel.uow import Job
from core.payments.bank.transfers import SendBankTransfer, SettleBankTransfers
from core.payments.mpesa.jobs import QueryB2CStatus, ReconcilePending, SendB2C, SendStkPush
from core.reports.jobs import RunReport
from core.savings.jobs import PayYearEndByMpesa
from observability.logs import job_meta

log = logging.getLogger(__name__)

# Every job type core can defer, and the worker function that does it.
JOBS: dict[type[Job], str] = {
    SendStkPush: "workers.mpesa.send_stk_push",
    SendB2C: "workers.mpesa.send_b2c",
    QueryB2CStatus: "workers.mpesa.query_b2c_status",
    ReconcilePending: "workers.mpesa.reconcile_pending",
    SendBankTransfer: "workers.bank.send_bank_transfer",
    SettleBankTransfers: "workers.bank.settle_bank_transfers",
    PayYearEndByMpesa: "workers.year_end.pay_year_end_by_mpesa",
    RunReport: "workers.reports.run_report",
}


def job_path(job: Job) -> str:
    """The worker function of a typed job; an unknown type is a programming error."""
    try:
        return JOBS[type(job)]
    except KeyError:
        raise ValueError(f"no worker for {type(job).__name__}") from None


def resolve(job: str) -> Callable[..., Any]:
    module, _, name = job.rpartition(".")
    if not module.startswith("workers."):
        raise ValueError(f"jobs live in workers/: {job!r}")
    func: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return func


class InProcessJobs:
    def __init__(self, *, synchronous: bool = False, max_workers: int = 4) -> None:
        self.synchronous = synchronous
        self._pool: ThreadPoolExecutor | None = None
        self._max_workers = max_workers
        self._futures: list[Future[Any]] = []
        self._lock = Lock()
        self._stop = threading.Event()
        self._context: Any = None

    def bind(self, context: Any) -> None:
        """Every job this runner runs from now on gets ``ctx=context``."""
        self._context = context

    def submit(self, job: Job) -> None:
        """Queue a typed job (``core.kernel.uow.Job``)."""
        self.enqueue(job_path(job), *job.args())

    def enqueue(self, job: str, *args: Any) -> None:
        func = resolve(job)
        if self._context is not None:
            func = functools.partial(func, ctx=self._context)
        if self.synchronous:
            self._run(job, func, args)
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="job")
            self._futures = [f for f in self._futures if not f.done()]
            # The job's log lines keep the request id of the request that queued it.
            run = contextvars.copy_context().run
            self._futures.append(self._pool.submit(run, self._run, job, func, args))

    @staticmethod
    def _run(job: str, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            func(*args)
        except Exception:
            log.exception("job %s%r failed; reconciliation will pick it up", job, args)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for every job enqueued so far."""
        with self._lock:
            futures = list(self._futures)
        wait(futures, timeout=timeout)

    def every(self, interval_s: float, job: Job) -> None:
        """Submit ``job`` every ``interval_s`` on a daemon thread (the demo's scheduler)."""
        path = job_path(job)

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.submit(job)

        threading.Thread(target=loop, name=f"every-{path}", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class RqJobs:
    """Production: the same ``enqueue(job, *ids)`` onto an RQ queue in Redis.

    ``manage.py worker`` listens on this queue beside the outbox queue. If Redis
    is down, the error propagates to the caller *after* its commit; the request
    rows stay pending and ``reconcile_pending`` (``manage.py scheduler``) sends
    or settles them, so nothing is lost.
    """

    def __init__(self, redis: Any, queue_name: str = "jobs") -> None:
        from rq import Queue

        self._queue = Queue(queue_name, connection=redis)

    def submit(self, job: Job) -> None:
        """Queue a typed job (``core.kernel.uow.Job``)."""
        self.enqueue(job_path(job), *job.args())

    def enqueue(self, job: str, *args: Any) -> None:
        resolve(job)  # refuse a typo at the call site, not in the worker
        self._queue.enqueue(
            job, *args, result_ttl=300, failure_ttl=86400, job_timeout=120, meta=job_meta()
        )

    def bind(self, context: Any) -> None:
        """Nothing to bind: an RQ worker process builds its own context."""

    def drain(self, timeout: float = 30.0) -> None:
        """Nothing to wait for here: workers run the jobs."""

    def close(self) -> None:
        """Nothing to stop: the jobs live in Redis."""


def jobs_for(redis: Any, queue_name: str) -> InProcessJobs | RqJobs:
    """RQ when Redis is configured, a thread pool in this process otherwise (the demo)."""
    return RqJobs(redis, queue_name) if redis is not None else InProcessJobs()
