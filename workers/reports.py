"""Report jobs (issue 16): build a large report asked over the API and keep its file.

``run_report(job_id)`` reads the report in a report session (the streaming replica when
``REPLICA_DATABASE_URL`` is set) and writes the file to ``report_jobs`` on the primary
(``core.reports.jobs.run_job``). In process it gets the app's context (``ctx``: its
``runtime``); an RQ worker builds a runtime of its own once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from core.reports import jobs, source

log = logging.getLogger(__name__)
_runtime: Any = None
_lock = threading.Lock()


def _worker_runtime() -> Any:
    global _runtime
    with _lock:
        if _runtime is None:
            from config import load_settings
            from runtime import build_runtime

            _runtime = build_runtime(load_settings(), dispatch=False)
        return _runtime


def run_report(job_id: int, *, ctx: Any = None) -> str:
    runtime = ctx.runtime if ctx is not None else _worker_runtime()
    return run_report_with(runtime, job_id)


def run_report_with(runtime: Any, job_id: int) -> str:
    now = runtime.deps.now()
    if runtime.replica_session_factory is None:
        with runtime.unit_of_work() as s:
            status = jobs.run_job(s, s, job_id, now=now, source=source.describe(s, replica=False))
    else:  # the report read on the replica, the file written on the primary
        with runtime.report_session() as read, runtime.unit_of_work() as write:
            where = source.describe(read, replica=True)
            status = jobs.run_job(read, write, job_id, now=now, source=where)
    log.info("report job %s: %s", job_id, status)
    return str(status)
