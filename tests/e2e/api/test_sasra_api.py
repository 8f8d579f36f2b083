"""SASRA returns and the ratio dashboard over the staff API: an auditor and a manager
download a return as XLSX and CSV (opened back, the figures in their cells) and read the
dashboard, each read audited; a teller gets 403, no token 401; an unknown form 404; a bad,
missing or future date or format 422; an unmapped balance 409 naming the account.

The app runs on the real clock, so the book is dated yesterday."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from uuid import uuid4

from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from db.models import AuditEvent
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import funded_member

KES = 100
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def move(s: Session, debit: str, credit: str, cents: int, day: date) -> None:
    ledger.post_entry(
        s, kind=EntryKind.ADJUSTMENT_MANUAL,
        legs=[ledger.Leg(ledger.account_id_by_code(s, debit), cents),
              ledger.Leg(ledger.account_id_by_code(s, credit), -cents)],
        idempotency_key=f"sasra-api:{uuid4().hex}",
        now=datetime.combine(day, time(9), tzinfo=UTC), value_date=day,
    )  # fmt: skip


def test_returns_and_ratios_for_those_who_may_read_reports(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    today = business_date(datetime.now(UTC))
    day = today - timedelta(days=1)
    with unit_of_work(session_factory) as s:
        funded_member(s, on(deps, day), deposits_cents=8_000_000 * KES,
                      savings_cents=2_000_000 * KES)  # fmt: skip
        move(s, SystemAccount.BANK, SystemAccount.RETAINED_EARNINGS, 3_000_000 * KES, day)
        s.commit()
    auditor, manager, teller = make_staff("auditor"), make_staff("manager"), make_staff("teller")
    url = f"/api/v1/sasra/returns/capital_adequacy?date={day.isoformat()}"

    got = api.get(url, headers=auth(auditor))
    assert got.status_code == 200 and got.mimetype == XLSX
    assert f"sasra-capital_adequacy-{day.isoformat()}.xlsx" in got.headers["Content-Disposition"]
    ws = load_workbook(io.BytesIO(got.data)).active
    assert ws is not None
    cells = {row[0]: row for row in ws.iter_rows(min_row=7, values_only=True) if row[0]}
    assert cells["core_capital"][2] == 3_000_000  # retained earnings only
    assert cells["total_assets"][2] == 13_000_000
    assert cells["core_capital_to_total_assets"][2] == 23.07  # 3 / 13 = 23.0769...
    assert cells["core_capital_minimum"][5] == "NOT MET"  # under KES 10 million

    got = api.get(url + "&format=csv", headers=auth(manager))
    assert got.status_code == 200 and got.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(got.data.decode())))
    assert ["total_deposits", "Total deposits", "10000000", "KES", "", ""] in rows

    dash = api.get(f"/api/v1/sasra/ratios?date={day.isoformat()}", headers=auth(auditor))
    assert dash.status_code == 200, dash.json
    ratios = {r["id"]: (r["value"], r["status"]) for r in (dash.json or {})["ratios"]}
    assert ratios["core_capital_to_total_assets"] == ("23.07", "green")
    assert ratios["institutional_capital_to_total_assets"] == ("23.07", "green")
    assert ratios["core_capital_to_total_deposits"] == ("30.00", "green")
    assert ratios["core_capital_minimum"] == (str(3_000_000 * KES), "red")
    assert ratios["liquidity_ratio"] == ("650.00", "green")  # 13 / 2

    with unit_of_work(session_factory) as s:
        actions = s.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("sasra.%"))
            .order_by(AuditEvent.id)
        ).all()  # fmt: skip
    assert actions == ["sasra.return", "sasra.return", "sasra.ratios"]

    assert api.get(url, headers=auth(teller)).status_code == 403
    assert api.get(url).status_code == 401
    missing = api.get(f"/api/v1/sasra/returns/balance_sheet?date={day}", headers=auth(auditor))
    assert missing.status_code == 404
    for query in ("", "?date=2026-13-01", "?date=yesterday", f"?date={today + timedelta(1)}",
                  f"?date={day}&format=pdf"):  # fmt: skip
        bad = api.get(f"/api/v1/sasra/returns/liquidity{query}", headers=auth(auditor))
        assert bad.status_code == 422, (query, bad.json)
        assert (bad.json or {})["code"] == "invalid_input"
    assert api.get("/api/v1/sasra/ratios", headers=auth(auditor)).status_code == 422
    form4 = api.get(f"/api/v1/sasra/returns/risk_classification?date={day}", headers=auth(auditor))
    assert form4.status_code == 409 and (form4.json or {})["code"] == "sasra_no_classification"


def test_an_unmapped_balance_is_a_409_naming_the_account(
    api: FlaskClient, make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    day = business_date(datetime.now(UTC)) - timedelta(days=1)
    with unit_of_work(session_factory) as s:
        ledger.create_account(
            s, code="1500", name="Land and buildings", type_="asset", purpose="system",
            no_overdraft=False, now=datetime.combine(day, time(9), tzinfo=UTC),
        )  # fmt: skip
        move(s, SystemAccount.BANK, SystemAccount.RESERVES, 5_000 * KES, day)
        move(s, "1500", SystemAccount.BANK, 5_000 * KES, day)
        s.commit()
    auditor = make_staff("auditor")
    for path in ("/returns/capital_adequacy", "/returns/liquidity", "/ratios"):
        got = api.get(f"/api/v1/sasra{path}?date={day}", headers=auth(auditor))
        assert got.status_code == 409, (path, got.json)
        body = got.json or {}
        assert body["code"] == "sasra_unmapped_balance" and "1500" in body["detail"]
