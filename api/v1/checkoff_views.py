"""Employer check-off over the staff API (issue 15, part 3; docs/integrations/check-off.md):
employers and their members' payroll numbers, members' standing instructions, the
deductions expected for a month (and their export for the employer's payroll), the
employer's remittance file uploaded for posting (maker-checker ``checkoff.post``), its
report for the employer, late remittances, and a line left in clearing moved to a member
(maker-checker ``checkoff.reassign``). The use cases are ``core.checkoff.service``.
Branch-bound staff see and change only their branch's members (others are 404)."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Response
from flask_smorest import Blueprint
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict

from api.v1 import checkoff_schemas as cs
from api.v1 import schemas as sc
from api.v1.maker_checker import approval_dict, ask
from api.v1.security import api_state, current, requires, runtime
from core.checkoff import files as checkoff_files
from core.checkoff import service as checkoff
from core.kernel.calendar import business_date
from core.members.backoffice import visible_member
from db.models import ApprovalRequest


class _FormAndFilesParser(FlaskParser):
    """``location="files"`` reads a multipart body's fields and its files together, so one
    schema describes (and OpenAPI documents) the whole upload."""

    def load_files(self, req: Any, schema: Any) -> Any:
        return self._makeproxy(CombinedMultiDict([req.files, req.form]), schema)


class _Blueprint(Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = _FormAndFilesParser()


blp = _Blueprint(
    "api_checkoff", __name__, url_prefix="/api/v1/checkoff", description="Employer check-off"
)


def _read(upload_file: Any, limit: int) -> bytes:
    try:
        return upload_file.read(limit + 1) if hasattr(upload_file, "read") else b""
    finally:
        if hasattr(upload_file, "close"):
            upload_file.close()


def _download(data: bytes, mimetype: str, filename: str) -> Response:
    return Response(
        data, mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


# ------------------------------------------------------------------ employers


@blp.route("/employers", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, cs.EmployerList)
def employer_list() -> Any:
    """Partner employers, by code."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return {"items": [checkoff.employer_dict(e) for e in checkoff.list_employers(s)]}


@blp.route("/employers", methods=["POST"])
@requires("checkoff:manage")
@blp.arguments(cs.EmployerIn)
@blp.response(201, cs.EmployerOut)
def employer_create(body: dict[str, Any]) -> Any:
    """Add a partner employer (audited). A code already taken: 409 ``duplicate_employer``."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return checkoff.employer_dict(checkoff.create_employer(s, rt.deps, current(), body))


@blp.route("/employers/<int:employer_id>", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, cs.EmployerOut)
def employer_get(employer_id: int) -> Any:
    rt = runtime()
    with rt.unit_of_work() as s:
        return checkoff.employer_dict(checkoff.get_employer(s, employer_id))


@blp.route("/employers/<int:employer_id>/members", methods=["POST"])
@requires("checkoff:manage")
@blp.arguments(cs.PayrollLinkIn)
@blp.response(200, cs.PayrollLinkOut)
def member_link(body: dict[str, Any], employer_id: int) -> Any:
    """Put a member on this employer's payroll with their payroll number (or change it);
    a member is on one employer's payroll at a time (audited). A payroll number that is
    another member's: 409 ``payroll_number_taken``."""
    rt = runtime()
    with rt.unit_of_work() as s:
        visible_member(s, current(), body["member_id"])
        link = checkoff.link_member(
            s, rt.deps, current(), employer_id, body["member_id"], body["payroll_number"]
        )
        return {"member_id": link.member_id, "employer_id": link.employer_id,
                "payroll_number": link.payroll_number}  # fmt: skip


@blp.route("/members/<int:member_id>/payroll", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, cs.PayrollLinkOut)
def member_payroll(member_id: int) -> Any:
    """The employer whose payroll the member is on (404: none)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        visible_member(s, current(), member_id)
        link = checkoff.member_link(s, member_id)
        return {"member_id": link.member_id, "employer_id": link.employer_id,
                "payroll_number": link.payroll_number}  # fmt: skip


# ------------------------------------------------------------------ standing instructions


@blp.route("/members/<int:member_id>/instructions", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, cs.InstructionsOut)
def instructions_get(member_id: int) -> Any:
    """What the member's deduction pays, in paying order (loans first, then deposits,
    shares, savings). None: each active loan's instalment due."""
    rt = runtime()
    with rt.unit_of_work() as s:
        visible_member(s, current(), member_id)
        rows = checkoff.get_instructions(s, member_id)
        return {"member_id": member_id, "instructions": checkoff.instruction_dicts(rows)}


@blp.route("/members/<int:member_id>/instructions", methods=["PUT"])
@requires("checkoff:manage")
@blp.arguments(cs.InstructionsIn)
@blp.response(200, cs.InstructionsOut)
def instructions_set(body: dict[str, Any], member_id: int) -> Any:
    """Replace the member's standing instructions (audited, before and after): a loan
    (``loan_id`` of the member's active loan; ``amount_cents`` null for the instalment due),
    or a fixed ``amount_cents`` to deposits, shares or savings. Bad items: 422 naming the
    item (``instructions.N``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        visible_member(s, current(), member_id)
        rows = checkoff.set_instructions(s, rt.deps, current(), member_id, body["instructions"])
        return {"member_id": member_id, "instructions": checkoff.instruction_dicts(rows)}


# ------------------------------------------------------------------ expected deductions


def _schedule_out(s: Any, schedule: Any) -> dict[str, Any]:
    return {**checkoff.schedule_dict(schedule), "rows": checkoff.schedule_rows(s, schedule.id)}


@blp.route("/employers/<int:employer_id>/schedules", methods=["POST"])
@requires("checkoff:manage")
@blp.arguments(cs.ScheduleIn)
@blp.response(201, cs.ScheduleOut)
def schedule_generate(body: dict[str, Any], employer_id: int) -> Any:
    """Generate (or generate again) the deductions expected from the employer for a month,
    from the loan schedules and the standing instructions. Refused (409 ``remitted``) once
    a remittance for that month waits or is posted."""
    rt = runtime()
    with rt.unit_of_work() as s:
        schedule = checkoff.generate_schedule(s, rt.deps, employer_id, body["period"])
        return _schedule_out(s, schedule)


@blp.route("/employers/<int:employer_id>/schedules/<period>", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, cs.ScheduleOut)
def schedule_get(employer_id: int, period: str) -> Any:
    """The expected deductions for a month (``YYYY-MM``), one row per member."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return _schedule_out(s, checkoff.get_schedule(s, employer_id, period))


@blp.route("/employers/<int:employer_id>/schedules/<period>/export", methods=["GET"])
@requires("checkoff:read")
@blp.arguments(cs.ExportArgs, location="query")
@blp.response(200, content_type="text/csv", description="CSV, or XLSX with format=xlsx")
def schedule_export(args: dict[str, Any], employer_id: int, period: str) -> Any:
    """The expected deductions as a file for the employer's payroll: ``payroll_number``,
    ``member_number``, ``name``, ``amount`` and its split, in KES with two decimals."""
    rt = runtime()
    with rt.unit_of_work() as s:
        employer = checkoff.get_employer(s, employer_id)
        rows = checkoff.schedule_rows(s, checkoff.get_schedule(s, employer_id, period).id)
    name = f"checkoff-{employer.code}-{period}"
    if args["format"] == "xlsx":
        return _download(
            checkoff_files.export_xlsx(rows),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", f"{name}.xlsx",
        )  # fmt: skip
    return _download(checkoff_files.export_csv(rows), "text/csv", f"{name}.csv")


# ------------------------------------------------------------------ remittances


@blp.route("/employers/<int:employer_id>/remittances", methods=["POST"])
@requires("checkoff:upload")
@blp.arguments(cs.RemittanceUploadIn, location="files")
@blp.response(202, cs.RemittanceUploadOut)
@blp.alt_response(200, schema=cs.RemittanceUploadOut, description="this file was uploaded before")
def remittance_upload(form: dict[str, Any], employer_id: int) -> Any:
    """Upload the employer's remittance (multipart: ``file``, CSV or XLSX, at most 20 MB)
    with the bank transfer it came with. Nothing posts yet: the answer is the pending
    ``checkoff.post`` request (202), which a manager (``checkoff:post``, not you) approves
    under ``/api/v1/approvals``. The same file again (its SHA-256) answers the first upload
    (200). Refused whole, nothing written: a bad line (422 ``checkoff_file_invalid`` naming
    the line, the header being line 1), lines not totalling ``bank_amount_cents`` (422
    ``total_mismatch``), a receipt dated after today."""
    data = _read(form["file"], checkoff_files.MAX_BYTES)
    filename = getattr(form["file"], "filename", "") or ""
    rt = runtime()
    with rt.unit_of_work() as s:
        up = checkoff.upload_remittance(
            s, rt.deps, current(), employer_id=employer_id, period=form["period"], data=data,
            filename=filename, bank_reference=form["bank_reference"],
            bank_amount_cents=form["bank_amount_cents"], received_on=form["received_on"],
            large_threshold_cents=api_state().large_threshold_cents,
        )  # fmt: skip
        r = up.remittance
        req = s.get(ApprovalRequest, r.approval_id) if r.approval_id is not None else None
        body = {"created": up.created, "remittance": checkoff.remittance_dict(r),
                "approval": approval_dict(req) if req is not None else None}  # fmt: skip
    return body, (202 if up.created else 200)


@blp.route("/remittances/<int:remittance_id>", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, cs.RemittanceOut)
def remittance_get(remittance_id: int) -> Any:
    rt = runtime()
    with rt.unit_of_work() as s:
        return checkoff.remittance_dict(checkoff.get_remittance(s, remittance_id))


@blp.route("/remittances/<int:remittance_id>/report", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, cs.RemittanceReportOut)
def remittance_report(remittance_id: int) -> Any:
    """For the employer: lines that matched nobody (or a member who may not take money;
    their money is in check-off clearing, 2210) and each expected member's shortfall."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return checkoff.remittance_report(s, remittance_id)


@blp.route("/remittances/<int:remittance_id>/report.csv", methods=["GET"])
@requires("checkoff:read")
@blp.response(200, content_type="text/csv", description="the report as CSV")
def remittance_report_csv(remittance_id: int) -> Any:
    """The same report as CSV (``kind`` unmatched or shortfall; KES with two decimals)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        report = checkoff.remittance_report(s, remittance_id)
    return _download(checkoff.report_csv(report), "text/csv",
                     f"checkoff-report-{remittance_id}.csv")  # fmt: skip


@blp.route("/remittances/<int:remittance_id>/lines/<int:line_no>/reassignment", methods=["POST"])
@requires("checkoff:upload")
@blp.arguments(cs.ReassignIn)
@blp.response(202, sc.ApprovalOut)
def line_reassign(body: dict[str, Any], remittance_id: int, line_no: int) -> Any:
    """Ask to move a posted remittance's line that stayed in check-off clearing (2210) to a
    member: their savings, deposits, shares, or their active loan (``loan_id``). A manager
    (``checkoff:post``, not you) decides; approval credits it through the one credit or
    repayment path and the line leaves the report's unmatched list. A line already
    allocated: 409 ``already_allocated``."""
    payload = {"remittance_id": remittance_id, "line_no": line_no, "target": body["target"]}
    if body["loan_id"] is not None:
        payload["loan_id"] = body["loan_id"]
    return ask(checkoff.REASSIGN_ACTION, body["member_id"], payload, body["note"])


@blp.route("/late-remittances", methods=["GET"])
@requires("checkoff:read")
@blp.arguments(cs.LateArgs, location="query")
@blp.response(200, cs.LateList)
def late(args: dict[str, Any]) -> Any:
    """Employer months with money expected whose remittance came, or has not come, after
    the due day (the pay day plus the 7 days of the Co-operative Societies Act, s. 19A):
    days late and an age bucket."""
    rt = runtime()
    day: date = args["date"] or business_date(rt.deps.now())
    with rt.unit_of_work() as s:
        return {"date": day, "items": checkoff.late_remittances(s, day)}
