"""The credit-bureau submission file over the staff API: a manager runs it for a month,
an auditor lists, reads and downloads it (the bytes match the checksum), a teller cannot;
a bad or unfinished month is a 422, a month close of day has not closed a 409.

The app runs on the real clock, so the book is dated from today: a loan made three months
back and the book closed through the end of last month."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import disbursed_loan
from workers.close_day import run_close_day


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def test_a_manager_runs_the_month_and_an_auditor_downloads_it(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    today = business_date(datetime.now(UTC))
    last = today.replace(day=1) - timedelta(days=1)  # the end of last month
    month = f"{last:%Y-%m}"
    with unit_of_work(session_factory) as s:
        loan = disbursed_loan(s, on(deps, last - timedelta(days=70)))[0]
        reference = loan.reference
    manager, auditor = make_staff("manager"), make_staff("auditor")

    def post(body: dict[str, object], who: Staffer = manager) -> Any:
        return api.post("/api/v1/crb-submissions", json=body, headers=auth(who))

    behind = post({"month": month})
    assert behind.status_code == 409 and (behind.json or {})["code"] == "close_day_behind"
    run_close_day(session_factory, on(deps, last + timedelta(days=1)), through=last)
    next_month = (today.replace(day=28) + timedelta(days=4)).strftime("%Y-%m")
    for bad in ("2026-13", "march", "2026-3", "", next_month, f"{today:%Y-%m}"):
        got = post({"month": bad})
        assert got.status_code == 422, (bad, got.json)
        assert (got.json or {})["code"] == "invalid_input"
    assert post({}).status_code == 422
    assert post({"month": month, "extra": 1}).status_code == 422
    assert post({"month": month}, auditor).status_code == 403
    made = post({"month": month})
    assert made.status_code == 201, made.json
    run = made.json or {}
    assert run["month"] == month and run["accounts"] == 1 and run["consumers"] == 1
    assert run["as_of"] == last.isoformat() and run["layout_version"] == "dst-1"
    page = api.get("/api/v1/crb-submissions", headers=auth(auditor)).json or {}
    assert [r["id"] for r in page["items"]] == [run["id"]]
    one = api.get(f"/api/v1/crb-submissions/{run['id']}", headers=auth(auditor))
    assert one.status_code == 200 and one.json == run
    file = api.get(f"/api/v1/crb-submissions/{run['id']}/file", headers=auth(auditor))
    assert file.status_code == 200 and file.mimetype == "text/plain"
    assert hashlib.sha256(file.data).hexdigest() == run["sha256"]
    assert file.headers["X-Checksum-SHA256"] == run["sha256"]
    assert f"|{reference}|L|" in file.data.decode()
    assert api.get("/api/v1/crb-submissions/999999", headers=auth(auditor)).status_code == 404
    assert api.get("/api/v1/crb-submissions", headers=auth(make_staff("teller"))).status_code == (
        403
    )
    assert api.get("/api/v1/crb-submissions").status_code == 401
