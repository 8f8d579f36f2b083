"""gunicorn settings. Production: several workers behind nginx. Demo: one worker,
threads, because the embedded demo keeps USSD sessions and rate limits in memory.

Read from the same settings object as the app (``config.load_settings``: HOST, PORT,
WEB_CONCURRENCY, GUNICORN_THREADS, SACCO_ENV), so a bad setting stops gunicorn at once
with the app's own one-line message instead of letting every worker fail to boot."""

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for config

from config import SettingsError, load_settings  # noqa: E402

try:
    _settings = load_settings()
except SettingsError as exc:
    sys.exit(str(exc))

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
# the path only, never the body or the query string.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


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
