"""gunicorn settings. Production: several workers behind nginx. Demo: one worker,
threads, because the embedded demo keeps USSD sessions and rate limits in memory.

Read from the same settings object as the app (``config.load_settings``: HOST, PORT,
WEB_CONCURRENCY, GUNICORN_THREADS, SACCO_ENV), so a bad setting stops gunicorn at once
with the app's own one-line message instead of letting every worker fail to boot."""

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for config

from config import SettingsError, load_settings  # noqa: E402

try:
    _settings = load_settings()
except SettingsError as exc:
    sys.exit(str(exc))

# Prometheus multiprocess mode (docs/operators/monitoring.md): every worker writes its
# counters to files in one directory and a scrape answered by any worker adds them up. It
# must be empty when gunicorn starts: the operator's PROMETHEUS_MULTIPROC_DIR is emptied in
# on_starting; without one, a fresh directory under this service's own /tmp is made here,
# before any worker (or the app's prometheus_client import) exists.
_made_multiproc_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _made_multiproc_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sacco-metrics-")

bind = f"{_settings.host}:{_settings.port}"
_demo = _settings.sacco_env in ("demo", "development")
workers = 1 if _demo else _settings.web_concurrency
threads = _settings.gunicorn_threads
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
# The USSD request log must never carry `text` (a PIN rides in it): access lines log
# the path only, never the body or the query string; and the request id the app answered.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# gunicorn's own lines (start, workers, access) as JSON lines through the app's scrubbing
# filter (observability/logs.py), like every other line the processes write; LOG_FORMAT=text
# keeps gunicorn's plain format.
if _settings.log_format == "json":

    def _json_handler(stream: str) -> dict[str, Any]:
        return {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["scrub"],
            "stream": stream,
        }

    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": _settings.log_level.upper(), "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
        "handlers": {
            "error": _json_handler("ext://sys.stderr"),
            "access": _json_handler("ext://sys.stdout"),
        },
        "formatters": {"json": {"()": "observability.logs.JsonFormatter"}},
        "filters": {"scrub": {"()": "observability.logs.ScrubFilter"}},
    }


def post_worker_init(worker: Any) -> None:
    """The embedded demo has no scheduler process: its one worker settles forgotten
    M-Pesa requests itself, every MPESA_RECONCILE_INTERVAL_S. Started here, by the
    server process, never by create_app: an app built by a test or a command must not
    grow a background thread that reaches into someone else's database session."""
    if not _demo:
        return
    from core.payments.mpesa.jobs import ReconcilePending
    from workers.runner import InProcessJobs

    app = worker.wsgi
    ctx = app.extensions.get("mpesa")
    if ctx is not None and isinstance(ctx.jobs, InProcessJobs):
        interval = app.config["SACCO_SETTINGS"].mpesa_reconcile_interval_s
        ctx.jobs.every(interval, ReconcilePending())


def on_starting(server: Any) -> None:
    """A restart must not add the last run's counts to this one's."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker that died or was replaced: its live gauges stop counting (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """The directory made above goes with the server (an operator's own stays)."""
    if _made_multiproc_dir:
        import shutil

        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
