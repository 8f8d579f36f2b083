"""Reports run for the staff API: at once for a small report, as a background job for a
large one (``ReportSpec.large``), each run audited (docs/reports/index.md, "Over the API").

* ``run_now``: build and render in the caller's session (the report session: the replica
  when configured); audited ``report.run``.
* ``request_job``: a ``report_jobs`` row ``queued`` and the typed job ``RunReport(id)``
  deferred on the unit of work (handed to the queue after the commit:
  ``core.kernel.uow``; ``workers/runner.JOBS`` names its worker); audited
  ``report.request``.
* ``run_job``: the worker's part; the report is read in ``read`` (the report session)
  and the file written on the primary in ``write``.
* ``download``: the file of a finished job, audited ``report.download``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.log import record
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.permissions import Principal
from core.kernel.uow import Job, defer
from core.reports import registry, render
from db.models_reports import ReportJob


@dataclass(frozen=True)
class RunReport(Job):
    job_id: int


class ReportNotReady(DomainError):
    code = "report_not_ready"


def check_format(fmt: str) -> str:
    if fmt not in render.FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(render.FORMATS)}", field="format")
    return fmt


def file_name(name: str, params: registry.ReportParams, fmt: str) -> str:
    when = params.as_of or params.date_to
    tail = f"{params.date_from}_{params.date_to}" if params.date_from else str(when)
    return f"{name}_{tail}.{fmt}"


def build_now(
    session: Session,
    name: str,
    raw: Mapping[str, Any],
    *,
    today: date,
    source: Mapping[str, Any],
) -> registry.Report:
    """Build ``name`` now in ``session`` (the report session: it writes nothing, so it may
    be the replica's); the caller then records it with ``audit_run`` on the primary."""
    spec = registry.get(name)
    params = registry.parse_params(spec, raw, today=today)
    return registry.run(session, spec, params, source=source)


def audit_run(session: Session, actor: Principal, built: registry.Report, *, now: datetime) -> None:
    meta = built.meta
    record(
        session, actor, "report.run", target_type="report", target_id=built.name,
        after={k: meta.get(k) for k in ("as_of", "from", "to", "limit", "database")}, now=now,
    )  # fmt: skip


def _params_json(params: registry.ReportParams) -> dict[str, Any]:
    return {
        "as_of": params.as_of.isoformat() if params.as_of else None,
        "from": params.date_from.isoformat() if params.date_from else None,
        "to": params.date_to.isoformat() if params.date_to else None,
        "limit": params.limit,
    }


def request_job(
    session: Session,
    actor: Principal,
    name: str,
    raw: Mapping[str, Any],
    fmt: str,
    *,
    today: date,
    now: datetime,
) -> ReportJob:
    """Queue ``name`` (parameters checked now, so a bad date is a 400, not a failed job)."""
    spec = registry.get(name)
    params = registry.parse_params(spec, raw, today=today)
    row = ReportJob(
        report=name,
        params=json.dumps(_params_json(params), sort_keys=True),
        format=check_format(fmt),
        status="queued",
        requested_by=actor.id,
        created_at=now,
        file_name=file_name(name, params, fmt),
    )
    session.add(row)
    session.flush()
    record(
        session, actor, "report.request", target_type="report_job", target_id=row.id,
        after={"report": name, "format": fmt, "params": _params_json(params)}, now=now,
    )  # fmt: skip
    defer(session, RunReport(row.id))
    return row


def get_job(session: Session, job_id: int) -> ReportJob:
    row = session.get(ReportJob, job_id)
    if row is None:
        raise NotFound(f"no report job {job_id}")
    return row


def run_job(
    read: Session, write: Session, job_id: int, *, now: datetime, source: Mapping[str, Any]
) -> str:
    """Build and render the job's report; the row ends ``done`` with the file or
    ``failed`` with the reason. A job not ``queued`` is left alone (a replay)."""
    row = write.scalars(
        select(ReportJob).where(ReportJob.id == job_id).with_for_update()
    ).one_or_none()
    if row is None or row.status != "queued":
        return "skipped"
    stored = json.loads(row.params)
    raw = {
        "as_of": stored["as_of"],
        "from": stored["from"],
        "to": stored["to"],
        "limit": stored["limit"],
    }
    spec = registry.get(row.report)
    try:
        params = registry.parse_params(spec, raw, today=date.max)
        built = registry.run(read, spec, params, source=source)
        row.content = render.render(built, row.format)
        row.status = "done"
    except Exception as exc:  # noqa: BLE001 - kept on the row for the staff who asked
        row.status = "failed"
        row.error = f"{type(exc).__name__}: {exc}"[:300]
    row.finished_at = now
    return row.status


def download(session: Session, actor: Principal, job_id: int, *, now: datetime) -> ReportJob:
    row = get_job(session, job_id)
    if row.status != "done" or row.content is None:
        raise ReportNotReady(f"report job {job_id} is {row.status}")
    record(
        session, actor, "report.download", target_type="report_job", target_id=row.id,
        after={"report": row.report, "format": row.format}, now=now,
    )  # fmt: skip
    return row
