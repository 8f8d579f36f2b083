"""SASRA returns on real PostgreSQL (core.reports.sasra; docs/reports/sasra.md): a seeded
ledger whose ratios were worked out by hand, every return line equal to the ledger's
balances of its accounts as at the date, a material balance no line maps blocking the
return with the account named, the XLSX opened back with openpyxl, Form 4 from a real
close of day, and the dashboard's colours."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.ledger import entries as ledger
from core.ledger.chart import AccountType, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.reports import sasra
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import Account, Member
from tests.loanutil import disbursed_loan, funded_member
from workers.close_day import run_close_day

KES = 100
DAY = date(2026, 6, 30)


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def move(s: Session, debit: str, credit: str, cents: int, day: date = DAY) -> None:
    ledger.post_entry(
        s, kind=EntryKind.ADJUSTMENT_MANUAL,
        legs=[ledger.Leg(ledger.account_id_by_code(s, debit), cents),
              ledger.Leg(ledger.account_id_by_code(s, credit), -cents)],
        idempotency_key=f"sasra:{uuid4().hex}", now=on_now(day), value_date=day,
    )  # fmt: skip


def on_now(day: date) -> datetime:
    return datetime.combine(day, time(9), tzinfo=UTC)


def pay_in(s: Session, deps: CoreDeps, member: Member, target: str, cents: int) -> None:
    key = f"s:{member.id}:{target}:{uuid4().hex[:8]}"
    credit_member(s, on(deps, DAY), Credit(member.id, target, cents, CreditSource.CASH, key, key))


def seed(s: Session, deps: CoreDeps) -> Member:
    """The book worked out by hand in docs/reports/sasra.md ("A worked example"), KES:
    deposits 8,000,000 and savings 2,000,000 and shares 9,000,000 paid in cash; retained
    earnings 3,000,000 in the bank; interest income 500,000 and interest on deposits
    200,000 through the bank; 300,000 in the collections float held in suspense."""
    a = funded_member(
        s, on(deps, DAY), deposits_cents=8_000_000 * KES, savings_cents=2_000_000 * KES
    )
    pay_in(s, deps, a, "shares", 9_000_000 * KES)
    move(s, SystemAccount.BANK, SystemAccount.RETAINED_EARNINGS, 3_000_000 * KES)
    move(s, SystemAccount.BANK, SystemAccount.LOAN_INTEREST_INCOME, 500_000 * KES)
    move(s, SystemAccount.INTEREST_ON_DEPOSITS, SystemAccount.BANK, 200_000 * KES)
    move(s, SystemAccount.MPESA_COLLECTIONS_FLOAT, SystemAccount.SUSPENSE, 300_000 * KES)
    return a


def test_capital_adequacy_gives_the_hand_computed_ratios(
    db_session: Session, deps: CoreDeps
) -> None:
    seed(db_session, deps)
    ret = sasra.build_return(db_session, "capital_adequacy", DAY)
    v: dict[str, Any] = {line.id: line.value for line in ret.lines}
    assert v["share_capital"] == 9_000_000 * KES
    assert v["institutional_capital"] == 3_300_000 * KES  # 3,000,000 + 500,000 - 200,000
    assert v["core_capital"] == 12_300_000 * KES
    assert v["total_assets"] == 22_600_000 * KES  # bank 22,300,000 + float 300,000
    assert v["total_deposits"] == 10_000_000 * KES
    assert v["core_capital_to_total_assets"] == Decimal("54.42")  # 12.3 / 22.6 = 54.424...
    assert v["institutional_capital_to_total_assets"] == Decimal("14.60")  # 14.601...
    assert v["core_capital_to_total_deposits"] == Decimal("123.00")
    assert all(line.met for line in ret.lines if line.met is not None)
    assert ret.checks == (("total_assets", 22_600_000 * KES, 22_600_000 * KES),)


def test_liquidity_gives_the_hand_computed_ratio(db_session: Session, deps: CoreDeps) -> None:
    seed(db_session, deps)
    ret = sasra.build_return(db_session, "liquidity", DAY)
    assert ret.line("liquid_assets").value == 22_600_000 * KES
    assert ret.line("liquidity_base").value == 2_300_000 * KES  # savings + suspense
    assert ret.line("liquidity_ratio").value == Decimal("982.60")  # 22.6 / 2.3 = 9.8260...
    assert ret.line("liquidity_ratio").met is True


def test_deposit_return_counts_accounts_with_a_balance(db_session: Session, deps: CoreDeps) -> None:
    seed(db_session, deps)
    funded_member(db_session, on(deps, DAY), deposits_cents=1_000 * KES)  # deposits only
    ret = sasra.build_return(db_session, "deposit_return", DAY)
    assert ret.line("savings_accounts").value == 1
    assert ret.line("deposit_accounts").value == 2
    assert ret.line("total_deposits").value == 10_001_000 * KES


@pytest.mark.parametrize("form", ["capital_adequacy", "liquidity", "deposit_return"])
def test_each_mapped_line_is_the_ledger_balance_of_its_accounts_as_at_the_date(
    db_session: Session, deps: CoreDeps, form: str
) -> None:
    s = db_session
    seed(s, deps)
    ret = sasra.build_return(s, form, DAY)
    layout = sasra.load_layout(form)
    accounts = s.execute(select(Account.id, Account.code, Account.type, Account.normal_side)).all()
    for row in layout.rows:
        if not row.accounts or row.measure != "amount":
            continue
        expected = 0
        for account_id, code, type_, side in accounts:
            if any(sasra.matches(p, code) for p in row.accounts):
                bal = ledger.get_balance(s, account_id).balance_cents  # the balance today
                expected += bal if side == AccountType(type_).normal_side else -bal
        line = ret.line(row.id)
        assert line.value == expected, row.id
        assert sum(gl.cents for gl in line.accounts) == expected
    # A move dated after the date is not in the date's return; it is in the next day's.
    move(s, SystemAccount.BANK, SystemAccount.RESERVES, 777 * KES, DAY + timedelta(days=1))
    assert sasra.build_return(s, form, DAY) == ret
    later = sasra.build_return(s, "capital_adequacy", DAY + timedelta(days=1))
    assert later.line("reserves").value == 777 * KES


def test_a_material_balance_no_line_maps_blocks_the_return_naming_the_account(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    seed(s, deps)
    ledger.create_account(
        s, code="1500", name="Land and buildings", type_="asset", purpose="system",
        no_overdraft=False, now=on_now(DAY),
    )  # fmt: skip
    move(s, "1500", SystemAccount.BANK, 99)  # under KES 1: not material
    assert sasra.build_return(s, "capital_adequacy", DAY).line("total_assets").value == (
        22_600_000 * KES - 99
    )
    move(s, "1500", SystemAccount.BANK, 1)  # now KES 1
    for form in ("capital_adequacy", "liquidity"):
        with pytest.raises(sasra.UnmappedBalance, match="account 1500 \\(Land and buildings\\)"):
            sasra.build_return(s, form, DAY)
    with pytest.raises(sasra.UnmappedBalance) as caught:
        sasra.ratio_dashboard(s, DAY)
    assert caught.value.context["accounts"] == ["1500"]
    # The deposit return's scope is the liabilities: an asset it does not report is no block.
    assert sasra.build_return(s, "deposit_return", DAY).line("savings").value == 2_000_000 * KES


def test_a_line_mapped_twice_breaks_the_ledger_check(db_session: Session, deps: CoreDeps) -> None:
    seed(db_session, deps)
    layout = sasra.load_layout("capital_adequacy")
    rows = tuple(
        dataclasses.replace(r, accounts=(*r.accounts, "1000")) if r.id == "receivables" else r
        for r in layout.rows
    )
    twice = dataclasses.replace(layout, rows=rows)
    balances = sasra.gl_balances(db_session, DAY)
    with pytest.raises(sasra.NotReconciled, match="total_assets"):
        sasra.evaluate(twice, DAY, balances)


def test_the_xlsx_opens_back_with_the_lines_in_their_cells(
    db_session: Session, deps: CoreDeps
) -> None:
    seed(db_session, deps)
    ret = sasra.build_return(db_session, "capital_adequacy", DAY)
    wb = load_workbook(io.BytesIO(sasra.to_xlsx(ret, "Umoja Sacco")))
    ws = wb["Capital adequacy return"]
    assert ws["A1"].value == "Sacco society" and ws["B1"].value == "Umoja Sacco"
    assert ws["B3"].value == DAY.isoformat()
    assert [c.value for c in ws[6]] == list(sasra.HEADER)
    by_id = {row[0].value: row for row in ws.iter_rows(min_row=7) if row[0].value}
    assert list(by_id) == [r.id for r in sasra.load_layout("capital_adequacy").rows]
    assert by_id["core_capital"][2].value == 12_300_000
    assert by_id["total_assets"][2].value == 22_600_000
    assert by_id["core_capital_to_total_assets"][2].value == pytest.approx(54.42)
    assert by_id["core_capital_to_total_assets"][4].value == 10
    assert by_id["core_capital_to_total_assets"][5].value == "met"
    assert by_id["core_capital_minimum"][4].value == 10_000_000
    rec = wb["Reconciliation"]
    bank = [r for r in rec.iter_rows(min_row=2, values_only=True) if r[1] == "1000"]
    assert bank == [("cash_and_bank", "1000", "Bank", 1, 22_300_000)]
    savings = [r for r in rec.iter_rows(min_row=2, values_only=True) if r[0] == "savings"]
    assert savings == [("savings", "2000-*", "accounts under 2000", 1, 2_000_000)]
    rows = list(csv.reader(io.StringIO(sasra.to_csv(ret, "Umoja Sacco").decode())))
    assert ["core_capital", ret.line("core_capital").label, "12300000", "KES", "", ""] in rows


def test_the_dashboard_is_green_amber_and_red_by_the_thresholds(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    seed(s, deps)
    assert {r.status for r in sasra.ratio_dashboard(s, DAY)} == {"green"}
    # 100,000,000 more in deposits: total assets 122,600,000, deposits 110,000,000.
    funded_member(s, on(deps, DAY), deposits_cents=100_000_000 * KES)
    got = {r.id: (r.value, r.status) for r in sasra.ratio_dashboard(s, DAY)}
    assert got == {
        "core_capital_to_total_assets": (Decimal("10.03"), "amber"),  # 12.3 / 122.6
        "institutional_capital_to_total_assets": (Decimal("2.69"), "red"),  # 3.3 / 122.6
        "core_capital_to_total_deposits": (Decimal("11.18"), "green"),  # 12.3 / 110
        "core_capital_minimum": (12_300_000 * KES, "green"),
        "liquidity_ratio": (Decimal("5330.43"), "green"),  # 122.6 / 2.3
    }


def test_unknown_forms_and_future_dates_are_refused(db_session: Session) -> None:
    with pytest.raises(NotFound):
        sasra.build_return(db_session, "balance_sheet", DAY)
    with pytest.raises(InvalidInput):
        sasra.build_return(db_session, "liquidity", DAY, today=DAY - timedelta(days=1))


def test_form_4_comes_from_the_close_of_day_and_agrees_with_the_ledger(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    start = date(2026, 1, 10)
    loan, _, _ = disbursed_loan(s, on(deps, start))
    day = date(2026, 3, 1)
    with pytest.raises(sasra.NoClassification):
        sasra.build_return(s, "risk_classification", day)
    run_close_day(session_factory, on(deps, day + timedelta(days=1)), through=day)
    ret = sasra.build_return(s, "risk_classification", day)
    principal = ledger.get_balance(s, loan.account_id).balance_cents
    provision = ledger.get_balance(
        s, ledger.account_id_by_code(s, SystemAccount.LOAN_LOSS_PROVISION)
    ).balance_cents
    v: dict[str, Any] = {line.id: line.value for line in ret.lines}
    assert v["total_exposure"] == v["loans_ledger"] == principal > 0
    loans = {c: v[f"{c}_loans"] for c in ("performing", "watch", "substandard", "doubtful", "loss")}
    assert sum(loans.values()) == 1
    assert v["total_provision_required"] == provision > 0
    assert v["exposure_difference"] == v["provision_difference"] == 0
    assert ret.line("provision_difference").met is True


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    moves=st.lists(
        st.tuples(
            st.sampled_from([a for a in SystemAccount if a != SystemAccount.LOAN_LOSS_PROVISION]),
            st.sampled_from([a for a in SystemAccount if a != SystemAccount.LOAN_LOSS_PROVISION]),
            st.integers(1, 10**12),
        ).filter(lambda m: m[0] != m[1]),
        max_size=8,
    )
)
def test_total_assets_is_always_deposits_liabilities_and_capital(
    db_session: Session, moves: list[tuple[SystemAccount, SystemAccount, int]]
) -> None:
    """Whatever the SACCO's own accounts hold, the return balances: total assets equal
    deposits, other liabilities and core capital (income less expenses included), and the
    ledger's asset total (the return's own check)."""
    for debit, credit, cents in moves:
        move(db_session, debit, credit, cents)
    ret = sasra.build_return(db_session, "capital_adequacy", DAY)
    v: dict[str, Any] = {line.id: line.value for line in ret.lines}
    assert v["total_assets"] == v["total_deposits"] + v["other_liabilities"] + v["core_capital"]
