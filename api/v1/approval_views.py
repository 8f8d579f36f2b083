"""Maker-checker requests: list, read, approve, reject; and the ledger-side requests."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from flask import current_app
from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import approval_dict, ask, decision_ports
from api.v1.security import api_state, current, requires, runtime
from core.approvals import engine as approvals
from core.payments.mpesa import flows as mpesa

log = logging.getLogger(__name__)
blp = Blueprint("api_approvals", __name__, url_prefix="/api/v1", description="Maker-checker")


@blp.route("/approvals", methods=["GET"])
@requires("approvals:read")
@blp.arguments(sc.ApprovalArgs, location="query")
@blp.response(200, sc.page_schema(sc.ApprovalOut, "ApprovalPage"))
def list_approvals(args: dict[str, Any]) -> Any:
    """Requests, pending ones by default, oldest first."""
    rt = runtime()
    status = None if args["status"] == "all" else args["status"]
    with rt.unit_of_work() as s:
        rows = approvals.list_requests(
            s, current(), status=status, limit=args["limit"] + 1,
            after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
    result = sc.page(rows, args["limit"])
    result["items"] = [approval_dict(r) for r in result["items"]]
    return result


@blp.route("/approvals/<int:request_id>", methods=["GET"])
@requires("approvals:read")
@blp.response(200, sc.ApprovalOut)
def get_approval(request_id: int) -> Any:
    rt = runtime()
    with rt.unit_of_work() as s:
        return approval_dict(approvals.visible_request(s, current(), request_id))


@blp.route("/approvals/<int:request_id>/approve", methods=["POST"])
@requires("approvals:decide")
@blp.arguments(sc.NoteIn)
@blp.response(200, sc.ApprovalOut)
def approve(body: dict[str, Any], request_id: int) -> Any:
    """Approve another person's request: the action runs now, exactly once.

    ``status`` is ``approved``, or ``failed`` with ``result.error`` when the
    action was refused (nothing of it was done)."""
    rt = runtime()
    facts = _facts(request_id)
    with rt.unit_of_work() as s:
        ports = decision_ports(s, request_id)
        req = approvals.decide(
            s, rt.deps, current(), request_id, approve=True, note=body["note"], facts=facts,
            ports=ports,
        )  # fmt: skip
        out = approval_dict(req)
    _after_approval(req.action, req.member_id, req.status)
    return out


def _after_approval(action: str, member_id: int | None, status: str) -> None:
    """What channels asked to hear once an approval has committed
    (``app.extensions["sacco_after_approval"]``: the USSD ends the live session of a
    member moved to a new phone). Committed already: a listener that fails is logged."""
    for listener in current_app.extensions.get("sacco_after_approval", ()):
        try:
            listener(action, member_id, status)
        except Exception:
            log.exception("after-approval listener failed for %s", action)


def _facts(request_id: int) -> dict[str, str]:
    """Checks that call out (the SIM-swap provider), made by core before the decision's
    transaction opens: ``core.approvals.engine.decision_facts`` with the checker the composition
    root put in ``app.extensions["sacco_sim_swap"]`` (none: not checked)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return approvals.decision_facts(
            s, rt.deps, current(), request_id,
            sim_swap=current_app.extensions.get("sacco_sim_swap"), policy=api_state().sim_swap,
        )  # fmt: skip


@blp.route("/approvals/<int:request_id>/reject", methods=["POST"])
@requires("approvals:decide")
@blp.arguments(sc.NoteIn)
@blp.response(200, sc.ApprovalOut)
def reject(body: dict[str, Any], request_id: int) -> Any:
    rt = runtime()
    with rt.unit_of_work() as s:
        req = approvals.decide(s, rt.deps, current(), request_id, approve=False, note=body["note"])
        return approval_dict(req)


@blp.route("/ledger/adjustments", methods=["POST"])
@requires("ledger:adjust")
@blp.arguments(sc.AdjustmentIn)
@blp.response(202, sc.ApprovalOut)
def adjustment(body: dict[str, Any]) -> Any:
    """Ask for a manual entry between two SACCO accounts (by chart code); a checker decides
    (a manager above the threshold)."""
    note = body.pop("note")
    return ask("ledger.adjustment", None, body, note)


@blp.route("/suspense", methods=["GET"])
@requires("suspense:reassign")
@blp.arguments(sc.SuspenseArgs, location="query")
@blp.response(200, sc.page_schema(sc.SuspenseItemOut, "SuspensePage"))
def suspense_items(args: dict[str, Any]) -> Any:
    """M-Pesa payments parked in suspense (2200): unknown account or member not allowed."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = mpesa.list_suspense(
            s, status=args["status"], limit=args["limit"] + 1,
            after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
    more = len(rows) > args["limit"]
    rows = rows[: args["limit"]]
    return {
        "items": [{**asdict(i), "id": i.item_id} for i in rows],
        "next_cursor": sc.encode_cursor(rows[-1].item_id) if more else None,
    }


@blp.route("/suspense/reassignments", methods=["POST"])
@requires("suspense:reassign")
@blp.arguments(sc.SuspenseIn)
@blp.response(202, sc.ApprovalOut)
def suspense(body: dict[str, Any]) -> Any:
    """Ask to move a parked payment (a suspense item) to a member's account; another
    person decides (a manager above the threshold)."""
    note = body.pop("note")
    member_id = body.pop("member_id")
    return ask("suspense.reassign", member_id, body, note)
