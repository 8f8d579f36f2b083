"""Reports over the staff API: the list, a small report at once (JSON, CSV, XLSX), a large
one as a job with a download link, who may run them, bad names and dates a 4xx, and the
insider flag (audited)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.ledger.chart import AccountType, Purpose, SystemAccount
from db.models import AuditEvent, Member
from db.models_reports import ReportJob
from db.session import unit_of_work
from runtime import Runtime
from tests.e2e.api.conftest import Staffer, auth
from tests.reportutil import account, post
from workers.reports import run_report_with


def seed(session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as s:
        mpesa = account(s, SystemAccount.MPESA_COLLECTIONS_FLOAT, AccountType.ASSET)
        savings = account(s, "2000-API1", AccountType.LIABILITY, Purpose.SAVINGS)
        fees = account(s, SystemAccount.FEE_INCOME, AccountType.INCOME)
        post(s, date(2026, 1, 10), (mpesa, 2_500_000), (savings, -2_500_000))
        post(s, date(2026, 2, 1), (savings, 5_000), (fees, -5_000))


def test_reports_list_run_and_formats(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    seed(session_factory)
    auditor = make_staff("auditor")
    listed = api.get("/api/v1/reports", headers=auth(auditor))
    assert listed.status_code == 200
    names = {r["name"]: r for r in (listed.json or {})["items"]}
    assert {"trial_balance", "financial_position", "portfolio_at_risk", "insider_loans"} <= set(
        names
    )
    assert names["account_movements"]["large"] and names["loan_flows"]["params"] == ["period"]

    got = api.post(
        "/api/v1/reports/trial_balance", json={"as_of": "2026-01-31"}, headers=auth(auditor)
    )
    assert got.status_code == 200, got.json
    body = got.json or {}
    assert body["meta"]["database"] == "primary" and body["meta"]["as_of"] == "2026-01-31"
    assert body["checks"] == [{"check": "debits = credits", "ok": True}]
    rows = {r[0]: r[3:] for r in body["sections"][0]["rows"]}
    assert rows["2000-API1"] == [0, 2_500_000] and rows[""] == [2_500_000, 2_500_000]

    manager = make_staff("manager")
    csv = api.post("/api/v1/reports/financial_position", json={"as_of": "2026-02-28", "format": "csv"},
                   headers=auth(manager))  # fmt: skip
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    text = csv.get_data(as_text=True)
    assert "Members' savings,24950.00,25000.00,0.00" in text and "database,primary" in text
    xlsx = api.post("/api/v1/reports/comprehensive_income", json={"date": "2026-02-28", "format": "xlsx"},
                    headers=auth(manager))  # fmt: skip
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"

    with unit_of_work(session_factory) as s:
        actions = s.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("report.%"))
        ).all()
    assert actions.count("report.run") == 3


def test_refusals(api: FlaskClient, make_staff: Callable[..., Staffer]) -> None:
    auditor = make_staff("auditor")
    h = auth(auditor)
    assert api.post("/api/v1/reports/no_such_report", json={}, headers=h).status_code == 404
    for body in (
        {"as_of": "2026-02-30"},
        {"as_of": "yesterday"},
        {"as_of": "2999-01-01"},  # in the future
        {"as_of": "2026-01-01", "colour": "red"},  # unknown field
        {"as_of": "2026-01-01", "format": "pdf"},
    ):
        got = api.post("/api/v1/reports/trial_balance", json=body, headers=h)
        assert got.status_code == 422, (body, got.json)
    for body in ({"from": "2026-02-01"}, {"from": "2026-03-01", "to": "2026-02-01"}):
        assert api.post("/api/v1/reports/loan_flows", json=body, headers=h).status_code == 422
    assert (
        api.post("/api/v1/reports/top_exposures", json={"limit": "0"}, headers=h).status_code == 422
    )
    assert (
        api.post("/api/v1/reports/top_exposures", json={"limit": "x"}, headers=h).status_code == 422
    )
    for role in ("teller", "loan_officer", "admin"):
        got = api.post("/api/v1/reports/trial_balance", json={}, headers=auth(make_staff(role)))
        assert got.status_code == 403, role
    assert api.get("/api/v1/reports").status_code == 401


def test_a_large_report_runs_as_a_job_with_a_download_link(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session],
    runtime: Runtime,
) -> None:  # fmt: skip
    seed(session_factory)
    manager = make_staff("manager")
    queued = api.post("/api/v1/reports/account_movements",
                      json={"from": "2026-01-01", "to": "2026-01-31", "format": "csv"},
                      headers=auth(manager))  # fmt: skip
    assert queued.status_code == 202, queued.json
    job = queued.json or {}
    assert job["status"] == "queued" and job["download_url"] is None
    early = api.get(f"/api/v1/reports/jobs/{job['id']}/file", headers=auth(manager))
    assert early.status_code == 409
    assert run_report_with(runtime, job["id"]) == "done"  # what the worker runs
    assert run_report_with(runtime, job["id"]) == "skipped"  # a replay does nothing
    status = api.get(job["status_url"], headers=auth(make_staff("auditor"))).json or {}
    assert status["status"] == "done" and status["download_url"].endswith("/file")
    file = api.get(status["download_url"], headers=auth(manager))
    assert file.status_code == 200
    assert "account_movements_2026-01-01_2026-01-31.csv" in file.headers["Content-Disposition"]
    assert "2000-API1,Test 2000-API1,liability,0.00,0.00,25000.00,-25000.00" in file.get_data(
        as_text=True
    )
    assert api.get("/api/v1/reports/jobs/999999", headers=auth(manager)).status_code == 404
    with unit_of_work(session_factory) as s:
        assert s.get(ReportJob, job["id"]).status == "done"  # type: ignore[union-attr]
        actions = s.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("report.%"))
        ).all()
    assert sorted(actions) == ["report.download", "report.request"]


def test_insider_flag_is_set_by_a_manager_and_audited(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:  # fmt: skip
    member = make_member(status="active")
    manager = make_staff("manager")
    url = f"/api/v1/members/{member.id}/insider"
    got = api.put(url, json={"insider": "board"}, headers=auth(manager))
    assert got.status_code == 200 and (got.json or {})["insider"] == "board"
    assert api.put(url, json={"insider": "chairman"}, headers=auth(manager)).status_code == 422
    assert api.put(url, json={}, headers=auth(manager)).status_code == 422
    assert (
        api.put(url, json={"insider": "board"}, headers=auth(make_staff("auditor"))).status_code
        == 403
    )
    assert api.put("/api/v1/members/999999/insider", json={"insider": None},
                   headers=auth(manager)).status_code == 404  # fmt: skip
    assert api.put(url, json={"insider": None}, headers=auth(manager)).json["insider"] is None
    with unit_of_work(session_factory) as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "member.insider")).all()
        assert [(e.before, e.after) for e in events] == [
            ('{"insider":null}', '{"insider":"board"}'),
            ('{"insider":"board"}', '{"insider":null}'),
        ]
