"""/healthz, /readyz and /metrics as an operator's probe sees them."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app_factory import build_runtime, create_app
from config import load_settings
from tests.settings import PG_URL, REDIS_URL


def test_healthz_and_readyz_with_postgres_and_redis(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def _app(database_url: str, redis_url: str) -> Flask:
    settings = load_settings(sacco_env="test", database_url=database_url, redis_url=redis_url)
    return create_app(settings, build_runtime(settings))


def test_readyz_names_redis_when_it_is_down(pg_engine: object) -> None:
    app = _app(PG_URL, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["redis"]
    app.extensions["sacco"].engine.dispose()


def test_readyz_names_the_database_when_it_is_down() -> None:
    app = _app("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere", REDIS_URL)
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["database"]
    assert client.get("/healthz").status_code == 200
    app.extensions["sacco"].redis.close()


def test_metrics_are_exposed(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200 and b"python_info" in response.data
