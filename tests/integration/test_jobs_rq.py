"""M-Pesa jobs go through RQ when Redis is configured, and `manage.py worker` runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis as redis_lib
from rq import Queue
from rq.job import Job
from sqlalchemy import Engine

from tests.settings import PG_URL, REDIS_URL
from workers.runner import InProcessJobs, RqJobs, jobs_for

ROOT = Path(__file__).resolve().parents[2]


def test_jobs_use_rq_with_redis_and_threads_without(redis_client: redis_lib.Redis) -> None:
    assert isinstance(jobs_for(redis_client, "jobs"), RqJobs)
    in_process = jobs_for(None, "jobs")
    assert isinstance(in_process, InProcessJobs)
    in_process.close()


def test_worker_runs_an_enqueued_mpesa_job(
    committed_pg: Engine, redis_client: redis_lib.Redis
) -> None:
    RqJobs(redis_client, "jobs").enqueue("workers.mpesa.reconcile_pending")
    (job_id,) = Queue("jobs", connection=redis_client).job_ids
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(SACCO_ENV="test", DATABASE_URL=PG_URL, REDIS_URL=REDIS_URL, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "manage.py", "worker", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert Job.fetch(job_id, connection=redis_client).get_status() == "finished"


def test_a_job_name_outside_workers_is_refused(redis_client: redis_lib.Redis) -> None:
    import pytest

    with pytest.raises(ValueError):
        RqJobs(redis_client, "jobs").enqueue("os.system", "true")
    assert Queue("jobs", connection=redis_client).count == 0
