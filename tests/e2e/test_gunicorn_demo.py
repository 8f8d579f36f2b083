"""``make demo``'s path: gunicorn with SACCO_ENV=demo on a SQLite file, no PostgreSQL, no Redis."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.e2e.servers import gunicorn, run_manage


def test_the_embedded_demo_serves_health_and_readiness_without_postgres_or_redis(
    tmp_path: Path,
) -> None:
    env = {"SACCO_ENV": "demo", "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    run_manage(["migrate"], env)
    with gunicorn(env) as base, requests.Session() as http:
        health = http.get(f"{base}/healthz", timeout=5)
        ready = http.get(f"{base}/readyz", timeout=5)
        page = http.get(f"{base}/simulator", timeout=5)
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "not configured"}
    assert page.status_code == 200  # the demo ships the phone simulator
