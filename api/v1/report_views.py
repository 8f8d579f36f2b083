"""Reports over the staff API (issue 16; docs/reports/index.md, "Over the API"): the list,
a report run at once (small) or as a job with a download link (large), the job and its
file; and the insider flag on a member. Reports read the report session (the streaming
replica when ``REPLICA_DATABASE_URL`` is set); what is written (the audit rows, the job)
goes to the primary."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask_smorest import Blueprint
from marshmallow import fields, validate

from api.v1.schemas import Strict
from api.v1.security import current, requires, runtime
from core.kernel.calendar import business_date
from core.members import backoffice
from core.members.insiders import INSIDER_KINDS, set_insider
from core.reports import get as get_report
from core.reports import jobs, load_all, render, source

blp = Blueprint("api_reports", __name__, url_prefix="/api/v1/reports", description="Reports")
insider_blp = Blueprint(
    "api_member_insider", __name__, url_prefix="/api/v1/members", description="Members"
)


class ReportIn(Strict):
    as_of = fields.String(load_default=None, allow_none=True, metadata={"example": "2026-03-31"})
    date = fields.String(load_default=None, allow_none=True)
    from_ = fields.String(data_key="from", load_default=None, allow_none=True)
    to = fields.String(load_default=None, allow_none=True)
    limit = fields.Raw(load_default=None, allow_none=True)
    format = fields.String(load_default="json", validate=validate.OneOf(render.FORMATS))
    run_async = fields.Boolean(
        data_key="async", load_default=False, metadata={"description": "run as a job even if small"}
    )


class InsiderIn(Strict):
    insider = fields.String(required=True, allow_none=True, validate=validate.OneOf(INSIDER_KINDS))


def _job(row: Any) -> dict[str, Any]:
    out = {
        "id": row.id,
        "report": row.report,
        "format": row.format,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "error": row.error,
        "status_url": url_for("api_reports.get_job", job_id=row.id),
        "download_url": url_for("api_reports.download_job", job_id=row.id)
        if row.status == "done"
        else None,
    }
    return out


@blp.route("", methods=["GET"])
@requires("reports:read")
@blp.response(200)
def list_reports() -> Any:
    """Every report: its name, title, what it shows, its parameters and whether it runs as
    a job (``large``)."""
    return {
        "items": [
            {
                "name": spec.name,
                "title": spec.title,
                "description": spec.description,
                "params": sorted(p.value for p in spec.params),
                "large": spec.large,
            }
            for spec in load_all().values()
        ]
    }


@blp.route("/<string:name>", methods=["POST"])
@requires("reports:read")
@blp.arguments(ReportIn)
@blp.response(200, description="the report (JSON), or its file for csv and xlsx")
@blp.alt_response(202, description="a large report queued: the job, with its status URL")
def run_report(body: dict[str, Any], name: str) -> Any:
    """Run a report. Parameters: ``as_of`` (YYYY-MM-DD, default today), ``from`` and ``to``
    for a period, ``limit`` for a top N; ``format`` json, csv or xlsx. A large report (or
    ``"async": true``) is queued: 202 with the job and its status URL; the file is then at
    ``/api/v1/reports/jobs/{id}/file``. 404 for an unknown report, 422 for a bad
    parameter. Audited."""
    rt = runtime()
    now = rt.deps.now()
    today = business_date(now)
    raw = {"as_of": body["as_of"] or body["date"], "from": body["from_"], "to": body["to"],
           "limit": body["limit"]}  # fmt: skip
    raw = {k: v for k, v in raw.items() if v is not None}
    spec = get_report(name)
    fmt = jobs.check_format(body["format"])
    if spec.large or body["run_async"]:
        with rt.unit_of_work() as s:
            row = jobs.request_job(s, current(), name, raw, fmt, today=today, now=now)
            out = _job(row)
        return out, 202
    if rt.replica_session_factory is None:
        with rt.unit_of_work() as s:
            built = jobs.build_now(
                s, name, raw, today=today, source=source.describe(s, replica=False)
            )
            jobs.audit_run(s, current(), built, now=now)
    else:  # read on the replica, then record the run on the primary
        with rt.report_session() as read:
            built = jobs.build_now(
                read, name, raw, today=today, source=source.describe(read, replica=True)
            )
        with rt.unit_of_work() as s:
            jobs.audit_run(s, current(), built, now=now)
    if fmt == "json":
        return render.to_json(built)
    content = render.render(built, fmt)
    file = f"{name}_{built.meta.get('as_of') or built.meta.get('to')}.{fmt}"
    return Response(
        content, mimetype=render.MEDIA_TYPES[fmt].split(";")[0],
        headers={"Content-Disposition": f'attachment; filename="{file}"'},
    )  # fmt: skip


@blp.route("/jobs/<int:job_id>", methods=["GET"])
@requires("reports:read")
@blp.response(200)
def get_job(job_id: int) -> Any:
    """A report job: ``queued``, ``running``, ``done`` (with ``download_url``) or ``failed``
    (with ``error``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return _job(jobs.get_job(s, job_id))


@blp.route("/jobs/<int:job_id>/file", methods=["GET"])
@requires("reports:read")
@blp.response(200, description="the report's file")
def download_job(job_id: int) -> Any:
    """The file of a finished job (audited); 409 while it is not done."""
    rt = runtime()
    with rt.unit_of_work() as s:
        row = jobs.download(s, current(), job_id, now=rt.deps.now())
        content, fmt, file = row.content, row.format, row.file_name
    return Response(
        content, mimetype=render.MEDIA_TYPES[fmt].split(";")[0],
        headers={"Content-Disposition": f'attachment; filename="{file}"'},
    )  # fmt: skip


@insider_blp.route("/<int:member_id>/insider", methods=["PUT"])
@requires("members:insider")
@insider_blp.arguments(InsiderIn)
@insider_blp.response(200)
def put_insider(body: dict[str, Any], member_id: int) -> Any:
    """Flag a member as an insider (``staff`` or ``board``) or clear it (``null``); their
    loans are then listed by the ``insider_loans`` report. Audited (``member.insider``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        member = backoffice.visible_member(s, current(), member_id)
        member = set_insider(s, current(), member.id, body["insider"], now=rt.deps.now())
        return {"id": member.id, "member_number": member.member_number, "insider": member.insider}
