"""M-Pesa back office: compare the org portal's statement export with the ledger, and
the SIM-swap events (withdrawals the guard stopped) as a work queue.

(Suspense items, the other M-Pesa staff task, are under ``/suspense`` with the
maker-checker requests.)
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.member_views import request_from_elsewhere
from api.v1.security import current, requires, runtime
from core import mpesa_statement, sim_swap_events

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
    rt = runtime()
    with rt.session() as s:
        report = mpesa_statement.import_statement(s, current(), data)
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
    with rt.session() as s:
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
    with rt.session() as s:
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
    with rt.session() as s:
        member_id = sim_swap_events.event_member_id(s, current(), event_id)
    payload = {"event_id": event_id, "in_person": body["in_person"]}
    return request_from_elsewhere("sim_swap.clear", member_id, payload, body["note"])
