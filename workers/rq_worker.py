"""The RQ worker class ``manage.py worker`` runs: RQ's ``SimpleWorker`` (jobs in this
process) whose jobs log with the request id of the request that queued them (the job's
``meta["request_id"]``, set at enqueue by ``observability.logs.job_meta``)."""

from __future__ import annotations

from typing import Any

from rq import SimpleWorker

from observability.logs import request_id_bound, valid_request_id


class RequestIdWorker(SimpleWorker):
    def perform_job(self, job: Any, queue: Any) -> bool:
        meta = job.meta if isinstance(job.meta, dict) else {}
        with request_id_bound(valid_request_id(meta.get("request_id"))):
            return bool(super().perform_job(job, queue))
