"""M-Pesa back office: compare the org portal's statement export with the ledger, the
SIM-swap events (withdrawals the guard stopped) as a work queue, and the payouts that
only staff can settle (``review``).

(Suspense items, the other M-Pesa staff task, are under ``/suspense`` with the
maker-checker requests.)
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import ask
from api.v1.security import current, requires, runtime
from core.kernel.errors import InvalidInput
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa import statement as mpesa_statement
from core.risk import events as sim_swap_events
from integrations.mpesa.statement import MalformedStatement, read_statement

blp = Blueprint("api_mpesa", __name__, url_prefix="/api/v1/mpesa", description="M-Pesa")


@blp.route("/statement-reconciliations", methods=["POST"])
@requires("reconciliation:read")
@blp.arguments(sc.UploadIn, location="files")
@blp.response(200, sc.StatementReconciliationOut)
def reconcile_statement(files: dict[str, Any]) -> Any:
    """Upload an M-Pesa org portal statement (CSV, multipart ``file``, at most 2 MiB)
    and get back what differs from the ledger: receipts missing on either side and
    amounts that differ. Changes nothing but the audit log; ``clean`` is true when
    the two agree. Larger statements: split by date, or ``manage.py reconcile-statement``."""
    upload_file = files["file"]
    try:
        data = upload_file.read() if hasattr(upload_file, "read") else b""
    finally:
        if hasattr(upload_file, "close"):
            upload_file.close()
    try:
        statement = read_statement(data)
    except MalformedStatement as exc:
        raise InvalidInput(
            f"cannot read the statement: {exc}", field="file", reason="malformed_statement"
        ) from None
    rt = runtime()
    with rt.unit_of_work() as s:
        report = mpesa_statement.import_statement(s, rt.deps, current(), statement)
    return {
        "clean": report.clean,
        "lines": report.lines,
        "skipped": report.skipped,
        "matched": report.matched,
        "charge_lines": report.charge_lines,
        "charges_cents": report.charges_cents,
        "matched_by_account": [
            {"receipt": receipt, "stk_request_id": stk_id}
            for receipt, stk_id in report.matched_by_account
        ],
        "missing_in_ledger": [
            {
                "receipt": line.receipt,
                "completed_at": line.completed_at,
                "amount_cents": line.paid_in_cents - line.withdrawn_cents,
                "details": line.details,
            }
            for line in report.missing_in_ledger
        ],
        "missing_in_statement": [
            {"kind": kind, "receipt": receipt, "amount_cents": cents}
            for kind, receipt, cents in report.missing_in_statement
        ],
        "amount_mismatches": [
            {"receipt": receipt, "ledger_cents": ours, "statement_cents": theirs}
            for receipt, ours, theirs in report.amount_mismatches
        ],
    }


@blp.route("/sim-swap-events", methods=["GET"])
@requires("sim_swap:read")
@blp.arguments(sc.SimSwapEventArgs, location="query")
@blp.response(200, sc.page_schema(sc.SimSwapEventOut, "SimSwapEventPage"))
def sim_swap_event_list(args: dict[str, Any]) -> Any:
    """Withdrawals the SIM-swap guard refused (or let through on a failed check), open
    ones by default, oldest first; branch-bound staff see their branch's members only.
    The member was told by SMS to come to the office with their ID."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = sim_swap_events.list_events(
            s, current(), status=args["status"], limit=args["limit"] + 1,
            after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
    result = sc.page(rows, args["limit"])
    result["items"] = [asdict(e) for e in result["items"]]
    return result


@blp.route("/sim-swap-events/<int:event_id>/review", methods=["POST"])
@requires("sim_swap:review")
@blp.arguments(sc.NoteIn)
@blp.response(200, sc.SimSwapEventOut)
def sim_swap_event_review(body: dict[str, Any], event_id: int) -> Any:
    """Close an event with what you found (once; audited). It does not lift the guard:
    withdrawals resume when the swap is older than the SACCO's window, or once a
    clearance (below) is approved."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return asdict(
            sim_swap_events.review_event(s, rt.deps, current(), event_id, note=body["note"])
        )


@blp.route("/sim-swap-events/<int:event_id>/clearance", methods=["POST"])
@requires("sim_swap:review")
@blp.arguments(sc.SimSwapClearanceIn)
@blp.response(202, sc.ApprovalOut)
def sim_swap_event_clearance(body: dict[str, Any], event_id: int) -> Any:
    """Ask to let this member withdraw again before the SIM-swap window ends, after seeing
    their ID at the counter (``in_person``: true). Another person decides; once approved,
    withdrawals from this phone pass the guard unless the SIM is swapped again."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member_id = sim_swap_events.event_member_id(s, current(), event_id)
    payload = {"event_id": event_id, "in_person": body["in_person"]}
    return ask("sim_swap.clear", member_id, payload, body["note"])


@blp.route("/payouts", methods=["GET"])
@requires("reconciliation:read")
@blp.arguments(sc.PayoutArgs, location="query")
@blp.response(200, sc.page_schema(sc.PayoutOut, "PayoutPage"))
def payout_list(args: dict[str, Any]) -> Any:
    """B2C payouts, by default those waiting for staff (``review``): the request may have
    reached M-Pesa and no result or status answer settled it. They are never sent again
    by themselves (a second request could pay twice); look for the payment in the org
    portal, then ask for a resolution (below). The member's money stays held meanwhile."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = mpesa.list_payouts(
            s, status=args["status"], branch=current().branch, limit=args["limit"] + 1,
            after_id=sc.decode_cursor(args["cursor"]),
        )  # fmt: skip
    more = len(rows) > args["limit"]
    rows = rows[: args["limit"]]
    return {
        "items": [{**asdict(p), "id": p.payout_id} for p in rows],
        "next_cursor": sc.encode_cursor(rows[-1].payout_id) if more else None,
    }


@blp.route("/payouts/<int:payout_id>/resolution", methods=["POST"])
@requires("ledger:adjust")
@blp.arguments(sc.PayoutResolutionIn)
@blp.response(202, sc.ApprovalOut)
def payout_resolution(body: dict[str, Any], payout_id: int) -> Any:
    """Ask to settle a payout waiting for staff: ``resend`` it, ``release`` the hold, or
    record it ``paid`` with its M-Pesa receipt. Another person decides (a manager above
    the threshold); it fails if a result settled the payout meanwhile."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member_id = mpesa.payout_member_id(s, payout_id)
    payload: dict[str, Any] = {"payout_id": payout_id, "resolution": body["resolution"]}
    if body.get("receipt"):
        payload["receipt"] = body["receipt"]
    return ask("payout.resolve", member_id, payload, body["note"])


@blp.route("/suspense-items/<int:item_id>/duplicate", methods=["POST"])
@requires("suspense:reassign")
@blp.arguments(sc.NoteIn)
@blp.response(202, sc.ApprovalOut)
def suspense_duplicate(body: dict[str, Any], item_id: int) -> Any:
    """Ask to close a parked payment (reason ``possible_duplicate``) as the same payment as
    the STK push it is linked to, because the org portal lists one payment: its parking
    entry is reversed (out of suspense and the float). Another person decides. If they are
    two payments, move it to the member instead (``/api/v1/suspense/reassignments``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member_id = mpesa.possible_duplicate_member_id(s, item_id)
    return ask("suspense.duplicate", member_id, {"item_id": item_id}, body["note"])
