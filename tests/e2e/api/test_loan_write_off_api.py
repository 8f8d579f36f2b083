"""Write-off and rescheduling over the staff API (issue 13, part 8): a loan officer
proposes (202), another person decides on ``/approvals/{id}``, the loan detail shows
``written_off`` with its figures or ``restructured`` with the new schedule and the
instalments it superseded; bad input is a 4xx that writes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from db.models import ApprovalRequest, JournalEntry
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import disbursed_loan
from workers.close_day import run_close_day

START = date(2026, 1, 10)
LOSS_DAY = date(2027, 2, 15)  # 370 days past due, 12 missed


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def written(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    with unit_of_work(session_factory) as s:
        return (
            s.scalar(select(func.count()).select_from(JournalEntry)) or 0,
            s.scalar(select(func.count()).select_from(ApprovalRequest)) or 0,
        )


def two_loans(session_factory: sessionmaker[Session], deps: CoreDeps) -> tuple[int, int]:
    """Two loans made on START, closed on LOSS_DAY (both in the loss category)."""
    with unit_of_work(session_factory) as s:
        ids = disbursed_loan(s, on(deps, START))[0].id, disbursed_loan(s, on(deps, START))[0].id
        s.commit()
    run_close_day(session_factory, on(deps, LOSS_DAY + timedelta(days=1)), through=LOSS_DAY)
    return ids


def test_a_write_off_proposed_then_approved_by_a_manager(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    loan_id, other_id = two_loans(session_factory, deps)
    officer, manager = make_staff("loan_officer"), make_staff("manager")
    url = f"/api/v1/loans/{loan_id}/write-off"
    before = written(session_factory)
    for bad, status in (({}, 422), ({"note": "x"}, 422), ({"note": "ok, gone", "x": 1}, 422),
                        ({"note": 5}, 422)):  # fmt: skip
        assert api.post(url, headers=auth(officer), json=bad).status_code == status, bad
    missing = api.post("/api/v1/loans/999999/write-off", headers=auth(officer),
                       json={"note": "no such loan"})  # fmt: skip
    assert missing.status_code == 404
    assert api.post(url, headers=auth(make_staff("teller")),
                    json={"note": "not mine to ask"}).status_code == 403  # fmt: skip
    assert written(session_factory) == before
    asked = api.post(url, headers=auth(officer), json={"note": "no contact for a year"})
    assert asked.status_code == 202, asked.json
    request: dict[str, Any] = asked.json or {}
    assert request["action"] == "loan.write_off" and request["status"] == "pending"
    approve = f"/api/v1/approvals/{request['id']}/approve"
    assert api.post(approve, headers=auth(officer), json={}).status_code == 403  # its maker
    decided = api.post(approve, headers=auth(manager), json={"note": "agreed"})
    assert decided.status_code == 200 and (decided.json or {})["status"] == "approved"
    loan = api.get(f"/api/v1/loans/{loan_id}", headers=auth(officer)).json or {}
    assert loan["status"] == "written_off" and loan["principal_outstanding_cents"] == 0
    wo = loan["write_off"]
    assert wo["principal_cents"] == 10_000_000 == wo["provision_cents"]
    assert wo["category"] == "loss" and wo["recovered_cents"] == 0
    assert wo["recoverable_cents"] == wo["principal_cents"] + wo["interest_cents"]
    assert wo["entry_reference"]
    # A written-off loan is not written off nor rescheduled again: 409.
    again = api.post(url, headers=auth(officer), json={"note": "once more"})
    assert again.status_code == 409 and (again.json or {})["code"] == "loan_state"
    resched = api.post(f"/api/v1/loans/{loan_id}/reschedule", headers=auth(officer),
                       json={"note": "too late", "term": 12})  # fmt: skip
    assert resched.status_code == 409
    other = api.get(f"/api/v1/loans/{other_id}", headers=auth(officer)).json or {}
    assert other["write_off"] is None and other["restructured"] is False


def test_a_rescheduling_proposed_then_approved_shows_the_new_schedule(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    loan_id, _ = two_loans(session_factory, deps)
    officer, checker = make_staff("loan_officer"), make_staff("manager")
    url = f"/api/v1/loans/{loan_id}/reschedule"
    before = written(session_factory)
    for bad in ({"note": "both", "term": 12, "instalment_cents": 500_000},
                {"note": "neither"}, {"note": "zero", "term": 0},
                {"note": "text", "term": "12"}, {"note": "tiny", "instalment_cents": 100},
                {"note": "float", "instalment_cents": 1.5}, {"term": 12}):  # fmt: skip
        got = api.post(url, headers=auth(officer), json=bad)
        assert got.status_code == 422, (bad, got.json)
    assert written(session_factory) == before
    asked = api.post(url, headers=auth(officer), json={"note": "new job", "term": 24})
    assert asked.status_code == 202, asked.json
    request: dict[str, Any] = asked.json or {}
    decided = api.post(f"/api/v1/approvals/{request['id']}/approve", headers=auth(checker),
                       json={})  # fmt: skip
    assert decided.status_code == 200 and (decided.json or {})["status"] == "approved", decided.json
    loan = api.get(f"/api/v1/loans/{loan_id}", headers=auth(officer)).json or {}
    assert loan["restructured"] is True and loan["status"] == "active"
    [done] = loan["reschedules"]
    assert done["term"] == 24 and done["asked_term"] == 24
    assert len(loan["superseded_instalments"]) == 12
    new = [i for i in loan["schedule"] if i["paid_principal_cents"] < i["principal_cents"]]
    assert len(new) == 24
    assert sum(i["principal_cents"] for i in new) == loan["principal_outstanding_cents"]
    listed = api.get("/api/v1/loans", headers=auth(officer)).json or {}
    assert {i["id"]: i["restructured"] for i in listed["items"]}[loan_id] is True
