"""gunicorn settings. Production: several workers behind nginx. Demo: one worker,
threads, because the embedded demo keeps USSD sessions and rate limits in memory."""

import os
from typing import Any

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
_demo = os.environ.get("SACCO_ENV", "production") in ("demo", "development")
workers = 1 if _demo else int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
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
