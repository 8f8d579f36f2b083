"""Financial statements from the ledger at any date: a hand-checked small ledger, and a
property test that every statement balances over random postings (issue 16, part 1)."""

from __future__ import annotations

from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from core import reports
from core.ledger.chart import AccountType, Purpose, SystemAccount
from core.reports import render
from tests.reportutil import account, post

D = date(2026, 3, 10)


def seed(session: Session) -> None:
    """Hand-checked: see the expected figures in each test."""
    mpesa = account(session, SystemAccount.MPESA_COLLECTIONS_FLOAT, AccountType.ASSET)
    savings = account(session, "2000-T1", AccountType.LIABILITY, Purpose.SAVINGS)
    shares = account(session, "3000-T1", AccountType.EQUITY, Purpose.SHARES)
    loan = account(session, "1100-T1-L1", AccountType.ASSET, Purpose.LOAN)
    interest_rec = account(session, SystemAccount.INTEREST_RECEIVABLE, AccountType.ASSET)
    interest = account(session, SystemAccount.LOAN_INTEREST_INCOME, AccountType.INCOME)
    fees = account(session, SystemAccount.FEE_INCOME, AccountType.INCOME)
    charges = account(session, SystemAccount.MPESA_CHARGES, AccountType.EXPENSE)
    stray = account(session, "9000-X", AccountType.ASSET)  # no statement line takes it
    post(session, date(2025, 6, 1), (interest_rec, 20_000), (interest, -20_000))
    post(session, date(2026, 1, 10), (mpesa, 10_000_000), (savings, -10_000_000))
    post(session, date(2026, 1, 15), (mpesa, 500_000), (shares, -500_000))
    post(session, date(2026, 2, 5), (loan, 5_000_000), (savings, -5_000_000))
    post(session, date(2026, 2, 20), (interest_rec, 50_000), (interest, -50_000))
    post(session, date(2026, 3, 3), (charges, 3_000), (mpesa, -3_000))
    post(session, date(2026, 3, 4), (savings, 10_000), (fees, -10_000))
    post(session, date(2026, 3, 5), (stray, 7_000), (mpesa, -7_000))
    post(session, date(2026, 3, 11), (mpesa, 99_900), (savings, -99_900))  # after D: not in
    session.flush()


def build(session: Session, name: str, **raw: object) -> reports.Report:
    spec = reports.get(name)
    params = reports.parse_params(spec, raw, today=date(2026, 12, 31))
    return reports.run(session, spec, params, source={"database": "primary", "lag_seconds": None})


def rows(report: reports.Report, section: int = 0) -> dict[str, tuple[object, ...]]:
    return {str(r[0]).strip(): r[1:] for r in report.sections[section].rows}


def test_trial_balance_at_a_date_counts_by_value_date(db_session: Session) -> None:
    seed(db_session)
    tb = build(db_session, "trial_balance", as_of="2026-03-10")
    by_code = {r[0]: (r[3], r[4]) for r in tb.sections[0].rows}
    assert by_code["1010"] == (10_490_000, 0)
    assert by_code["2000-T1"] == (0, 14_990_000)  # the 11 March deposit is not in
    assert by_code["1100-T1-L1"] == (5_000_000, 0)
    assert by_code["1200"] == (70_000, 0)
    assert by_code[""] == (15_570_000, 15_570_000)
    assert tb.checks == (("debits = credits", True),)
    earlier = build(db_session, "trial_balance", as_of="2026-01-31")
    assert {r[0]: r[4] for r in earlier.sections[0].rows}["2000-T1"] == 10_000_000


def test_financial_position_with_comparatives_and_the_unmapped_account(db_session: Session) -> None:
    seed(db_session)
    sfp = build(db_session, "financial_position", as_of="2026-03-10")
    r = rows(sfp)
    assert r["Cash and bank balances (incl. M-Pesa floats)"] == (10_490_000, 10_500_000, 0)
    assert r["Loans to members"] == (5_000_000, 5_000_000, 0)
    assert r["Interest and penalties receivable"] == (70_000, 70_000, 20_000)
    assert r["Unmapped accounts"] == (7_000, 0, 0)
    assert r["Total assets"] == (15_567_000, 15_570_000, 20_000)
    assert r["Members' savings"] == (14_990_000, 15_000_000, 0)
    assert r["Share capital"] == (500_000, 500_000, 0)
    assert r["Result for the period not yet closed"] == (77_000, 70_000, 20_000)
    assert r["Total liabilities and equity"] == (15_567_000, 15_570_000, 20_000)
    assert all(ok for _, ok in sfp.checks) and len(sfp.checks) == 6
    assert any("9000-X" in n for n in sfp.sections[0].notes)
    assert sfp.meta["unmapped_accounts"] == 1
    text = render.to_csv(sfp).decode()
    assert "155670.00" in text and "Unmapped: 9000-X" in text


def test_comprehensive_income_this_month_last_month_ytd_last_ytd(db_session: Session) -> None:
    seed(db_session)
    soci = build(db_session, "comprehensive_income", as_of="2026-03-10")
    r = rows(soci)
    assert r["Interest income on loans"] == (0, 50_000, 50_000, 0)
    assert r["Fees and commissions"] == (10_000, 0, 10_000, 0)
    assert r["M-Pesa charges"] == (3_000, 0, 3_000, 0)
    assert r["Surplus (deficit) for the period"] == (7_000, 50_000, 57_000, 0)
    period = build(db_session, "income_period", **{"from": "2025-01-01", "to": "2025-12-31"})
    assert rows(period)["Surplus (deficit) for the period"] == (20_000, 0)


def test_movements_per_account(db_session: Session) -> None:
    seed(db_session)
    mv = build(db_session, "account_movements", **{"from": "2026-03-01", "to": "2026-03-31"})
    by_code = {r[0]: r[3:] for r in mv.sections[0].rows}
    # opening, debits, credits, closing (debit-positive)
    assert by_code["1010"] == (10_500_000, 99_900, 10_000, 10_589_900)
    assert by_code["2000-T1"] == (-15_000_000, 10_000, 99_900, -15_089_900)
    assert mv.checks == (("period debits = period credits", True),)
    assert render.to_xlsx(mv)[:2] == b"PK"  # a zip: an XLSX workbook


CODES = [
    ("1010", AccountType.ASSET),
    ("1300", AccountType.ASSET),  # the contra asset
    ("2000-P1", AccountType.LIABILITY),
    ("2200", AccountType.LIABILITY),
    ("3000-P1", AccountType.EQUITY),
    ("4000", AccountType.INCOME),
    ("5100", AccountType.EXPENSE),
    ("8000-P", AccountType.LIABILITY),  # unmapped
    ("8100-P", AccountType.INCOME),  # unmapped
]

entries = st.lists(
    st.tuples(
        st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 6, 30)),
        st.lists(
            st.tuples(
                st.integers(0, len(CODES) - 1), st.integers(-10_000_000, 10_000_000).filter(bool)
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda leg: leg[0],
        ),
        st.integers(0, len(CODES) - 1),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=entries, as_of=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 6, 30)))
def test_every_statement_balances_over_random_postings(
    db_session: Session, batch: list[tuple[date, list[tuple[int, int]], int]], as_of: date
) -> None:
    ids = [account(db_session, code, t) for code, t in CODES]
    for on, legs, balancing in batch:
        total = sum(c for _, c in legs)
        used = {i for i, _ in legs}
        if total == 0 or balancing in used:
            continue
        post(db_session, on, *[(ids[i], c) for i, c in legs], (ids[balancing], -total))
    db_session.flush()
    for name in ("trial_balance", "financial_position", "comprehensive_income"):
        built = build(db_session, name, as_of=as_of.isoformat())
        assert built.checks and all(ok for _, ok in built.checks), (name, built.checks)
    tb = {
        r[0]: r[3] - r[4]
        for r in build(db_session, "trial_balance", as_of=as_of.isoformat()).sections[0].rows
    }
    sfp = rows(build(db_session, "financial_position", as_of=as_of.isoformat()))
    assets = sum(v for code, v in tb.items() if code in ("1010", "1300"))
    assert sfp["Total assets"][0] == assets  # the position equals the trial balance
