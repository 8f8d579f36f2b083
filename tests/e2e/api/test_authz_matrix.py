"""Authorization matrix generated from the permission table and the URL map.

Every ``/api/v1`` endpoint x every role (and a partner key, no token, an
expired, a tampered, an unsigned and a revoked token) gets exactly the
expected answer: 401 without valid credentials, 403 without the permission,
something else (the endpoint's own answer) with it. Authorization runs before
any input is read, so an empty body is enough to probe.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token
from sqlalchemy.orm import Session, sessionmaker

from api.v1.security import PUBLIC
from core.kernel.deps import CoreDeps
from core.kernel.permissions import (
    INTEGRATION_GRANTABLE,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    SYSTEM,
)
from core.staff import accounts as staff_core
from db.models import StaffSession
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

Endpoint = tuple[str, str, str | None]  # method, url, permission


def endpoints(app: Flask) -> list[Endpoint]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        view = app.view_functions[rule.endpoint]
        permission = getattr(view, "_permission", None)
        url = re.sub(r"<(?:int:|string:)?[a-z_]+>", "999999", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, url, permission))
    # Logging out ends the caller's session: probe it last.
    return sorted(found, key=lambda e: (e[1].endswith("/logout"), e[1], e[0]))


def call(client: FlaskClient, method: str, url: str, headers: dict[str, str]) -> int:
    body: dict[str, object] | None = {} if method in ("POST", "PUT") else None
    return client.open(url, method=method, headers=headers, json=body).status_code


def test_every_endpoint_declares_a_known_permission(app: Flask) -> None:
    found = endpoints(app)
    assert len(found) >= 25
    missing = [(m, u) for m, u, p in found if p is None]
    assert missing == [], f"endpoints without @requires/@public: {missing}"
    unknown = [(m, u, p) for m, u, p in found if p != PUBLIC and p not in PERMISSIONS]
    assert unknown == []
    public = sorted(u for m, u, p in found if p == PUBLIC)
    assert public == [
        "/api/v1/auth/login",
        "/api/v1/auth/mfa/verify",
        "/api/v1/auth/refresh",
        "/api/v1/docs",
        "/api/v1/docs/static/<path:filename>",  # Swagger UI's own scripts and styles
        "/api/v1/openapi.json",
    ]


def test_role_matrix(app: Flask, client: FlaskClient, staff_by_role: dict[str, Staffer]) -> None:
    problems = []
    for method, url, permission in endpoints(app):
        if permission == PUBLIC:
            continue
        for role in ROLES:
            allowed = permission in ROLE_PERMISSIONS[role]
            status = call(client, method, url, auth(staff_by_role[role]))
            ok = status not in (401, 403) if allowed else status == 403
            if not ok:
                problems.append(f"{role} {method} {url} ({permission}) -> {status}")
    assert problems == []


def test_partner_key_matrix(
    app: Flask,
    client: FlaskClient,
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    with unit_of_work(session_factory) as s:
        _, key = staff_core.create_api_client(
            s, deps, SYSTEM, name="Matrix partner", permissions=sorted(INTEGRATION_GRANTABLE)
        )
    problems = []
    for method, url, permission in endpoints(app):
        if permission == PUBLIC:
            continue
        allowed = permission in INTEGRATION_GRANTABLE
        status = call(client, method, url, {"X-API-Key": key})
        ok = status not in (401, 403) if allowed else status == 403
        if not ok:
            problems.append(f"partner {method} {url} ({permission}) -> {status}")
        bad = call(client, method, url, {"X-API-Key": key[:-2] + "xx"})
        if bad != 401:
            problems.append(f"wrong key {method} {url} -> {bad}")
    assert problems == []


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    claims["sub"] = "1"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_bad_credentials_matrix(
    app: Flask,
    client: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    manager = make_staff("manager")
    revoked = make_staff("manager")
    with unit_of_work(session_factory) as s:
        row = s.get(StaffSession, revoked.session_id)
        assert row is not None
        row.revoked_at = deps.now()
        s.commit()
    with app.app_context():
        expired = create_access_token(
            identity=str(manager.id),
            additional_claims={"sid": manager.session_id, "use": "access", "role": "manager"},
            expires_delta=timedelta(seconds=-5),
        )
    unsigned = jwt.encode(
        {"sub": str(manager.id), "sid": manager.session_id, "use": "access"},
        key="",
        algorithm="none",
    )
    other_key = jwt.encode(
        {"sub": str(manager.id), "sid": manager.session_id, "use": "access", "exp": 2**31},
        key="not-the-server-key-but-long-enough-0123456789",
        algorithm="HS256",
    )
    variants = {
        "none": {},
        "expired": auth(expired),
        "tampered": auth(_tamper(manager.token)),
        "unsigned": auth(unsigned),
        "other key": auth(other_key),
        "revoked": auth(revoked),
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }
    problems = []
    for method, url, permission in endpoints(app):
        if permission == PUBLIC:
            continue
        for name, headers in variants.items():
            status = call(client, method, url, headers)
            if status != 401:
                problems.append(f"{name} {method} {url} -> {status}")
    assert problems == []


@pytest.mark.parametrize("role", ROLES)
def test_auditor_and_every_role_read_only_where_the_table_says(role: str) -> None:
    perms = ROLE_PERMISSIONS[role]
    if role == "auditor":
        writes = {p for p in perms if not p.endswith(":read") and p != "self"}
        assert writes == set()
    # Nobody makes and decides the same request through permissions alone: the
    # self-approval rule in core.approvals.engine covers roles that hold both.
    assert all(p in PERMISSIONS for p in perms)
