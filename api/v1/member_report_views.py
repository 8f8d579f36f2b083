"""Member reports for staff (issue 16, part 3): a member's statement for a period as PDF
or CSV (``statements:read``, audited), e-mailed to the member's registered e-mail
through the outbox, and the registered e-mail itself (``members:register``, audited;
shown masked without ``pii:read``). docs/reports/members.md.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.v1.schemas import Strict
from api.v1.security import current, request_id, requires, runtime
from core.kernel.errors import NotFound
from core.members import contact
from core.reports import charts, membership, par_history
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


# --------------------------------------------------------------- membership figures

reports_blp = Blueprint(
    "api_membership_reports",
    __name__,
    url_prefix="/api/v1/reports",
    description="Membership figures and charts",
)


class MonthRangeArgs(PeriodSchema):
    at = fields.Date(
        load_default=None, metadata={"description": "date of the deposit bands; default: to"}
    )


class ChartArgs(PeriodSchema):
    format = fields.String(load_default="png", validate=validate.OneOf(tuple(charts.FORMATS)))


class MonthGrowthOut(Schema):
    month = fields.String(required=True)
    joined = fields.Integer(required=True)
    exited = fields.Integer(required=True)
    members_at_end = fields.Integer(required=True)


class BandOut(Schema):
    low_cents = fields.Integer(required=True)
    high_cents = fields.Integer(allow_none=True, required=True)
    members = fields.Integer(required=True)
    total_cents = fields.Integer(required=True)


class MembershipOut(Schema):
    growth = fields.List(fields.Nested(MonthGrowthOut), required=True)
    states = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    bands_at = fields.Date(required=True)
    deposit_bands = fields.List(fields.Nested(BandOut), required=True)


@reports_blp.route("/membership", methods=["GET"])
@requires("reports:read")
@reports_blp.arguments(MonthRangeArgs, location="query")
@reports_blp.response(200, MembershipOut)
def membership_report(args: dict[str, Any]) -> Any:
    """Joined and exited per month (``from``..``to``, at most 120 months), members now by
    state (active, dormant, suspended, pending KYC, exited), and members by their
    deposits at ``at`` in the bands of ``core.reports.membership.DEPOSIT_BANDS_CENTS``."""
    at = args["at"] or args["to"]
    with runtime().unit_of_work() as s:
        return {
            "growth": membership.growth(s, args["from_"], args["to"]),
            "states": membership.by_state(s),
            "bands_at": at,
            "deposit_bands": membership.deposits_by_band(s, at),
        }


@reports_blp.route("/charts/<string:name>", methods=["GET"])
@requires("reports:read")
@reports_blp.arguments(ChartArgs, location="query")
@reports_blp.response(200, content_type="image/png", description="PNG, or SVG with format=svg")
def chart(args: dict[str, Any], name: str) -> Any:
    """``deposits-loans``: month-end deposits, shares and loans; ``membership``: joined,
    exited and members per month; ``par``: loans at risk and PAR 30 per closed business
    date. 404 for another name."""
    if name not in CHARTS:
        raise NotFound(f"no such chart: {name}")
    with runtime().unit_of_work() as s:
        data = CHARTS[name](s, args["from_"], args["to"], args["format"])
    return Response(data, mimetype=charts.FORMATS[args["format"]])


def _deposits_loans(s: Any, first: Any, last: Any, fmt: str) -> bytes:
    series = membership.balances_by_month(s, first, last)
    return charts.deposits_loans_chart(series, fmt, title="Deposits, shares and loans (month end)")


def _membership(s: Any, first: Any, last: Any, fmt: str) -> bytes:
    series = membership.growth(s, first, last)
    return charts.membership_chart(series, fmt, title="Members joined and exited")


def _par(s: Any, first: Any, last: Any, fmt: str) -> bytes:
    series = par_history.par_series(s, first, last)
    return charts.par_chart(series, fmt, title="Portfolio at risk (close of day)")


CHARTS = {"deposits-loans": _deposits_loans, "membership": _membership, "par": _par}
