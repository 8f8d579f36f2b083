"""Separation of duties holds against the administrator.

Seen before: the administrator alone created an API key holding ``deposits:cash`` and
credited KES 50,000 with it, and created a manager account and read unmasked national IDs
with it. Now an account or key that can move money or read personal data is asked for by
one person (``staff:manage`` / ``apiclients:manage``) and approved by another who holds
``access:approve`` (a manager); until then it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.staff import accounts as staff_core
from core.staff.permissions import (
    APPROVER_PERMISSION,
    INTEGRATION_GRANTABLE,
    PERMISSION_RISK,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    grant_needs_approval,
    permissions_for_role,
)
from db.models import Member
from db.session import unit_of_work
from tests.e2e.api.conftest import PASSWORD, Staffer, auth, staff_row

NEW_PASSWORD = "first password from admin"


def login(api: FlaskClient, username: str, password: str = NEW_PASSWORD):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/auth/login", json={"username": username, "password": password})


def approve(api: FlaskClient, who: Staffer, request_id: int):  # type: ignore[no-untyped-def]
    return api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(who), json={})


# ------------------------------------------------------------------ the rule, as data


def test_every_permission_says_whether_granting_it_needs_a_second_person() -> None:
    assert set(PERMISSION_RISK) == set(PERMISSIONS)
    assert set(PERMISSION_RISK.values()) <= {"money", "personal_data", "access", "none"}
    for permission in ("deposits:cash", "ledger:adjust", "suspense:reassign", "approvals:decide"):
        assert PERMISSION_RISK[permission] == "money", permission
    for permission in ("pii:read", "members:read", "statements:read", "documents:read"):
        assert PERMISSION_RISK[permission] == "personal_data", permission
    for permission in ("staff:manage", "apiclients:manage", APPROVER_PERMISSION):
        assert PERMISSION_RISK[permission] == "access", permission
    assert not grant_needs_approval({"self", "staff:read"})
    # Every role today moves money, reads personal data or grants access: all need approval.
    assert all(grant_needs_approval(permissions_for_role(role)) for role in ROLES)
    assert all(grant_needs_approval({p}) for p in INTEGRATION_GRANTABLE)


def test_who_asks_for_access_never_approves_it() -> None:
    askers = {r for r in ROLES if {"staff:manage", "apiclients:manage"} & ROLE_PERMISSIONS[r]}
    approvers = {r for r in ROLES if APPROVER_PERMISSION in ROLE_PERMISSIONS[r]}
    assert askers == {"admin"} and approvers == {"manager"}
    assert "approvals:decide" in ROLE_PERMISSIONS["manager"]


def test_the_core_verb_refuses_a_member_of_staff_making_such_an_account_directly(
    session_factory: sessionmaker[Session], deps: CoreDeps, make_staff: Callable[..., Staffer]
) -> None:
    admin = make_staff("admin")
    with unit_of_work(session_factory) as s:
        actor = staff_core.principal_for(staff_row(session_factory, admin.id))
        with pytest.raises(staff_core.ApprovalRequired):
            staff_core.create_staff(s, deps, actor, username="sneaky.manager", full_name="S",
                                    role="manager", password=NEW_PASSWORD)  # fmt: skip
        with pytest.raises(staff_core.ApprovalRequired):
            staff_core.create_api_client(s, deps, actor, name="Sneaky till",
                                         permissions=["deposits:cash"])  # fmt: skip


# ------------------------------------------------------------------------ API keys


def test_the_administrator_alone_cannot_make_a_key_that_moves_money(
    api: FlaskClient,
    staff_by_role: dict[str, Staffer],
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    admin, manager = staff_by_role["admin"], staff_by_role["manager"]
    member = make_member(status="active")
    made = api.post("/api/v1/api-clients", headers=auth(admin),
                    json={"name": "Till app", "permissions": ["deposits:cash"]})  # fmt: skip
    assert made.status_code == 202
    key = {"X-API-Key": made.json["api_key"]}  # shown once, now; it works once approved
    request = made.json["approval"]
    assert request["status"] == "pending" and request["action"] == "apiclient.create"
    assert request["checker_permission"] == APPROVER_PERMISSION
    assert request["payload"]["permissions"] == ["deposits:cash"]
    assert made.json["client"]["is_active"] is False
    url = f"/api/v1/members/{member.id}/deposits"
    cash = {"json": {"amount_cents": 50_000_00}}
    assert (
        api.post(url, headers={**key, "Idempotency-Key": "key-cash-0001"}, **cash).status_code
        == 401
    )
    # Neither the administrator nor a loan officer (a checker of other things) approves it.
    assert approve(api, admin, request["id"]).status_code == 403
    assert approve(api, make_staff("loan_officer"), request["id"]).status_code == 403
    ok = approve(api, manager, request["id"])
    assert ok.status_code == 200 and ok.json["status"] == "approved"
    assert (
        api.post(url, headers={**key, "Idempotency-Key": "key-cash-0001"}, **cash).status_code
        == 201
    )
    listed = api.get("/api/v1/api-clients", headers=auth(admin)).json["items"]
    assert [(c["name"], c["is_active"]) for c in listed] == [("Till app", True)]


def test_a_key_revoked_while_it_waits_cannot_be_approved_into_life(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    admin, manager = staff_by_role["admin"], staff_by_role["manager"]
    made = api.post("/api/v1/api-clients", headers=auth(admin),
                    json={"name": "Check-off", "permissions": ["members:read"]}).json  # fmt: skip
    assert api.delete(f"/api/v1/api-clients/{made['client']['id']}",
                      headers=auth(admin)).status_code == 204  # fmt: skip
    late = approve(api, manager, made["approval"]["id"])
    assert late.json["status"] == "failed"
    assert api.get("/api/v1/members", headers={"X-API-Key": made["api_key"]}).status_code == 401


# ------------------------------------------------------------------ staff accounts


def test_the_administrator_alone_cannot_make_a_manager_who_reads_national_ids(
    api: FlaskClient,
    staff_by_role: dict[str, Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    admin, manager = staff_by_role["admin"], staff_by_role["manager"]
    member = make_member(status="active")
    made = api.post("/api/v1/staff", headers=auth(admin), json={
        "username": "puppet.manager", "full_name": "Puppet Manager", "role": "manager",
        "password": NEW_PASSWORD})  # fmt: skip
    assert made.status_code == 202
    request = made.json
    assert request["action"] == "staff.create" and request["status"] == "pending"
    assert request["payload"]["role"] == "manager"
    assert "password" not in str(request["payload"]) and NEW_PASSWORD not in str(request)
    staff_id = request["payload"]["staff_id"]
    assert login(api, "puppet.manager").status_code == 401  # the account does nothing yet
    enable = api.put(f"/api/v1/staff/{staff_id}/active", headers=auth(admin), json={"active": True})
    assert enable.status_code == 403 and enable.json["code"] == "approval_required"
    assert approve(api, admin, request["id"]).status_code == 403
    listed = {s["username"]: s for s in api.get("/api/v1/staff", headers=auth(admin)).json["items"]}
    assert listed["puppet.manager"]["pending_approval_id"] == request["id"]
    assert listed["puppet.manager"]["is_active"] is False
    ok = approve(api, manager, request["id"])
    assert ok.json["status"] == "approved"
    assert staff_row(session_factory, staff_id).is_active
    signed_in = login(api, "puppet.manager")
    assert signed_in.status_code == 200 and signed_in.json["stage"] == "mfa_enrol"
    # and what it then reads is audited as always (the approval is on record with both names)
    assert api.get(f"/api/v1/approvals/{request['id']}", headers=auth(admin)).json[
        "checker_id"
    ] == (manager.id)
    del member


def test_an_administrator_cannot_make_a_second_administrator_alone_either(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    """A second administrator would ask for accounts that the first could then approve."""
    admin = staff_by_role["admin"]
    made = api.post("/api/v1/staff", headers=auth(admin), json={
        "username": "admin.two", "full_name": "Admin Two", "role": "admin",
        "password": NEW_PASSWORD})  # fmt: skip
    assert made.status_code == 202
    assert login(api, "admin.two").status_code == 401


def test_a_refused_account_never_becomes_usable(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    admin, manager = staff_by_role["admin"], staff_by_role["manager"]
    request = api.post("/api/v1/staff", headers=auth(admin), json={
        "username": "new.teller", "full_name": "New Teller", "role": "teller",
        "branch": "Nairobi", "password": NEW_PASSWORD}).json  # fmt: skip
    no = api.post(f"/api/v1/approvals/{request['id']}/reject", headers=auth(manager),
                  json={"note": "nobody of that name works here"})  # fmt: skip
    assert no.json["status"] == "rejected"
    staff_id = request["payload"]["staff_id"]
    for active in (True, False):
        r = api.put(
            f"/api/v1/staff/{staff_id}/active", headers=auth(admin), json={"active": active}
        )
        assert r.status_code == 403
    assert login(api, "new.teller").status_code == 401


def test_asking_needs_staff_manage_and_deciding_needs_access_approve(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    body = {"username": "x.teller", "full_name": "X", "role": "teller", "password": PASSWORD}
    for role in ("manager", "loan_officer", "teller", "auditor"):
        assert (
            api.post("/api/v1/staff", headers=auth(staff_by_role[role]), json=body).status_code
            == 403
        )
