"""Bank back office (issue 15, part 4; docs/integrations/banks.md): a member's bank
account for loan payouts, the bank transfers (and settling the ones only staff can), the
M-Pesa float swept to the bank, and the bank statement compared with the ledger.

The bank client is not imported here: the composition root puts a statement reader in
``app.extensions["sacco_bank_statement"]`` (None when the bank is not configured).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from api.v1 import schemas as sc
from api.v1.maker_checker import ask
from api.v1.security import current, requires, runtime
from core.members.backoffice import visible_member
from core.payments.bank import statement as bank_statement
from core.payments.bank import sweeps, transfers
from core.payments.bank.transfers import BankUnavailable
from core.payments.bank.vocabulary import TransferStatus
from db.models_bank import BankTransfer

blp = Blueprint("api_bank", __name__, url_prefix="/api/v1/bank", description="Bank")
MAX_STATEMENT_DAYS = 31


class BankAccountIn(sc.Strict):
    bank_code = fields.String(required=True, metadata={"example": "11"})
    account_number = fields.String(required=True, metadata={"example": "01123456789000"})
    account_name = fields.String(required=True, metadata={"example": "AMINA WANJIRU"})


class BankAccountOut(Schema):
    member_id = fields.Integer(required=True)
    bank_code = fields.String(required=True)
    account = fields.String(required=True, metadata={"description": "****1234"})
    account_name = fields.String(required=True)


class TransferArgs(Schema):
    status = fields.String(
        load_default=TransferStatus.REVIEW, validate=validate.OneOf(list(TransferStatus))
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class TransferOut(Schema):
    id = fields.Integer(required=True)
    reference = fields.String(required=True)
    member_id = fields.Integer(required=True)
    amount_cents = fields.Integer(required=True)
    type = fields.String(required=True)
    bank_code = fields.String(required=True)
    account = fields.String(required=True)
    status = fields.String(required=True)
    bank_reference = fields.String(allow_none=True)
    result_desc = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    open = fields.Boolean(required=True)


class TransferList(Schema):
    items = fields.List(fields.Nested(TransferOut), required=True)


class ResolutionIn(sc.Strict):
    resolution = fields.String(required=True, validate=validate.OneOf(transfers.RESOLUTIONS))
    bank_reference = fields.String(load_default=None, validate=validate.Length(3, 64))
    note = fields.String(load_default="", validate=validate.Length(max=200))

    @validates_schema
    def _paid_needs_reference(self, data: dict[str, Any], **_: Any) -> None:
        if data["resolution"] == "paid" and not data.get("bank_reference"):
            raise ValidationError("a paid transfer needs the bank's reference", "bank_reference")


class SweepIn(sc.Strict):
    amount_cents = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    note = fields.String(load_default="", validate=validate.Length(max=200))


class SweepOut(Schema):
    id = fields.Integer(required=True)
    reference = fields.String(required=True)
    amount_cents = fields.Integer(required=True)
    approval_id = fields.Integer(allow_none=True)
    made_by = fields.String(required=True)
    created_at = fields.String(required=True)


class StatementIn(sc.Strict):
    start = fields.Date(required=True)
    end = fields.Date(required=True)

    @validates_schema
    def _period(self, data: dict[str, Any], **_: Any) -> None:
        if data["end"] < data["start"]:
            raise ValidationError("end is before start", "end")
        if data["end"] - data["start"] > timedelta(days=MAX_STATEMENT_DAYS):
            raise ValidationError(f"at most {MAX_STATEMENT_DAYS} days at a time", "end")


class StatementOut(Schema):
    clean = fields.Boolean(required=True)
    matched = fields.List(fields.String(), required=True)
    amount_differs = fields.List(fields.Dict(), required=True)
    unsettled_here = fields.List(fields.String(), required=True)
    unmatched_lines = fields.List(fields.Dict(), required=True)
    missing = fields.List(fields.String(), required=True)


@blp.route("/members/<int:member_id>/account", methods=["PUT"])
@requires("members:register")
@blp.arguments(BankAccountIn)
@blp.response(200, BankAccountOut)
def set_account(body: dict[str, Any], member_id: int) -> Any:
    """Record (or replace) the bank account a member's loans may be paid to
    (``disburse_to: bank``): bank code (the Kenya Bankers Association code, e.g. ``01``
    KCB, ``11`` Co-op), account number (6-20 digits; stored encrypted), holder's name.
    Audited with the last four digits only."""
    rt = runtime()
    with rt.unit_of_work() as s:
        visible_member(s, current(), member_id)
        row = transfers.set_member_bank_account(
            s, rt.deps, current(), member_id, bank_code=body["bank_code"],
            account_number=body["account_number"], account_name=body["account_name"],
        )  # fmt: skip
        return {"member_id": member_id, "bank_code": row.bank_code,
                "account": f"****{row.account_last4}", "account_name": row.account_name}  # fmt: skip


@blp.route("/transfers", methods=["GET"])
@requires("reconciliation:read")
@blp.arguments(TransferArgs, location="query")
@blp.response(200, TransferList)
def transfer_list(args: dict[str, Any]) -> Any:
    """Bank transfers in one state, newest first; by default those waiting for staff
    (``review``: the bank's status query did not know them, or its answer disagreed)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = s.scalars(
            select(BankTransfer).where(BankTransfer.status == args["status"])
            .order_by(BankTransfer.id.desc()).limit(args["limit"])
        )  # fmt: skip
        return {"items": [transfers.transfer_dict(r) for r in rows]}


@blp.route("/transfers/<int:transfer_id>/resolution", methods=["POST"])
@requires("ledger:adjust")
@blp.arguments(ResolutionIn)
@blp.response(202, sc.ApprovalOut)
def transfer_resolution(body: dict[str, Any], transfer_id: int) -> Any:
    """Ask to settle a transfer waiting for staff: ``paid`` (with the bank's reference from
    the statement or the bank's portal: the hold is posted) or ``not_paid`` (released).
    Another person decides (``bank_transfer.resolve``)."""
    rt = runtime()
    payload: dict[str, Any] = {"transfer_id": transfer_id, "resolution": body["resolution"]}
    if body.get("bank_reference"):
        payload["bank_reference"] = body["bank_reference"]
    with rt.unit_of_work() as s:
        transfers.check_resolution(s, payload)  # 404 / 409 / 422 before asking
    return ask("bank_transfer.resolve", None, payload, body["note"])


@blp.route("/sweeps", methods=["POST"])
@requires("ledger:adjust")
@blp.arguments(sc.IdempotencyHeader, location="headers")
@blp.arguments(SweepIn)
@blp.response(201, SweepOut)
@blp.alt_response(202, schema=sc.ApprovalOut, description="above BANK_SWEEP_APPROVAL_ABOVE_KES")
def sweep(headers: dict[str, Any], body: dict[str, Any]) -> Any:
    """Record the M-Pesa collections float moved to the bank (Dr Bank / Cr M-Pesa
    collections float), quoting the answer's ``reference`` in the org portal's transfer
    so the bank statement matches it. Never more than the float holds (409
    ``insufficient_funds``). Above ``BANK_SWEEP_APPROVAL_ABOVE_KES`` nothing moves yet: a
    ``bank.sweep`` request (202) for another person. The same ``Idempotency-Key`` returns
    the first sweep."""
    rt = runtime()
    threshold = current_app.config["SACCO_SETTINGS"].bank_sweep_approval_above_cents
    if body["amount_cents"] > threshold:
        with rt.unit_of_work() as s:
            sweeps.check_sweep(s, body["amount_cents"])
        pending, status = ask(
            "bank.sweep", None, {"amount_cents": body["amount_cents"]}, body["note"]
        )
        return Response(
            json.dumps(sc.ApprovalOut().dump(pending)), status=status, mimetype="application/json"
        )
    with rt.unit_of_work() as s:
        row = sweeps.sweep_float(
            s, rt.deps, current(), amount_cents=body["amount_cents"],
            idempotency_key=headers["idempotency_key"],
        )  # fmt: skip
        return sweeps.sweep_dict(row), 201


@blp.route("/statement-reconciliations", methods=["POST"])
@requires("reconciliation:read")
@blp.arguments(StatementIn)
@blp.response(200, StatementOut)
def reconcile(body: dict[str, Any]) -> Any:
    """Fetch the SACCO's bank statement for ``start``..``end`` (at most 31 days) and compare
    it with our transfers and sweeps by our reference: ``matched``, ``amount_differs``,
    ``unsettled_here`` (on the statement, still open with us), ``missing`` (settled with us,
    not on the statement) and ``unmatched_lines`` (not ours). Reads only."""
    reader = current_app.extensions.get("sacco_bank_statement")
    if reader is None:
        raise BankUnavailable("the bank is not configured", reason="not_configured")
    lines = reader(body["start"], body["end"])
    rt = runtime()
    with rt.unit_of_work() as s:
        report = bank_statement.reconcile_bank_statement(s, lines, body["start"], body["end"])
    return report.as_dict()
