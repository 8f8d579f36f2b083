"""Member reports for staff (issue 16, part 3): a member's statement for a period as PDF
or CSV (``statements:read``, audited), e-mailed to the member's registered e-mail
through the outbox, and the registered e-mail itself (``members:register``, audited;
shown masked without ``pii:read``). docs/reports/members.md.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import ValidationError, fields, validate, validates_schema

from api.v1.schemas import Strict
from api.v1.security import current, request_id, requires, runtime
from core.members import contact
from core.reports import member_statement as statements

blp = Blueprint(
    "api_member_reports", __name__, url_prefix="/api/v1/members", description="Member reports"
)


class PeriodSchema(Strict):
    from_ = fields.Date(
        required=True, data_key="from", metadata={"description": "first value date"}
    )
    to = fields.Date(required=True, metadata={"description": "last value date (included)"})

    @validates_schema
    def _order(self, data: dict[str, Any], **_: Any) -> None:
        if data["to"] < data["from_"]:
            raise ValidationError("the period ends before it starts", field_name="to")


class StatementExportArgs(PeriodSchema):
    format = fields.String(load_default="pdf", validate=validate.OneOf(statements.FORMATS))
    language = fields.String(
        load_default=None,
        validate=validate.OneOf(tuple(statements.TEXTS)),
        metadata={"description": "en or sw; default: the member's language"},
    )


class StatementEmailOut(Strict):
    outbox_id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"description": "the outbox row's status"})
    to = fields.String(required=True, metadata={"description": "the address, masked"})


class EmailIn(Strict):
    email = fields.String(
        required=True, allow_none=True, metadata={"description": "null removes the e-mail"}
    )


class EmailOut(Strict):
    member_id = fields.Integer(required=True)
    email = fields.String(allow_none=True, required=True)
    pii_masked = fields.Boolean(required=True)


@blp.route("/<int:member_id>/statement/export", methods=["GET"])
@requires("statements:read")
@blp.arguments(StatementExportArgs, location="query")
@blp.response(
    200,
    content_type="application/pdf",
    description="the statement as PDF (format=pdf) or text/csv (format=csv)",
)
def export(args: dict[str, Any], member_id: int) -> Any:
    """Every account and loan of the member for the period: opening balance, each
    movement with its running balance, closing balance. Audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        _, data = statements.export_statement(
            s, rt.deps, current(), member_id, args["from_"], args["to"],
            fmt=args["format"], language=args["language"],
        )  # fmt: skip
    name = f"statement-{member_id}-{args['from_']:%Y%m%d}-{args['to']:%Y%m%d}.{args['format']}"
    mimetype = "application/pdf" if args["format"] == "pdf" else "text/csv"
    return Response(
        data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@blp.route("/<int:member_id>/statement/email", methods=["POST"])
@requires("statements:read")
@blp.arguments(PeriodSchema)
@blp.response(202, StatementEmailOut)
def email(body: dict[str, Any], member_id: int) -> Any:
    """Queue the statement (PDF) for the member's registered e-mail; the outbox worker
    renders and sends it. 409 ``no_email`` when none is registered. Audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        message = statements.email_statement(
            s, rt.deps, current(), member_id, body["from_"], body["to"], request_id=request_id()
        )
        answer = {
            "outbox_id": message.id,
            "status": message.status,
            "to": contact.mask_email(message.recipient),
        }
    return answer


@blp.route("/<int:member_id>/email", methods=["PUT"])
@requires("members:register")
@blp.arguments(EmailIn)
@blp.response(200, EmailOut)
def set_email(body: dict[str, Any], member_id: int) -> Any:
    """Register, change or remove (null) the e-mail statements go to. Audited; the
    answer shows it masked without ``pii:read``."""
    rt = runtime()
    me = current()
    with rt.unit_of_work() as s:
        member = contact.set_member_email(s, rt.deps, me, member_id, body["email"])
        email = contact.member_email(rt.deps, member)
    reveal = me.has("pii:read")
    return {
        "member_id": member_id,
        "email": email if reveal else contact.mask_email(email),
        "pii_masked": not reveal,
    }
