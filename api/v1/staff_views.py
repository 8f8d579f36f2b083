"""Staff accounts and partner API keys (administrators ask; a manager approves those that
can move money or read personal data)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import approval_dict
from api.v1.security import api_state, current, requires, runtime
from core.messaging import webhooks
from core.staff import accounts as staff_core
from core.staff import alerts as staff_alerts

blp = Blueprint("api_staff", __name__, url_prefix="/api/v1", description="Staff and API keys")

StaffPage = sc.page_schema(sc.StaffOut, "StaffPage")


@blp.route("/staff", methods=["GET"])
@requires("staff:read")
@blp.arguments(sc.PageArgs, location="query")
@blp.response(200, StaffPage)
def list_staff(args: dict[str, Any]) -> Any:
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = staff_core.list_staff(
            s, limit=args["limit"] + 1, after_id=sc.decode_cursor(args["cursor"])
        )
    return sc.page(rows, args["limit"])


@blp.route("/staff", methods=["POST"])
@requires("staff:manage")
@blp.arguments(sc.StaffIn)
@blp.response(202, sc.ApprovalOut)
@blp.alt_response(201, schema=sc.StaffOut, description="a role that needs no approval")
def create_staff(body: dict[str, Any]) -> Any:
    """Ask for a staff account with a first password (12+ characters, not a common one).

    An account that can move money, read personal data or grant access (every role
    today) is made disabled, with a pending request (202) that another person holding
    ``access:approve`` (a manager) approves under ``/approvals``; the approval enables it.
    The person must change the first password at first sign-in before anything else."""
    rt = runtime()
    with rt.unit_of_work() as s:
        staff, req = staff_core.request_staff_account(
            s, rt.deps, current(), **body, large_threshold_cents=api_state().large_threshold_cents
        )
        if req is None:
            return _json(sc.StaffOut().dump(staff), 201)
        return approval_dict(req)


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


@blp.route("/staff/<int:staff_id>/active", methods=["PUT"])
@requires("staff:manage")
@blp.arguments(sc.ActiveIn)
@blp.response(200, sc.StaffOut)
def set_active(body: dict[str, Any], staff_id: int) -> Any:
    """Disable (ending every session) or re-enable an account."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return staff_core.set_staff_active(s, rt.deps, current(), staff_id, body["active"])


@blp.route("/staff/<int:staff_id>/email", methods=["PUT"])
@requires("staff:manage")
@blp.arguments(sc.StaffEmailIn)
@blp.response(200, sc.StaffOut)
def set_email(body: dict[str, Any], staff_id: int) -> Any:
    """Set the address this person's alerts go to, or remove it (``null``): requests
    waiting for a permission they hold, and, for holders of ``ledger:adjust``, M-Pesa
    payouts that failed or wait for staff. Audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return staff_alerts.set_staff_email(s, rt.deps, current(), staff_id, body["email"])


@blp.route("/staff/<int:staff_id>/unlock", methods=["POST"])
@requires("staff:manage")
@blp.response(200, sc.StaffOut)
def unlock(staff_id: int) -> Any:
    """Lift a lockout after failed sign-ins."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return staff_core.unlock_staff(s, rt.deps, current(), staff_id)


@blp.route("/staff/<int:staff_id>/mfa-reset", methods=["POST"])
@requires("staff:manage")
@blp.response(200, sc.StaffOut)
def mfa_reset(staff_id: int) -> Any:
    """Clear a lost authenticator; the person enrols again at the next sign-in."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return staff_core.reset_mfa(s, rt.deps, current(), staff_id)


@blp.route("/api-clients", methods=["GET"])
@requires("apiclients:manage")
@blp.response(200, sc.page_schema(sc.ApiClientOut, "ApiClientPage"))
def list_clients() -> Any:
    rt = runtime()
    with rt.unit_of_work() as s:
        return {"items": staff_core.list_api_clients(s), "next_cursor": None}


@blp.route("/api-clients", methods=["POST"])
@requires("apiclients:manage")
@blp.arguments(sc.ApiClientIn)
@blp.response(202, sc.ApiClientCreated)
@blp.alt_response(201, schema=sc.ApiClientCreated, description="permissions needing no approval")
def create_client(body: dict[str, Any]) -> Any:
    """Create a partner key, scoped to some permissions. The key is shown only here.

    A key that can move money or read personal data (every grantable permission today)
    works only once another person holding ``access:approve`` (a manager) approves the
    pending request in the answer (202)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        client, key, req = staff_core.request_api_client(
            s, rt.deps, current(), **body, large_threshold_cents=api_state().large_threshold_cents
        )
        out = {"client": client, "api_key": key, "approval": approval_dict(req) if req else None}
        if req is None:
            return _json(sc.ApiClientCreated().dump(out), 201)
        return out


@blp.route("/api-clients/<int:client_id>", methods=["DELETE"])
@requires("apiclients:manage")
@blp.response(204)
def revoke_client(client_id: int) -> Any:
    """Revoke a partner key at once."""
    rt = runtime()
    with rt.unit_of_work() as s:
        staff_core.revoke_api_client(s, rt.deps, current(), client_id)
    return None


@blp.route("/webhooks", methods=["GET"])
@requires("webhooks:manage")
@blp.response(200, sc.page_schema(sc.WebhookOut, "WebhookPage"))
def list_webhooks() -> Any:
    """Partners' webhook endpoints, active or not (never their secrets)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return {"items": webhooks.list_endpoints(s), "next_cursor": None}


@blp.route("/webhooks", methods=["POST"])
@requires("webhooks:manage")
@blp.arguments(sc.WebhookIn)
@blp.response(201, sc.WebhookCreated)
def register_webhook(body: dict[str, Any]) -> Any:
    """Register a partner's URL for signed event deliveries (deposit.received,
    withdrawal.paid, withdrawal.failed). The signing secret is shown only here."""
    rt = runtime()
    with rt.unit_of_work() as s:
        endpoint, secret = webhooks.register_endpoint(
            s, rt.deps, name=body["name"], url=body["url"], events=body["events"],
            actor=current(), require_https=api_state().production,
        )  # fmt: skip
    return {"endpoint": endpoint, "secret": secret}


@blp.route("/webhooks/<int:endpoint_id>", methods=["DELETE"])
@requires("webhooks:manage")
@blp.response(204)
def deactivate_webhook(endpoint_id: int) -> Any:
    """Stop deliveries to an endpoint at once; messages still queued for it are dropped."""
    rt = runtime()
    with rt.unit_of_work() as s:
        webhooks.deactivate_endpoint(s, rt.deps, current(), endpoint_id)
    return None
