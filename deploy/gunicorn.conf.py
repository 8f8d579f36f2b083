"""gunicorn settings. Production: several workers behind nginx. Demo: one worker,
threads, because the embedded demo keeps USSD sessions and rate limits in memory."""

import os

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
