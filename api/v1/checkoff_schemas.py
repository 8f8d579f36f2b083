"""Request and response schemas of the employer check-off endpoints (``checkoff_views``).

Their own module (not ``schemas``) so that the check-off API is one unit; the shared
shapes (``Strict``, ``NoteIn``, ``ApprovalOut``) come from ``api.v1.schemas``.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.v1.schemas import ApprovalOut, NoteIn, Strict

PERIOD = validate.Regexp(r"^20[0-9]{2}-(0[1-9]|1[0-2])$", error="YYYY-MM")
_ID = validate.Range(1, 2**62)


def _day(description: str = "", **kw: object) -> fields.String:
    """A day as core's dicts give it (ISO 8601 text)."""
    meta = {"format": "date", **({"description": description} if description else {})}
    return fields.String(metadata=meta, **kw)  # type: ignore[arg-type]


class EmployerIn(Strict):
    code = fields.String(
        required=True, metadata={"description": "2-16 of letters, digits, _ and - (upper-cased)"}
    )
    name = fields.String(required=True, validate=validate.Length(1, 120))
    bank_account = fields.String(
        required=True, validate=validate.Length(1, 40),
        metadata={"description": "the account its remittances come from"},
    )  # fmt: skip
    contact_email = fields.String(required=True, validate=validate.Length(3, 254))
    pay_day = fields.Integer(
        load_default=31, strict=True, validate=validate.Range(1, 31),
        metadata={"description": "1-31; 31: the month's last day"},
    )  # fmt: skip


class EmployerOut(Schema):
    id = fields.Integer(required=True)
    code = fields.String(required=True)
    name = fields.String(required=True)
    bank_account = fields.String(required=True)
    contact_email = fields.String(required=True)
    pay_day = fields.Integer(required=True)


class EmployerList(Schema):
    items = fields.List(fields.Nested(EmployerOut), required=True)


class PayrollLinkIn(Strict):
    member_id = fields.Integer(required=True, strict=True, validate=_ID)
    payroll_number = fields.String(required=True, validate=validate.Length(1, 32))


class PayrollLinkOut(Schema):
    member_id = fields.Integer(required=True)
    employer_id = fields.Integer(required=True)
    payroll_number = fields.String(required=True)


class InstructionIn(Strict):
    target = fields.String(
        required=True, validate=validate.OneOf(("loan", "deposits", "shares", "savings"))
    )
    loan_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=_ID)
    amount_cents = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1),
        metadata={"description": "fixed; for a loan, null: the instalment due"},
    )  # fmt: skip


class InstructionsIn(Strict):
    instructions = fields.List(
        fields.Nested(InstructionIn), required=True, validate=validate.Length(max=20)
    )


class InstructionOut(Schema):
    target = fields.String(required=True)
    loan_id = fields.Integer(required=True, allow_none=True)
    amount_cents = fields.Integer(required=True, allow_none=True)
    mode = fields.String(required=True, metadata={"description": "fixed or instalment_due"})


class InstructionsOut(Schema):
    member_id = fields.Integer(required=True)
    instructions = fields.List(
        fields.Nested(InstructionOut), required=True,
        metadata={"description": "in paying order: loans, deposits, shares, savings"},
    )  # fmt: skip


class ScheduleIn(Strict):
    period = fields.String(required=True, validate=PERIOD)


class ScheduleRowOut(Schema):
    payroll_number = fields.String(required=True)
    member_number = fields.String(required=True)
    name = fields.String(required=True)
    amount = fields.Integer(required=True, metadata={"description": "cents"})
    loans = fields.Integer(required=True)
    deposits = fields.Integer(required=True)
    shares = fields.Integer(required=True)
    savings = fields.Integer(required=True)


class ScheduleOut(Schema):
    id = fields.Integer(required=True)
    employer_id = fields.Integer(required=True)
    period = fields.String(required=True)
    deduction_on = _day(required=True)
    due_on = _day(required=True, description="deduction day + 7 days")
    total_cents = fields.Integer(required=True)
    members = fields.Integer(required=True)
    rows = fields.List(fields.Nested(ScheduleRowOut), required=True)


class ExportArgs(Strict):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx")))


class RemittanceUploadIn(Strict):
    """Multipart: the file and the bank transfer it came with."""

    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})
    period = fields.String(required=True, validate=PERIOD)
    bank_reference = fields.String(required=True, validate=validate.Length(1, 64))
    bank_amount_cents = fields.Integer(
        required=True, validate=validate.Range(min=1),
        metadata={"description": "what reached the bank; the file's lines must total it"},
    )  # fmt: skip
    received_on = fields.Date(required=True, metadata={"description": "not after today"})


class RemittanceOut(Schema):
    id = fields.Integer(required=True)
    employer_id = fields.Integer(required=True)
    period = fields.String(required=True)
    checksum = fields.String(required=True, metadata={"description": "SHA-256 of the file"})
    filename = fields.String(required=True)
    bank_reference = fields.String(required=True)
    received_on = _day(required=True)
    total_cents = fields.Integer(required=True)
    lines = fields.Integer(required=True)
    matched_cents = fields.Integer(required=True)
    unmatched_cents = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"description": "pending_approval, "
                                                    "posted or rejected"})  # fmt: skip
    approval_id = fields.Integer(required=True, allow_none=True)


class RemittanceUploadOut(Schema):
    created = fields.Boolean(
        required=True, metadata={"description": "false: this file was uploaded before"}
    )
    remittance = fields.Nested(RemittanceOut, required=True)
    approval = fields.Nested(ApprovalOut, required=True, allow_none=True)


class UnmatchedOut(Schema):
    line_no = fields.Integer(required=True)
    payroll_number = fields.String(required=True, allow_none=True)
    name = fields.String(required=True)
    amount_cents = fields.Integer(required=True)
    reason = fields.String(required=True)


class ShortfallOut(Schema):
    member_id = fields.Integer(required=True)
    payroll_number = fields.String(required=True, allow_none=True)
    expected_cents = fields.Integer(required=True)
    received_cents = fields.Integer(required=True)
    shortfall_cents = fields.Integer(required=True)


class RemittanceReportOut(Schema):
    remittance = fields.Nested(RemittanceOut, required=True)
    unmatched = fields.List(fields.Nested(UnmatchedOut), required=True)
    shortfalls = fields.List(fields.Nested(ShortfallOut), required=True)
    unmatched_cents = fields.Integer(required=True)
    shortfall_cents = fields.Integer(required=True)


class LateArgs(Strict):
    date = fields.Date(
        load_default=None, metadata={"description": "the day to age against (default: today)"}
    )


class LateOut(Schema):
    employer_id = fields.Integer(required=True)
    employer_code = fields.String(required=True)
    employer = fields.String(required=True)
    period = fields.String(required=True)
    due_on = _day(required=True)
    received_on = _day(required=True, allow_none=True)
    days_late = fields.Integer(required=True)
    bucket = fields.String(required=True, metadata={"description": "1-7, 8-30, 31-90, over_90"})
    expected_cents = fields.Integer(required=True)
    outstanding = fields.Boolean(required=True)


class LateList(Schema):
    date = fields.Date(required=True)
    items = fields.List(fields.Nested(LateOut), required=True)


class ReassignIn(NoteIn):
    member_id = fields.Integer(required=True, strict=True, validate=_ID)
    target = fields.String(
        required=True, validate=validate.OneOf(("loan", "savings", "deposits", "shares"))
    )
    loan_id = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=_ID,
        metadata={"description": "with target loan: the member's active loan"},
    )  # fmt: skip
