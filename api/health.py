"""Liveness, readiness and metrics: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import text

from observability.metrics import metrics_view

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """The process is up and serving. Touches nothing else."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Any:
    """Ready when the database answers and, where configured, Redis too."""
    runtime = current_app.extensions["sacco"]
    checks: dict[str, str] = {}
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready"; the reason is for operators
        current_app.logger.warning("readyz: database unreachable: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    if runtime.redis is not None:
        try:
            runtime.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            current_app.logger.warning("readyz: redis unreachable: %s", type(exc).__name__)
            checks["redis"] = "unreachable"
    else:
        checks["redis"] = "not configured"
    failed = [name for name, state in checks.items() if state == "unreachable"]
    body = {"status": "unavailable" if failed else "ok", "checks": checks, "failed": failed}
    return jsonify(body), (503 if failed else 200)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format (observability/metrics.py; docs/operators/monitoring.md)."""
    return metrics_view()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
