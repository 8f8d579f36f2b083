"""Close of day for the loan book over the staff API (issue 13): the runs, newest first,
and one date's run with what each step did (docs/loans/close-of-day.md). Read only: the run
itself is ``manage.py close-day`` and the scheduler."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.security import requires, runtime
from core.kernel.errors import InvalidInput, NotFound
from core.loans import close_of_day

blp = Blueprint(
    "api_close_day", __name__, url_prefix="/api/v1/close-day", description="Close of day"
)


def _run(view: close_of_day.RunView) -> dict[str, Any]:
    run = view.run
    return {
        "id": run.id,
        "business_date": run.business_date,
        "status": run.status,
        "band_version": run.band_version,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "steps": [
            {
                "step": s.step,
                "loans": s.loans,
                "amount_cents": s.amount_cents,
                "detail": json.loads(s.detail),
                "finished_at": s.finished_at,
            }
            for s in view.steps
        ],
    }


@blp.route("/runs", methods=["GET"])
@requires("close_day:read")
@blp.arguments(sc.PageArgs, location="query")
@blp.response(200, sc.page_schema(sc.CloseDayRunOut, "CloseDayRunPage"))
def list_runs(args: dict[str, Any]) -> Any:
    """Close-of-day runs, newest date first, each with its steps and their figures (a run
    still ``running`` stopped between steps and resumes at the next run)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        views = close_of_day.list_runs(
            s, limit=args["limit"] + 1, before_id=sc.decode_cursor(args["cursor"]) or None
        )
        more = len(views) > args["limit"]
        views = views[: args["limit"]]
        return {
            "items": [_run(v) for v in views],
            "next_cursor": sc.encode_cursor(views[-1].run.id) if more and views else None,
        }


@blp.route("/runs/<string:business_date>", methods=["GET"])
@requires("close_day:read")
@blp.response(200, sc.CloseDayRunOut)
def get_run(business_date: str) -> Any:
    """One business date's run (``YYYY-MM-DD``); 404 when that date was never run."""
    try:
        day = date.fromisoformat(business_date) if len(business_date) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise InvalidInput("the date must be YYYY-MM-DD", field="business_date", reason="format")
    rt = runtime()
    with rt.unit_of_work() as s:
        view = close_of_day.get_run(s, day)
        if view is None:
            raise NotFound(f"no close-of-day run for {day}")
        return _run(view)
