"""Close of day over the staff API: runs newest first with their steps and figures, one
date's run, who may read them, and bad dates a 4xx."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.loans.vocabulary import CloseDayStep
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import disbursed_loan
from workers.close_day import run_close_day


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def test_staff_read_the_runs_and_their_results(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    start = date(2026, 1, 10)
    with unit_of_work(session_factory) as s:
        loan_id = disbursed_loan(s, on(deps, start))[0].id
    run_close_day(session_factory, on(deps, start + timedelta(days=40)),
                  through=start + timedelta(days=38))  # fmt: skip
    run_close_day(session_factory, on(deps, start + timedelta(days=40)),
                  stop_after=CloseDayStep.ACCRUE)  # fmt: skip
    auditor = make_staff("auditor")
    got = api.get("/api/v1/close-day/runs?limit=1", headers=auth(auditor))
    assert got.status_code == 200, got.json
    page = got.json or {}
    [newest] = page["items"]
    assert newest["business_date"] == "2026-02-18" and newest["status"] == "running"
    assert [s["step"] for s in newest["steps"]] == ["accrue"]
    assert page["next_cursor"]
    older = api.get(f"/api/v1/close-day/runs?cursor={page['next_cursor']}",
                    headers=auth(auditor)).json or {}  # fmt: skip
    [first] = older["items"]
    assert first["business_date"] == "2026-02-17" and first["status"] == "done"
    accrue, classify, notify = first["steps"]
    assert accrue["amount_cents"] > 0 and list(accrue["detail"]["interest_cents_by_product"])
    assert classify["detail"]["by_category"]["watch"]["loans"] == 1  # 7 days past due
    # Closed two days late: no notice sent (it would be read late), the bureau mark kept.
    assert notify["detail"]["late_run_sent_nothing"] and notify["detail"]["sent"] == 0
    assert notify["detail"]["marked_loans"] == 1 and notify["detail"]["listable_loans"] == 0
    loan = api.get(f"/api/v1/loans/{loan_id}", headers=auth(make_staff("manager"))).json or {}
    assert loan["credit_bureau"] == {
        "pre_listing_notice_on": None, "listable": False, "listable_since": None,
        "arrears_cents": 888_488, "as_of": "2026-02-17",
    }  # fmt: skip
    one = api.get("/api/v1/close-day/runs/2026-02-17", headers=auth(make_staff("manager")))
    assert one.status_code == 200 and one.json == first
    for bad, status in (("2026-13-01", 422), ("yesterday", 422), ("2026-2-1", 422),
                        ("x" * 500, 422), ("2025-01-01", 404)):  # fmt: skip
        assert api.get(f"/api/v1/close-day/runs/{bad}", headers=auth(auditor)).status_code == (
            status
        ), bad
    assert api.get("/api/v1/close-day/runs?limit=0", headers=auth(auditor)).status_code == 422
    assert api.get("/api/v1/close-day/runs?cursor=%%%", headers=auth(auditor)).status_code in (
        400, 422,
    )  # fmt: skip
    assert api.get("/api/v1/close-day/runs", headers=auth(make_staff("teller"))).status_code == 403
    assert api.get("/api/v1/close-day/runs").status_code == 401
