"""Year end over the staff API: a manager makes a run with the board's rates, previews it,
submits it; another manager approves and it is posted; bad input is a 422 naming the field
(a negative rate, a rate of 1e9, a year not over) or a 404 (a year before the ledger) and
writes nothing; the standing payout choice; the withholding tax report; the role table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from uuid import uuid4

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import member_account_ids
from db.models import Member
from db.models_year_end import YearEndRun
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

URL = "/api/v1/year-end/runs"
YEAR = 2001  # long over on any clock; the ledger below is dated in it


def dated(factory: sessionmaker[Session], deps: CoreDeps, member: Member) -> None:
    """Retained earnings and the member's share capital, dated in 2001."""
    with unit_of_work(factory) as s:
        bank = ledger.account_id_by_code(s, SystemAccount.BANK)
        shares = member_account_ids(s, member.id)["shares"]
        for credit, cents in (
            (ledger.account_id_by_code(s, SystemAccount.RETAINED_EARNINGS), 10_000_000_00),
            (shares, 50_000_00),
        ):
            ledger.post_entry(
                s, kind=EntryKind.ADJUSTMENT_MANUAL,
                legs=[ledger.Leg(bank, cents), ledger.Leg(credit, -cents)],
                idempotency_key=f"dated:{uuid4().hex}", now=deps.now(),
                value_date=date(YEAR, 1, 1),
            )  # fmt: skip


def runs(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as s:
        return s.scalar(select(func.count()).select_from(YearEndRun)) or 0


def test_a_run_over_the_api_from_the_board_rates_to_posting(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member], session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    manager, manager2, teller = make_staff("manager"), make_staff("manager"), make_staff("teller")
    member = make_member(status="active")
    dated(session_factory, deps, member)
    before = runs(session_factory)
    body = {"financial_year": YEAR, "dividend_rate_percent": "10", "rebate_rate_percent": "0"}
    for bad, field, code in (
        ({**body, "dividend_rate_percent": "-1"}, "dividend_rate_percent", 422),
        ({**body, "rebate_rate_percent": "1e9"}, "rebate_rate_percent", 422),
        ({**body, "dividend_rate_percent": 10}, "dividend_rate_percent", 422),
        ({**body, "dividend_method": "daily"}, "dividend_method", 422),
        ({**body, "financial_year": 9999}, "financial_year", 422),
        ({**body, "financial_year": 1900}, "1900", 404),
    ):
        answer = api.post(URL, headers=auth(manager), json=bad)
        assert answer.status_code == code, (bad, answer.json)
        assert field in str(answer.json), answer.json
    assert runs(session_factory) == before
    assert api.post(URL, headers=auth(teller), json=body).status_code == 403

    made = api.post(URL, headers=auth(manager), json=body)
    assert made.status_code == 201, made.json
    run = made.json
    assert (run["status"], run["dividend_tax_percent"]) == ("draft", "5")
    shown = api.get(f"{URL}/{run['id']}/preview", headers=auth(manager)).json
    mine = [x for x in shown["lines"] if x["member_id"] == member.id]
    # KES 50,000 × 10% = KES 5,000, tax 5% = KES 250, net KES 4,750.
    assert [(x["dividend_gross_cents"], x["tax_cents"], x["net_cents"]) for x in mine] == [
        (500_000, 25_000, 475_000)
    ]
    assert [r["minimum_percent"] for r in shown["capital_after"]["ratios"]] == ["10", "8"]

    chose = api.put(f"/api/v1/members/{member.id}/payout-choice", headers=auth(manager),
                    json={"destination": "bitcoin"})  # fmt: skip
    assert chose.status_code == 422
    chose = api.put(f"/api/v1/members/{member.id}/payout-choice", headers=auth(manager),
                    json={"destination": "deposits"})  # fmt: skip
    assert chose.status_code == 200 and chose.json["destination"] == "deposits"

    asked = api.post(f"{URL}/{run['id']}/submit", headers=auth(manager), json={})
    assert asked.status_code == 202 and asked.json["action"] == "year_end.post", asked.json
    own = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(manager), json={})
    assert own.status_code in (403, 409)
    done = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(manager2),
                    json={})  # fmt: skip
    assert done.status_code == 200 and done.json["status"] == "approved", done.json
    assert api.get(f"{URL}/{run['id']}", headers=auth(teller)).status_code == 403
    status = api.get(f"{URL}/{run['id']}", headers=auth(manager)).json
    assert status["status"] == "posted"
    with unit_of_work(session_factory) as s:
        deposits = member_account_ids(s, member.id)["deposits"]
        assert ledger.get_balance(s, deposits).balance_cents == 475_000
    again = api.post(f"{URL}/{run['id']}/submit", headers=auth(manager), json={})
    assert again.status_code == 409

    bad_month = api.get("/api/v1/reports/withholding-tax?month=2027-13", headers=auth(manager))
    assert bad_month.status_code == 422
    report = api.get(f"/api/v1/reports/withholding-tax?month={status['posted_on'][:7]}",
                     headers=auth(manager))  # fmt: skip
    assert report.status_code == 200, report.json
    dividend = [r for r in report.json["rows"] if r["kind"] == "dividend"]
    assert dividend[0]["tax_cents"] >= 25_000
    assert report.json["due_on"].endswith("-20")
