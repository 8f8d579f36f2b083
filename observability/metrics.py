"""Prometheus metrics that answer operators' questions (docs/operators/monitoring.md).

Two kinds:

* **Counted in the web process** where the event happens: HTTP requests by blueprint and
  status (the error rate), USSD hops by screen and outcome with a latency histogram, PIN
  verifications, gateway callbacks by gateway, kind and result. gunicorn runs several
  worker processes, so these use prometheus-client's multiprocess mode when
  ``PROMETHEUS_MULTIPROC_DIR`` is set (``deploy/gunicorn.conf.py`` sets a fresh directory
  when the environment does not, and marks dead workers); a scrape answered by any worker
  then adds up every worker's counts.
* **Read at scrape time** from PostgreSQL and Redis by ``StateCollector`` (cached for
  ``METRICS_CACHE_SECONDS``, each query on an index): the outbox's depth and oldest message,
  RQ queues and failed jobs, ledger entries posted, close of day, M-Pesa callbacks and
  payouts waiting, the last statement reconciliation's differences, SIM-swap refusals.
  These hold for every process and host (the RQ workers and the scheduler included), which
  an in-process counter in a worker without an HTTP port could not.

Labels are small fixed sets (a screen id, a status): never a phone number, a member, a
session or a message id.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Response, abort, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from db.models import AuditEvent, JournalEntry, OutboxMessage
from db.models_close_day import CloseDayRun
from db.models_mpesa import B2CPayout, MpesaCallback, SimSwapEvent, StkRequest, SuspenseItem

log = logging.getLogger(__name__)

PREFIX = "sacco"

# ----------------------------------------------------------------- counted in process

HTTP_REQUESTS = Counter(
    "sacco_http_requests",
    "HTTP requests answered by the app, by blueprint and status code",
    ["blueprint", "status"],
)
USSD_HOPS = Counter(
    "sacco_ussd_hops",
    "USSD hops by the screen shown and the outcome "
    "(continue, end, refused, error, throttled, forbidden)",
    ["screen", "outcome"],
)
USSD_HOP_SECONDS = Histogram(
    "sacco_ussd_hop_seconds",
    "Time to answer one USSD hop (the gateway gives up at about 15 s)",
    ["outcome"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0),
)
PIN_VERIFICATIONS = Counter(
    "sacco_pin_verifications",
    "Member PIN checks by result (ok, failed, locked)",
    ["result"],
)
CALLBACKS = Counter(
    "sacco_callbacks",
    "Gateway callbacks received, by gateway, kind and result",
    ["gateway", "kind", "result"],
)

# What a USSD hop's outcome is, from what the channel knows (``ussd/views.py``).
HOP_OUTCOMES = ("continue", "end", "refused", "error", "throttled", "forbidden")
PIN_RESULTS = {"pin_invalid": "failed", "pin_locked": "locked", "pin_blocked": "locked"}


def observe_hop(screen: str, outcome: str, seconds: float | None) -> None:
    screen = screen.split(":", 1)[0] if screen.startswith("refused:") else screen
    USSD_HOPS.labels(screen=screen[:40] or "none", outcome=outcome).inc()
    if seconds is not None:
        USSD_HOP_SECONDS.labels(outcome=outcome).observe(seconds)


def count_pin(ok: bool, error: str | None) -> None:
    """One PIN check from a member channel: ``ok``, or the refusal's code."""
    if ok:
        PIN_VERIFICATIONS.labels(result="ok").inc()
    elif error in PIN_RESULTS:
        PIN_VERIFICATIONS.labels(result=PIN_RESULTS[error]).inc()


def count_callback(gateway: str, kind: str, result: str) -> None:
    CALLBACKS.labels(gateway=gateway, kind=kind, result=result).inc()


def status_class_result(status: int) -> str:
    """A callback's result from its HTTP answer: ok, rejected (4xx), error (5xx)."""
    if status >= 500:
        return "error"
    if status == 403:
        return "forbidden"
    return "rejected" if status >= 400 else "ok"


# ----------------------------------------------------------------- read at scrape time

RQ_QUEUES_KEY = "sacco_metrics_rq_queues"


class StateCollector(Collector):
    """Gauges (and DB-derived counters) read from PostgreSQL and Redis when Prometheus
    scrapes, at most once per ``cache_s`` in this process. A source that fails is
    reported by ``sacco_metrics_source_up{source}`` = 0, never by a failed scrape."""

    def __init__(
        self,
        runtime: Any,
        queues: Iterable[str],
        *,
        cache_s: float = 10.0,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.runtime = runtime
        self.queues = tuple(queues)
        self.cache_s = cache_s
        self._now = now or runtime.deps.now
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._cached_at = -1e18
        # Ledger entries: a running total per kind up to a settled id (see _ledger).
        self._ledger_settled_id = 0
        self._ledger_settled: dict[str, int] = {}

    def describe(self) -> list[Metric]:
        return []  # read lazily: registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._cached_at >= self.cache_s:
                self._cached = self._read()
                self._cached_at = time.monotonic()
            yield from self._cached

    def _read(self) -> list[Metric]:
        metrics: list[Metric] = []
        up = GaugeMetricFamily(
            "sacco_metrics_source_up",
            "1 when the last read of this source for /metrics worked",
            labels=["source"],
        )
        for source, reader in (("database", self._database), ("redis", self._redis)):
            try:
                metrics.extend(reader())
                up.add_metric([source], 1)
            except Exception as exc:  # a scrape must answer; the gauge says what failed
                log.warning("metrics: reading %s failed: %s", source, type(exc).__name__)
                up.add_metric([source], 0)
        metrics.append(up)
        return metrics

    # ------------------------------------------------------------ PostgreSQL

    def _database(self) -> list[Metric]:
        now = self._now()
        out: list[Metric] = []
        with self.runtime.session() as s:
            out.extend(self._outbox(s, now))
            out.append(self._ledger(s, now))
            out.extend(self._close_day(s))
            out.extend(self._mpesa(s, now))
            out.extend(self._reconciliation(s))
            out.append(self._sim_swap(s))
        return out

    @staticmethod
    def _outbox(s: Any, now: datetime) -> list[Metric]:
        waiting = ("pending", "sending")
        depth = GaugeMetricFamily(
            "sacco_outbox_messages",
            "Outbox messages not yet handed to the gateway, by channel and status",
            labels=["channel", "status"],
        )
        oldest = GaugeMetricFamily(
            "sacco_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox message still pending or sending, by channel "
            "(0 when none waits)",
            labels=["channel"],
        )
        failed = GaugeMetricFamily(
            "sacco_outbox_failed_messages",
            "Outbox messages that failed for good, by channel",
            labels=["channel"],
        )
        rows = s.execute(
            select(OutboxMessage.channel, OutboxMessage.status, func.count())
            .where(OutboxMessage.status.in_(waiting))
            .group_by(OutboxMessage.channel, OutboxMessage.status)
        ).all()
        counts = {(c, st): n for c, st, n in rows}
        ages = dict(
            s.execute(
                select(OutboxMessage.channel, func.min(OutboxMessage.created_at))
                .where(OutboxMessage.status.in_(waiting))
                .group_by(OutboxMessage.channel)
            ).all()
        )
        for channel in ("sms", "email", "webhook"):
            for status in waiting:
                depth.add_metric([channel, status], counts.get((channel, status), 0))
            first = ages.get(channel)
            oldest.add_metric([channel], max(0.0, (now - first).total_seconds()) if first else 0)
        for channel, n in s.execute(
            select(OutboxMessage.channel, func.count())
            .where(OutboxMessage.status == "failed")
            .group_by(OutboxMessage.channel)
        ).all():
            failed.add_metric([channel], n)
        return [depth, oldest, failed]

    def _ledger(self, s: Any, now: datetime) -> Metric:
        """Journal entries by kind, as a counter. The first scrape counts every entry
        (one index scan); later ones count only entries past the last *settled* id, the
        highest id written more than a minute ago, so an entry whose transaction commits
        after a later id's does not go uncounted."""
        settle_before = now - timedelta(minutes=1)
        settled = s.scalar(
            select(func.max(JournalEntry.id)).where(
                JournalEntry.id > self._ledger_settled_id,
                JournalEntry.created_at < settle_before,
            )
        )
        if settled is not None:
            for kind, n in s.execute(
                select(JournalEntry.kind, func.count())
                .where(JournalEntry.id > self._ledger_settled_id, JournalEntry.id <= settled)
                .group_by(JournalEntry.kind)
            ).all():
                self._ledger_settled[kind] = self._ledger_settled.get(kind, 0) + n
            self._ledger_settled_id = settled
        totals = dict(self._ledger_settled)
        for kind, n in s.execute(
            select(JournalEntry.kind, func.count())
            .where(JournalEntry.id > self._ledger_settled_id)
            .group_by(JournalEntry.kind)
        ).all():
            totals[kind] = totals.get(kind, 0) + n
        entries = CounterMetricFamily(
            "sacco_ledger_entries", "Journal entries posted, by kind", labels=["kind"]
        )
        for kind, n in sorted(totals.items()):
            entries.add_metric([kind], n)
        return entries

    @staticmethod
    def _close_day(s: Any) -> list[Metric]:
        last = s.execute(
            select(CloseDayRun.business_date, CloseDayRun.started_at, CloseDayRun.finished_at)
            .where(CloseDayRun.status == "done", CloseDayRun.finished_at.is_not(None))
            .order_by(CloseDayRun.finished_at.desc())
            .limit(1)
        ).first()
        running = s.scalar(
            select(func.count()).select_from(CloseDayRun).where(CloseDayRun.status == "running")
        )
        success = GaugeMetricFamily(
            "sacco_close_day_last_success_timestamp_seconds",
            "When the last close of day finished (Unix time; 0 if none ever did)",
        )
        duration = GaugeMetricFamily(
            "sacco_close_day_last_duration_seconds",
            "How long the last finished close of day took",
        )
        day = GaugeMetricFamily(
            "sacco_close_day_last_business_date_timestamp_seconds",
            "The business date the last finished close of day closed (midnight UTC, Unix time)",
        )
        if last is not None:
            business_date, started, finished = last
            success.add_metric([], finished.timestamp())
            duration.add_metric([], max(0.0, (finished - started).total_seconds()))
            day.add_metric(
                [], datetime(business_date.year, business_date.month, business_date.day).timestamp()
            )
        else:
            success.add_metric([], 0)
            duration.add_metric([], 0)
            day.add_metric([], 0)
        in_progress = GaugeMetricFamily(
            "sacco_close_day_running", "Close-of-day runs started and not finished"
        )
        in_progress.add_metric([], running or 0)
        return [success, duration, day, in_progress]

    @staticmethod
    def _mpesa(s: Any, now: datetime) -> list[Metric]:
        callbacks = GaugeMetricFamily(
            "sacco_mpesa_callbacks_unprocessed",
            "M-Pesa callbacks stored but not applied (received: waiting or cut mid-apply; "
            "error: failed, kept for replay), by status",
            labels=["status"],
        )
        for status in ("received", "error"):
            n = s.scalar(
                select(func.count())
                .select_from(MpesaCallback)
                .where(MpesaCallback.status == status)
            )
            callbacks.add_metric([status], n or 0)
        payouts = _by_status(
            s,
            "sacco_mpesa_payouts_open",
            "B2C payouts not yet settled, by status",
            B2CPayout.status,
            ("requested", "sending", "sent", "unknown", "review"),
        )
        stk = _by_status(
            s,
            "sacco_mpesa_stk_open",
            "STK-push deposits not yet settled, by status",
            StkRequest.status,
            ("queued", "sending", "pending", "unknown"),
        )
        suspense = GaugeMetricFamily(
            "sacco_mpesa_suspense_open", "M-Pesa payments in suspense waiting for staff"
        )
        suspense.add_metric(
            [],
            s.scalar(
                select(func.count()).select_from(SuspenseItem).where(SuspenseItem.status == "open")
            )
            or 0,
        )
        return [callbacks, payouts, stk, suspense]

    @staticmethod
    def _reconciliation(s: Any) -> list[Metric]:
        """The differences the last statement reconciliation found (its audit row)."""
        row = s.execute(
            select(AuditEvent.after, AuditEvent.created_at)
            .where(AuditEvent.action == "mpesa.statement_reconciled")
            .order_by(AuditEvent.id.desc())
            .limit(1)
        ).first()
        mismatches = GaugeMetricFamily(
            "sacco_reconciliation_mismatches",
            "Differences the last M-Pesa statement reconciliation found, by type",
            labels=["type"],
        )
        when = GaugeMetricFamily(
            "sacco_reconciliation_last_run_timestamp_seconds",
            "When the last M-Pesa statement reconciliation ran (Unix time; 0 if never)",
        )
        after: dict[str, Any] = {}
        if row is not None:
            try:
                after = json.loads(row[0]) if isinstance(row[0], str) else dict(row[0] or {})
            except (TypeError, ValueError):
                after = {}
        for kind in ("missing_in_ledger", "missing_in_statement", "amount_mismatches"):
            value = after.get(kind, 0)
            mismatches.add_metric([kind], value if isinstance(value, int) else 0)
        when.add_metric([], row[1].timestamp() if row is not None else 0)
        return [mismatches, when]

    @staticmethod
    def _sim_swap(s: Any) -> Metric:
        refusals = CounterMetricFamily(
            "sacco_sim_swap_refusals",
            "Withdrawals refused by the SIM-swap guard, by reason (recent_swap, check_failed)",
            labels=["reason"],
        )
        found = dict(
            s.execute(
                select(SimSwapEvent.outcome, func.count())
                .where(SimSwapEvent.decision == "refused")
                .group_by(SimSwapEvent.outcome)
            ).all()
        )
        for reason in ("recent_swap", "check_failed"):
            refusals.add_metric([reason], found.get(reason, 0))
        return refusals

    # ------------------------------------------------------------ Redis (RQ)

    def _redis(self) -> list[Metric]:
        depth = GaugeMetricFamily(
            "sacco_rq_queue_jobs", "Jobs waiting in an RQ queue", labels=["queue"]
        )
        failed = GaugeMetricFamily(
            "sacco_rq_failed_jobs",
            "Jobs in an RQ queue's failed registry (kept a day)",
            labels=["queue"],
        )
        workers = GaugeMetricFamily("sacco_rq_workers", "RQ workers registered in Redis")
        redis = self.runtime.redis
        if redis is None:  # the embedded demo: no queues
            return [depth, failed, workers]
        from rq import Queue, Worker
        from rq.registry import FailedJobRegistry

        for name in self.queues:
            queue = Queue(name, connection=redis)
            depth.add_metric([name], queue.count)
            failed.add_metric([name], FailedJobRegistry(queue=queue).count)
        workers.add_metric([], Worker.count(connection=redis))
        return [depth, failed, workers]


def _by_status(
    s: Any, name: str, documentation: str, column: Any, statuses: tuple[str, ...]
) -> Metric:
    """Rows of one table in each of ``statuses`` (0 for a status with none)."""
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    found = dict(
        s.execute(select(column, func.count()).where(column.in_(statuses)).group_by(column)).all()
    )
    for status in statuses:
        family.add_metric([status], found.get(status, 0))
    return family


# ----------------------------------------------------------------- the endpoint


class _ProcessDefaults(Collector):
    """This process's own registry (our counters and the process metrics) when there is
    no multiprocess directory (tests, ``manage.py``, a single worker without one)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(state: Collector | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessDefaults())
    if state is not None:
        registry.register(state)
    return generate_latest(registry)


EXTENSION = "sacco.metrics"


def _networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    ]


def allowed(remote: str | None, networks: list[Any]) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address((remote or "").split("%", 1)[0])
    except ValueError:
        return False
    return any(address in net for net in networks if net.version == address.version)


def metrics_view() -> Response:
    """``GET /metrics``: refused (403) to an address outside ``METRICS_ALLOWED_NETWORKS``."""
    ext = current_app.extensions[EXTENSION]
    if not allowed(request.remote_addr, ext["networks"]):
        abort(403)
    return Response(exposition(ext["state"]), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Count every answer by blueprint and status, and hold the scrape-time collector."""
    settings = app.config["SACCO_SETTINGS"]
    runtime = app.extensions["sacco"]
    app.extensions[EXTENSION] = {
        "state": StateCollector(
            runtime,
            (settings.outbox_queue, settings.jobs_queue),
            cache_s=settings.metrics_cache_seconds,
        ),
        "networks": _networks(settings.metrics_allowed_networks),
    }

    @app.after_request
    def _count(response: Response) -> Response:
        HTTP_REQUESTS.labels(
            blueprint=request.blueprint or "none", status=str(response.status_code)
        ).inc()
        return response
