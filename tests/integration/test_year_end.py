"""Year end on real PostgreSQL (core.savings.year_end): a run previewed, submitted by one
manager and approved by another, posted once (twice = once) with every member's amounts
exactly as previewed, tax to its payable account, the net where each member chose, an SMS
each; blocked when a capital ratio would fall below its minimum; the ledger balanced; the
withholding tax remittance report."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.approvals.vocabulary import ApprovalStatus
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.members.registration import member_account_ids
from core.savings import year_end as ye
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import ApprovalRequest, JournalEntry, Member, OutboxMessage, StaffUser
from db.models_year_end import YearEndRun
from tests.loanutil import funded_member

KES = 100
YEAR = 2026
POSTING_DAY = date(2027, 3, 15)  # after the annual general meeting
THRESHOLD = 50_000 * KES


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def staff(s: Session, role: str = "manager") -> Principal:
    name = f"{role}.{uuid4().hex[:6]}"
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def pay_in(s: Session, deps: CoreDeps, member: Member, target: str, cents: int, day: date) -> None:
    key = f"y:{member.id}:{target}:{uuid4().hex[:8]}"
    credit_member(s, on(deps, day), Credit(member.id, target, cents, CreditSource.CASH, key, key))


def capital(s: Session, deps: CoreDeps, cents: int) -> None:
    """Retained earnings from earlier years, held in the bank."""
    ledger.post_entry(
        s, kind=EntryKind.ADJUSTMENT_MANUAL,
        legs=[ledger.Leg(ledger.account_id_by_code(s, SystemAccount.BANK), cents),
              ledger.Leg(ledger.account_id_by_code(s, SystemAccount.RETAINED_EARNINGS), -cents)],
        idempotency_key=f"capital:{uuid4().hex}", now=on(deps, date(2025, 12, 1)).now(),
        value_date=date(2025, 12, 1),
    )  # fmt: skip


def balance(s: Session, member: Member, purpose: str) -> int:
    return ledger.get_balance(s, member_account_ids(s, member.id)[purpose]).balance_cents


def system(s: Session, code: SystemAccount) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def body(**changes: object) -> dict[str, object]:
    return {"financial_year": YEAR, "dividend_rate_percent": "12", "rebate_rate_percent": "8",
            "dividend_method": "closing_balance", "rebate_method": "monthly_pro_rata",
            **changes}  # fmt: skip


def members(s: Session, deps: CoreDeps) -> tuple[Member, Member]:
    a = funded_member(s, on(deps, date(2025, 6, 1)))
    b = funded_member(s, on(deps, date(2025, 6, 1)))
    pay_in(s, deps, a, "shares", 10_000 * KES, date(2025, 6, 1))
    pay_in(s, deps, a, "deposits", 12_000 * KES, date(2025, 6, 1))
    pay_in(s, deps, a, "deposits", 1_200 * KES, date(YEAR, 1, 20))
    pay_in(s, deps, b, "shares", 5_000 * KES, date(YEAR, 7, 1))
    pay_in(s, deps, b, "deposits", 6_000 * KES, date(YEAR, 10, 2))
    return a, b


def submit_and_approve(s: Session, deps: CoreDeps, run_id: int) -> ApprovalRequest:
    d = on(deps, POSTING_DAY)
    req = ye.submit_run(s, d, staff(s), run_id, large_threshold_cents=THRESHOLD)
    return approvals.decide(s, d, staff(s), req.id, approve=True)


def test_a_run_is_previewed_approved_and_posted_exactly_as_previewed_once(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    capital(s, deps, 10_000_000 * KES)
    a, b = members(s, deps)
    ye.set_payout_choice(s, deps, staff(s), b.id, "shares")
    d = on(deps, POSTING_DAY)
    run = ye.create_run(s, d, staff(s), body())
    shown = ye.preview(s, run.id)
    mine = {x.member_id: x for x in shown.lines if x.member_id in (a.id, b.id)}
    # a: shares 10,000 × 12% = 1,200 (tax 60); deposits 12,000 × 8% + 1,200 × 8% × 11/12
    # = 960 + 88 = 1,048 (tax 157.20). b: 5,000 × 12% = 600 (tax 30); 6,000 in October
    # earns 2/12: 80 (tax 12).
    assert mine[a.id].amounts() == (a.id, 120_000, 6_000, 104_800, 15_720, 203_080)
    assert mine[b.id].amounts() == (b.id, 60_000, 3_000, 8_000, 1_200, 63_800)
    assert mine[b.id].destination == "shares"
    before = {m.id: (balance(s, m, "savings"), balance(s, m, "shares")) for m in (a, b)}
    wht0, re0 = system(s, SystemAccount.WITHHOLDING_TAX), system(s, SystemAccount.RETAINED_EARNINGS)

    decided = submit_and_approve(s, deps, run.id)
    assert decided.status == ApprovalStatus.APPROVED, decided.result
    s.refresh(run)
    assert (run.status, run.posted_year, run.posted_on) == ("posted", YEAR, POSTING_DAY)
    # Preview = posting, member by member, and the totals are the sum of the members'.
    assert ye.frozen_lines(s, run.id) == shown.lines
    assert (run.net_cents, run.members) == (shown.totals.net_cents, len(shown.lines))
    assert balance(s, a, "savings") == before[a.id][0] + 203_080
    assert balance(s, b, "shares") == before[b.id][1] + 63_800
    tax = shown.totals.dividend_tax_cents + shown.totals.rebate_tax_cents
    assert system(s, SystemAccount.WITHHOLDING_TAX) == wht0 + tax
    assert system(s, SystemAccount.RETAINED_EARNINGS) == re0 - shown.totals.dividend_gross_cents
    assert system(s, SystemAccount.DIVIDENDS_PAYABLE) == 0
    assert verify_ledger(s).ok

    texts = list(
        s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == a.id, OutboxMessage.template == "year_end_paid"
            )
        )
    )
    assert texts == [
        f"{deps.sacco_name}: 2026 dividend KES 1,200 + rebate KES 1,048 - tax KES 217.20 = "
        "KES 2,030.80, paid to your savings."
    ]

    # Twice = once: the same approval's verb again, and the run again, post nothing more.
    entries = s.scalar(select(JournalEntry.id).order_by(JournalEntry.id.desc()).limit(1))
    again = ye.post_run(s, d, staff(s), {"run_id": run.id, "digest": run.digest})
    assert again["posted"] is False and again["net_cents"] == run.net_cents
    assert s.scalar(select(JournalEntry.id).order_by(JournalEntry.id.desc()).limit(1)) == entries
    with pytest.raises(ye.YearEndRefused):
        ye.submit_run(s, d, staff(s), run.id, large_threshold_cents=THRESHOLD)
    other = ye.create_run(s, d, staff(s), body(dividend_rate_percent="1"))
    with pytest.raises(ye.YearEndRefused) as taken:
        ye.submit_run(s, d, staff(s), other.id, large_threshold_cents=THRESHOLD)
    assert taken.value.context["reason"] == "year_taken"

    report = ye.withholding_tax_report(s, 2027, 3)
    assert report.due_on == date(2027, 4, 20)
    by = {(r.kind, r.source): r.tax_cents for r in report.rows}
    assert by[("dividend", "dividend")] == shown.totals.dividend_tax_cents
    assert by[("interest", "deposit_rebate")] == shown.totals.rebate_tax_cents
    assert report.total_tax_cents == report.ledger_withheld_cents == tax


def test_a_run_that_would_break_a_capital_ratio_is_refused_naming_it(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    members(s, deps)
    d = on(deps, POSTING_DAY)
    run = ye.create_run(s, d, staff(s), body())
    found = ye.preview(s, run.id)
    assert "institutional_capital_to_total_assets" in [m.ratio for m in found.below_minimum]
    with pytest.raises(ye.CapitalRatioTooLow) as refused:
        ye.submit_run(s, d, staff(s), run.id, large_threshold_cents=THRESHOLD)
    assert "institutional_capital_to_total_assets" in str(refused.value)
    assert s.get(YearEndRun, run.id).status == "draft"  # type: ignore[union-attr]


def test_bad_rates_and_unknown_or_open_years_are_refused(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    members(s, deps)
    d = on(deps, POSTING_DAY)
    for bad, field in (
        (body(dividend_rate_percent="-1"), "dividend_rate_percent"),
        (body(rebate_rate_percent="1e9"), "rebate_rate_percent"),
        (body(dividend_rate_percent=12.5), "dividend_rate_percent"),
        (body(dividend_rate_percent="1.00001"), "dividend_rate_percent"),
        (body(rebate_method="daily"), "rebate_method"),
        (body(financial_year=2027), "financial_year"),
        (body(financial_year="2026"), "financial_year"),
    ):
        with pytest.raises(InvalidInput) as refused:
            ye.create_run(s, d, staff(s), bad)
        assert refused.value.context.get("field") == field, bad
    with pytest.raises(NotFound):
        ye.create_run(s, d, staff(s), body(financial_year=1990))


def test_the_preview_changes_with_entries_dated_in_the_year_and_posting_then_refuses(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    capital(s, deps, 10_000_000 * KES)
    a, _ = members(s, deps)
    d = on(deps, POSTING_DAY)
    run = ye.create_run(s, d, staff(s), body())
    req = ye.submit_run(s, d, staff(s), run.id, large_threshold_cents=THRESHOLD)
    # A late entry dated in the year: the amounts approved are no longer the ledger's.
    key = f"late:{uuid4().hex}"
    ledger.post_entry(
        s, kind=EntryKind.ADJUSTMENT_MANUAL,
        legs=[ledger.Leg(ledger.account_id_by_code(s, SystemAccount.BANK), 100 * KES),
              ledger.Leg(member_account_ids(s, a.id)["shares"], -100 * KES)],
        idempotency_key=key, now=d.now(), value_date=date(YEAR, 12, 31),
    )  # fmt: skip
    decided = approvals.decide(s, d, staff(s), req.id, approve=True)
    assert decided.status == ApprovalStatus.FAILED
    assert "preview_stale" in (decided.result or "") or "differ" in (decided.result or "")
    s.refresh(run)
    assert run.status == "pending_approval" and run.posted_year is None
    # Submitted again, it is approved with the new amounts.
    assert submit_and_approve(s, deps, run.id).status == ApprovalStatus.APPROVED


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(st.integers(0, 5_000_000), st.integers(0, 5_000_000),
                       st.integers(1, 12)), min_size=1, max_size=4),
    st.sampled_from(["closing_balance", "days_held"]),
    st.sampled_from(["monthly_pro_rata", "average_monthly_balance"]),
)  # fmt: skip
def test_property_preview_equals_posting_and_totals_equal_the_members(
    session_factory: object,
    deps: CoreDeps,
    history: list[tuple[int, int, int]],
    dividend_method: str,
    rebate_method: str,
) -> None:
    factory = session_factory
    with factory() as s:  # type: ignore[operator]
        capital(s, deps, 10_000_000 * KES)
        for shares, deposits, month in history:
            m = funded_member(s, on(deps, date(YEAR, 1, 1)))
            if shares:
                pay_in(s, deps, m, "shares", shares, date(YEAR, month, 1))
            if deposits:
                pay_in(s, deps, m, "deposits", deposits, date(YEAR, month, 1))
        d = on(deps, POSTING_DAY)
        run = ye.create_run(s, d, staff(s), body(dividend_method=dividend_method,
                                                rebate_method=rebate_method))  # fmt: skip
        shown = ye.preview(s, run.id)
        if not shown.lines:
            s.rollback()
            return
        payable0 = system(s, SystemAccount.DIVIDENDS_PAYABLE)
        assert submit_and_approve(s, deps, run.id).status == ApprovalStatus.APPROVED
        s.refresh(run)
        posted = ye.frozen_lines(s, run.id)
        assert [x.amounts() for x in posted] == [x.amounts() for x in shown.lines]
        assert run.net_cents == sum(x.net_cents for x in posted)
        assert run.dividend_gross_cents == sum(x.dividend_gross_cents for x in posted)
        assert system(s, SystemAccount.DIVIDENDS_PAYABLE) == payable0
        again = ye.post_run(s, d, staff(s), {"run_id": run.id, "digest": run.digest})
        assert again["posted"] is False
        assert verify_ledger(s).ok
        s.rollback()
