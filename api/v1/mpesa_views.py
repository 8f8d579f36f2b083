"""M-Pesa back office: compare the org portal's statement export with the ledger.

(Suspense items, the other M-Pesa staff task, are under ``/suspense`` with the
maker-checker requests.)
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.security import current, requires, runtime
from core import mpesa_statement

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
