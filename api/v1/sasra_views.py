"""SASRA returns and the ratio dashboard over the staff API (issue 16, part 4;
docs/reports/sasra.md): a return downloaded as XLSX or CSV, reconciled to the general
ledger (an unmapped balance is a 409 naming the account), and each prudential ratio
green, amber or red. Both need ``reports:read`` and are audited."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.v1 import schemas as sc
from api.v1.security import current, requires, runtime
from core.audit import log as audit
from core.kernel.calendar import business_date
from core.reports import sasra

blp = Blueprint("api_sasra", __name__, url_prefix="/api/v1/sasra", description="SASRA returns")

MIMETYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
}


class ReturnArgs(sc.Strict):
    date = fields.Date(required=True, metadata={"description": "as at, YYYY-MM-DD"})
    format = fields.String(load_default="xlsx", validate=validate.OneOf(list(MIMETYPES)))


class RatioArgs(sc.Strict):
    date = fields.Date(required=True, metadata={"description": "as at, YYYY-MM-DD"})


class RatioOut(Schema):
    id = fields.String(required=True)
    label = fields.String(required=True)
    form = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "percent or amount (cents)"})
    value = fields.String(
        required=True, allow_none=True,
        metadata={"description": "a percent to two decimals (rounded down) or cents; "
                  "null when there is nothing to divide by"},
    )  # fmt: skip
    minimum = fields.String(required=True)
    amber_below = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["green", "amber", "red"]))


class DashboardOut(Schema):
    date = fields.Date(required=True)
    thresholds_version = fields.Integer(required=True)
    ratios = fields.List(fields.Nested(RatioOut), required=True)


@blp.route("/returns/<string:form>", methods=["GET"])
@requires("reports:read")
@blp.arguments(ReturnArgs, location="query")
@blp.response(
    200, content_type=MIMETYPES["xlsx"], description="the return as XLSX (or CSV: format=csv)"
)
def download_return(args: dict[str, Any], form: str) -> Any:
    """A SASRA return (``capital_adequacy``, ``liquidity``, ``deposit_return``,
    ``risk_classification``) as at ``date``: 404 for another form, 409 when an account
    holds a balance the layout does not map (the account named) or Form 4's date has no
    close of day, 422 for a bad or future date. Audited (``sasra.return``)."""
    rt = runtime()
    as_of: date = args["date"]
    with rt.unit_of_work() as s:
        ret = sasra.build_return(s, form, as_of, today=business_date(rt.deps.now()))
        audit.record(
            s, current(), "sasra.return", target_type="sasra_return", target_id=form,
            after={"date": as_of.isoformat(), "format": args["format"], "version": ret.version},
            now=rt.deps.now(),
        )  # fmt: skip
    name = rt.deps.sacco_name
    content = sasra.to_xlsx(ret, name) if args["format"] == "xlsx" else sasra.to_csv(ret, name)
    file_name = f"sasra-{form}-{as_of.isoformat()}.{args['format']}"
    return Response(
        content, mimetype=MIMETYPES[args["format"]],
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )  # fmt: skip


@blp.route("/ratios", methods=["GET"])
@requires("reports:read")
@blp.arguments(RatioArgs, location="query")
@blp.response(200, DashboardOut)
def ratios(args: dict[str, Any]) -> Any:
    """The prudential ratios as at ``date``, each ``green``, ``amber`` or ``red`` against
    thresholds kept as data (docs/reports/sasra.md). Audited (``sasra.ratios``)."""
    rt = runtime()
    as_of: date = args["date"]
    with rt.unit_of_work() as s:
        rows = sasra.ratio_dashboard(s, as_of, today=business_date(rt.deps.now()))
        audit.record(
            s, current(), "sasra.ratios", target_type="sasra_ratios",
            after={"date": as_of.isoformat()}, now=rt.deps.now(),
        )  # fmt: skip
    return {
        "date": as_of,
        "thresholds_version": sasra.THRESHOLDS_VERSION,
        "ratios": [
            {
                "id": r.id, "label": r.label, "form": r.form, "kind": r.kind,
                "value": None if r.value is None else str(r.value),
                "minimum": str(r.minimum), "amber_below": str(r.amber_below),
                "status": r.status,
            }
            for r in rows
        ],
    }  # fmt: skip
