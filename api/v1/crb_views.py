"""The credit-bureau data submission file over the staff API (issue 15, part 2;
docs/integrations/crb-submission.md): run it for a month, list the runs, read one, download
its file. Running and downloading are audited; the file holds members' personal data."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.security import current, requires, runtime
from core.loans.crb import submission as crb
from db.models_crb import CrbSubmission

blp = Blueprint(
    "api_crb", __name__, url_prefix="/api/v1/crb-submissions",
    description="Credit-bureau data submissions",
)  # fmt: skip


def _out(row: CrbSubmission) -> dict[str, Any]:
    return {**crb.summary(row), "as_of": row.as_of, "created_at": row.created_at}


@blp.route("", methods=["POST"])
@requires("crb:submit")
@blp.arguments(sc.CrbSubmissionIn)
@blp.response(201, sc.CrbSubmissionOut)
def run_submission(body: dict[str, Any]) -> Any:
    """Produce the month's submission file (all loans, positive and negative) and keep it.
    Refused with 422 naming the loan or member and the field when the file fails its own
    rules, 422 for a month malformed or not over, 409 when close of day has not closed the
    month's last day. Run again, the same book gives the same bytes (same ``sha256``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return _out(crb.run_submission(s, rt.deps, current(), body["month"]))


@blp.route("", methods=["GET"])
@requires("crb:read")
@blp.arguments(sc.PageArgs, location="query")
@blp.response(200, sc.page_schema(sc.CrbSubmissionOut, "CrbSubmissionPage"))
def list_submissions(args: dict[str, Any]) -> Any:
    """Submission files, newest first (their summaries; the file is the download)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        rows = crb.list_submissions(
            s, limit=args["limit"] + 1, before_id=sc.decode_cursor(args["cursor"]) or None
        )
        more = len(rows) > args["limit"]
        rows = rows[: args["limit"]]
        return {
            "items": [_out(r) for r in rows],
            "next_cursor": sc.encode_cursor(rows[-1].id) if more and rows else None,
        }


@blp.route("/<int:submission_id>", methods=["GET"])
@requires("crb:read")
@blp.response(200, sc.CrbSubmissionOut)
def get_submission(submission_id: int) -> Any:
    """One submission's summary."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return _out(crb.get_submission(s, submission_id))


@blp.route("/<int:submission_id>/file", methods=["GET"])
@requires("crb:read")
@blp.response(200, content_type="text/plain", description="the file's bytes as produced")
def download_submission(submission_id: int) -> Any:
    """The submission file itself (audited), with its SHA-256 in ``X-Checksum-SHA256``."""
    rt = runtime()
    with rt.unit_of_work() as s:
        row = crb.download(s, rt.deps, current(), submission_id)
        content, name, digest = row.content, row.file_name, row.sha256
    return Response(
        content, mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "X-Checksum-SHA256": digest},
    )  # fmt: skip
