"""/healthz, /readyz and /metrics as an operator's probe sees them."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app_factory import create_app
from config import load_settings
from runtime import build_runtime
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


def test_behind_one_trusted_proxy_the_client_address_is_the_forwarded_one(
    pg_engine: object,
) -> None:
    from flask import request

    settings = load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL, trusted_proxy_hops=1
    )
    app = create_app(settings, build_runtime(settings))

    @app.get("/_whoami")
    def whoami() -> str:
        return str(request.remote_addr)

    client = app.test_client()
    seen = client.get(
        "/_whoami",
        headers={"X-Forwarded-For": "41.90.1.2"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert seen.get_data(as_text=True) == "41.90.1.2"
    app.extensions["sacco"].engine.dispose()
    app.extensions["sacco"].redis.close()
