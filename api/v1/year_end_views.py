"""Year end (issue 14, part 2; docs/savings/year-end.md): a manager makes a run with the
board's rates, previews it, submits it (``year_end.post``, another manager approves under
``/approvals``); members' standing payout choices; the withholding tax remittance report."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import approval_dict
from api.v1.security import api_state, current, requires, runtime
from core.savings import year_end as ye

blp = Blueprint("api_year_end", __name__, url_prefix="/api/v1", description="Year end")


@blp.route("/year-end/runs", methods=["POST"])
@requires("year_end:manage")
@blp.arguments(sc.YearEndRunIn)
@blp.response(201, sc.YearEndRunOut)
def create_run(body: dict[str, Any]) -> Any:
    """A draft run for a financial year that is over, with the board's proposed rates
    (percent as text) and methods; the withholding tax rates in force today are frozen
    with it. 422 for a bad rate or a year not over; 404 for a year before the ledger."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return ye.run_dict(ye.create_run(s, rt.deps, current(), body))


@blp.route("/year-end/runs/<int:run_id>", methods=["GET"])
@requires("year_end:read")
@blp.response(200, sc.YearEndRunOut)
def get_run(run_id: int) -> Any:
    """A run's state and totals."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return ye.run_dict(ye.get_run(s, run_id))


@blp.route("/year-end/runs/<int:run_id>/preview", methods=["GET"])
@requires("year_end:read")
@blp.response(200, sc.YearEndPreviewOut)
def preview_run(run_id: int) -> Any:
    """Every member's dividend, rebate, tax and net, the totals, and core and institutional
    capital before and after against total assets with their minimums."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return ye.preview_dict(ye.preview(s, run_id))


@blp.route("/year-end/runs/<int:run_id>/submit", methods=["POST"])
@requires("year_end:manage")
@blp.arguments(sc.YearEndSubmitIn)
@blp.response(202, sc.ApprovalOut)
def submit_run(body: dict[str, Any], run_id: int) -> Any:
    """Freeze the lines and ask for ``year_end.post`` (a second person holding
    ``approvals:decide_large`` approves; approval posts). 409 ``capital_ratio_too_low``
    naming the ratio, or ``year_end_refused`` with its reason."""
    rt = runtime()
    with rt.unit_of_work() as s:
        req = ye.submit_run(
            s, rt.deps, current(), run_id, large_threshold_cents=api_state().large_threshold_cents
        )
        return approval_dict(req)


@blp.route("/members/<int:member_id>/payout-choice", methods=["GET"])
@requires("year_end:read")
@blp.response(200, sc.PayoutChoiceOut)
def get_choice(member_id: int) -> Any:
    """Where the member's dividends and rebates go (default ``savings``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return {"member_id": member_id, "destination": ye.payout_choice(s, current(), member_id)}


@blp.route("/members/<int:member_id>/payout-choice", methods=["PUT"])
@requires("year_end:manage")
@blp.arguments(sc.PayoutChoiceIn)
@blp.response(200, sc.PayoutChoiceOut)
def set_choice(body: dict[str, Any], member_id: int) -> Any:
    """Set the member's standing choice: ``savings``, ``mpesa`` (credited to savings, then
    paid by M-Pesa), ``shares`` or ``deposits`` (capitalised). Audited."""
    rt = runtime()
    with rt.unit_of_work() as s:
        chosen = ye.set_payout_choice(s, rt.deps, current(), member_id, body["destination"])
    return {"member_id": member_id, "destination": chosen}


@blp.route("/reports/withholding-tax", methods=["GET"])
@requires("year_end:read")
@blp.arguments(sc.TaxReportArgs, location="query")
@blp.response(200, sc.TaxReportOut)
def tax_report(args: dict[str, Any]) -> Any:
    """Withholding tax withheld in a month by kind (interest on savings, deposit rebates,
    dividends), the ledger's figure beside it, and the remittance due date (the 20th of
    the next month)."""
    year, month = (int(x) for x in args["month"].split("-"))
    rt = runtime()
    with rt.unit_of_work() as s:
        report = ye.withholding_tax_report(s, year, month)
    return {**asdict(report), "rows": [asdict(r) for r in report.rows]}
