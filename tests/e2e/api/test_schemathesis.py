"""Schemathesis against the generated OpenAPI document, in-process over WSGI.

Bounded: a few examples per operation and generation mode, no shrinking, a
fixed seed. Every operation is called as a member of staff who holds its
permission (so the calls get past authorization into the handlers), with real
ids in the paths. Checks: no 5xx, and every response matches its documented
schema (errors included, as application/problem+json).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.orm import Session, sessionmaker

from api.v1.security import PUBLIC
from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.permissions import ROLE_PERMISSIONS, SYSTEM
from core.staff import accounts as staff_core
from db.models import Member
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer
from tests.e2e.api.test_authz_matrix import endpoints
from tests.e2e.api.test_members_api import JPEG, upload

EXAMPLES = 4
SKIP = {("POST", "/api/v1/auth/logout")}  # would end the session every other call uses


def _permissions(app: Flask) -> dict[tuple[str, str], str | None]:
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods or ():
                found[(method, path)] = getattr(
                    app.view_functions[rule.endpoint], "_permission", None
                )
    return found


def _fuzz(
    strategy: Any,
    key: tuple[str, str],
    mode: str,
    statuses: dict[tuple[str, str], set[int]],
    failures: list[str],
) -> Callable[[], None]:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call()
        statuses.setdefault(key, set()).add(response.status_code)
        try:
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )
        except Exception as exc:  # collect every failing operation, not just the first
            failures.append(f"{case.method} {case.formatted_path} [{mode}]: {exc}"[:600])

    return run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_operation_conforms_to_its_schema_and_never_5xx(
    app: Flask,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    assert endpoints(app)  # the same URL map the authorization matrix walks
    staff = {role: make_staff(role) for role in ROLE_PERMISSIONS}
    member = make_member(status="active")
    doc = upload(app.test_client(), staff["teller"], member.id, "id_front", JPEG).json
    with unit_of_work(session_factory) as s:
        req = approvals.request_approval(
            s, deps, staff_core.principal_for(staff_core.get_staff(s, staff["teller"].id)),
            "member.pin_reset", payload={}, member_id=member.id, large_threshold_cents=10**9,
        )  # fmt: skip
        client, _ = staff_core.create_api_client(
            s, deps, SYSTEM, name="Fuzz partner", permissions=["members:read"]
        )
    ids = {
        "member_id": member.id,
        "document_id": doc["id"],
        "request_id": req.id,
        "staff_id": staff["auditor"].id,
        "client_id": client.id,
    }
    permissions = _permissions(app)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    statuses: dict[tuple[str, str], set[int]] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        key = (operation.method.upper(), operation.path)
        if key in SKIP:
            continue
        operations += 1
        permission = permissions[key]
        headers: dict[str, str] = {}
        if permission != PUBLIC:
            role = next(
                r for r in ("manager", "admin", "auditor", "teller", "loan_officer")
                if permission in ROLE_PERMISSIONS[r]
            )  # fmt: skip
            headers["Authorization"] = f"Bearer {staff[role].token}"
        path_parameters = {p.name: ids[p.name] for p in operation.path_parameters if p.name in ids}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(
                generation_mode=mode, headers=headers, path_parameters=path_parameters or None
            )

            run = _fuzz(strategy, key, mode.value, statuses, failures)
            try:
                run()
            except Unsatisfiable:
                # Nothing left to make invalid (no body, fixed path and headers).
                assert mode is schemathesis.GenerationMode.NEGATIVE, key
    assert operations >= 25
    assert failures == []
    reached = sorted(
        f"{m} {p}" for (m, p), codes in statuses.items() if any(c < 300 for c in codes)
    )
    assert len(reached) >= 15, reached  # most operations got past validation into the handler
