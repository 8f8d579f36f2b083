"""One error shape everywhere (problem+json), security headers, CORS allowlist, rate
limits, the OpenAPI document, and the auditors' view of the audit log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from app_factory import create_app
from config import Settings, load_settings
from db.models import Member
from runtime import Runtime
from tests.e2e.api.conftest import PASSWORD, Staffer, auth
from tests.settings import PG_URL, REDIS_URL


def assert_problem(r, status: int, code: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.data
    assert r.mimetype == "application/problem+json"
    body = r.json
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    assert "Traceback" not in r.get_data(as_text=True)


def test_unknown_path_wrong_method_and_bad_json_are_problems(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    teller = staff_by_role["teller"]
    assert_problem(api.get("/api/v1/nothing-here"), 404, "not_found")
    r = api.delete("/api/v1/members", headers=auth(teller))
    assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]
    r = api.post("/api/v1/auth/login", data="{not json", content_type="application/json")
    assert_problem(r, 400)
    assert "Invalid JSON" in r.json["detail"]
    r = api.post("/api/v1/auth/login", json={"username": "x"})
    assert_problem(r, 422, "invalid_input")
    assert "password" in r.json["errors"]
    r = api.post("/api/v1/auth/login", json={"username": "x", "password": "y", "role": "admin"})
    assert_problem(r, 422)
    assert "role" in r.json["errors"]  # unknown fields refused (mass assignment)
    r = api.get("/api/v1/members?limit=100000", headers=auth(teller))
    assert_problem(r, 422)
    assert "limit" in r.json["errors"]


def test_oversized_body_is_413(api: FlaskClient) -> None:
    r = api.post(
        "/api/v1/auth/login", data=b"x" * (3 * 1024 * 1024), content_type="application/json"
    )
    assert_problem(r, 413)


def test_unexpected_error_is_a_problem_without_details(
    api: FlaskClient,
    staff_by_role: dict[str, Staffer],
    make_member: Callable[..., Member],
    settings: Settings,
) -> None:
    """A document whose file vanished from storage: a 500 that leaks no path or traceback."""
    from tests.e2e.api.test_members_api import JPEG, upload

    member = make_member()
    doc = upload(api, staff_by_role["teller"], member.id, "photo", JPEG).json
    for path in Path(settings.document_dir).iterdir():
        path.unlink()
    r = api.get(f"/api/v1/members/{member.id}/documents/{doc['id']}",
                headers=auth(staff_by_role["manager"]))  # fmt: skip
    assert_problem(r, 500, "internal_error")
    assert settings.document_dir not in r.get_data(as_text=True)


def test_domain_errors_map_to_statuses(
    api: FlaskClient, staff_by_role: dict[str, Staffer], make_member: Callable[..., Member]
) -> None:
    manager = staff_by_role["manager"]
    assert_problem(api.get("/api/v1/members/999999", headers=auth(manager)), 404, "not_found")
    member = make_member(status="active")
    r = api.post(f"/api/v1/members/{member.id}/kyc/reject", headers=auth(manager),
                 json={"reason": "blurred"})  # fmt: skip
    assert_problem(r, 403, "member_not_allowed")


def test_security_headers_and_request_id(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    r = api.get(
        "/api/v1/auth/me", headers={**auth(staff_by_role["teller"]), "X-Request-ID": "abc12345-req"}
    )
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert r.headers["X-Request-ID"] == "abc12345-req"
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_allows_only_configured_origins(api: FlaskClient) -> None:
    ok = api.options(
        "/api/v1/auth/login",
        headers={"Origin": "https://backoffice.example", "Access-Control-Request-Method": "POST"},
    )
    assert ok.headers["Access-Control-Allow-Origin"] == "https://backoffice.example"
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    evil = api.options(
        "/api/v1/auth/login",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_login_is_rate_limited_per_address(
    runtime: Runtime, make_staff: Callable[..., Staffer]
) -> None:
    settings: Settings = load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL, api_login_rate_limit="3/minute"
    )
    app = create_app(settings, runtime)
    client = app.test_client()
    teller = make_staff("teller")
    codes = [
        client.post(
            "/api/v1/auth/login", json={"username": teller.username, "password": "nope nope nope"}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    r = client.post("/api/v1/auth/login", json={"username": teller.username, "password": PASSWORD})
    assert_problem(r, 429)
    assert "Retry-After" in r.headers


def test_openapi_document_and_docs_page(api: FlaskClient) -> None:
    r = api.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec = r.json
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/members/{member_id}/deposits" in spec["paths"]
    deposit = spec["paths"]["/api/v1/members/{member_id}/deposits"]["post"]
    assert any(
        p["name"] == "Idempotency-Key" and p["in"] == "header" for p in deposit["parameters"]
    )
    assert "deposits:cash" in deposit["description"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["paths"]["/api/v1/auth/login"]["post"]["security"] == []
    problem = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert "application/problem+json" in problem
    assert api.get("/api/v1/docs").status_code == 200


def test_auditors_query_the_audit_log_and_the_query_is_audited(
    api: FlaskClient, staff_by_role: dict[str, Staffer], make_member: Callable[..., Member]
) -> None:
    member = make_member()
    api.get(f"/api/v1/members/{member.id}", headers=auth(staff_by_role["manager"]))
    auditor = staff_by_role["auditor"]
    r = api.get(f"/api/v1/audit?target_type=member&target_id={member.id}", headers=auth(auditor))
    assert r.status_code == 200
    (row,) = r.json["items"]
    assert row["action"] == "member.pii_read"
    assert row["actor_name"] == staff_by_role["manager"].username
    assert len(row["hash"]) == 64
    again = api.get("/api/v1/audit?action=audit.read", headers=auth(auditor)).json["items"]
    assert again[-1]["actor_id"] == auditor.id


def test_refused_calls_are_audited(api: FlaskClient, staff_by_role: dict[str, Staffer]) -> None:
    teller = staff_by_role["teller"]
    assert api.get("/api/v1/audit", headers=auth(teller)).status_code == 403
    rows = api.get("/api/v1/audit?action=authz.denied", headers=auth(staff_by_role["auditor"]))
    (row,) = rows.json["items"]
    assert (row["actor_id"], row["target_id"]) == (teller.id, "GET /api/v1/audit")
    assert row["after"] == {"permission": "audit:read"}
