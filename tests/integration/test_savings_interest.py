"""Savings interest on real PostgreSQL (core.savings.interest): a day's accrual per account
with the remainder carried, one ledger entry per product and date, posting at the month's
end with withholding tax and an SMS, twice = once, dates in order, the minimum balance to
earn under both methods, balances taken as they stood at the day's close, and the property
that what is posted equals what was accrued over any period."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.members.registration import member_account_ids
from core.savings import interest, products
from core.savings.accounts import Credit, CreditSource, credit_member
from core.savings.interest import (
    AccrualOutOfOrder,
    AccrualUnsupported,
    accrue_day,
    dates_to_accrue,
)
from db.models import JournalEntry, Member, OutboxMessage
from db.models_savings import SavingsAccrual, SavingsAccrualRun, SavingsInterestPosting
from tests.loanutil import funded_member
from workers.savings_accrual import ADVISORY_LOCK_KEY, AccrualBusy, run_savings_accrual

JAN = date(2027, 1, 1)


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)  # noon in Nairobi
    return dataclasses.replace(deps, now=lambda: moment)


def set_terms(s: Session, deps: CoreDeps, purpose: str = "savings", **changes: Any) -> None:
    view = products.product_for(s, purpose)
    terms = products.parse_terms({**products.terms_payload(view.terms), **changes})
    products.change_product(s, deps, SYSTEM, view.id, view.current_version, terms)


def deposit(s: Session, deps: CoreDeps, member: Member, cents: int, day: date) -> None:
    key = f"dep:{member.id}:{day}:{cents}:{uuid4().hex[:8]}"
    credit_member(
        s, on(deps, day), Credit(member.id, "savings", cents, CreditSource.CASH, key, key)
    )


def saver(s: Session, deps: CoreDeps, cents: int, day: date = JAN - timedelta(days=1)) -> Member:
    member = funded_member(s, on(deps, day))
    if cents:
        deposit(s, deps, member, cents, day)
    return member


def savings_id(s: Session, member: Member) -> int:
    return member_account_ids(s, member.id)["savings"]


def balance_of(s: Session, account_id: int) -> int:
    return ledger.get_balance(s, account_id).balance_cents


def system(s: Session, code: SystemAccount) -> int:
    return balance_of(s, ledger.account_id_by_code(s, code))


def run(s: Session, deps: CoreDeps, first: date, last: date) -> list[interest.AccrualResult]:
    out = []
    day = first
    while day <= last:
        out.append(accrue_day(s, on(deps, day + timedelta(days=1)), day))
        day += timedelta(days=1)
    return out


def test_at_rate_zero_nothing_accrues_and_nothing_moves(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = saver(s, deps, 5_000_000)
    before = balance_of(s, savings_id(s, member))
    results = run(s, deps, JAN, date(2027, 1, 31))
    assert all(r.ran and r.accounts == 0 for r in results)
    assert s.scalar(select(func.count()).select_from(SavingsAccrual)) == 0
    kinds = (EntryKind.SAVINGS_ACCRUAL, EntryKind.SAVINGS_INTEREST)
    assert s.scalar(select(func.count()).where(JournalEntry.kind.in_(kinds))) == 0
    assert balance_of(s, savings_id(s, member)) == before


def test_a_month_accrued_daily_is_posted_with_withholding_tax_and_an_sms(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    set_terms(s, deps, rate_percent="7.3")  # KES 100,000 at 7.3% earns KES 20 a day
    member = saver(s, deps, 10_000_000)
    small = saver(s, deps, 123_457)  # 24.69... cents a day: the fraction carried, not lost
    expense0 = system(s, SystemAccount.INTEREST_ON_DEPOSITS)

    results = run(s, deps, JAN, date(2027, 1, 30))
    assert [r.by_product for r in results[:2]] == [{"SAV": 2024}, {"SAV": 2025}]
    acc = s.get(SavingsAccrual, savings_id(s, member), populate_existing=True)
    assert acc is not None and (acc.accrued_cents, acc.days) == (30 * 2000, 30)
    assert (
        system(s, SystemAccount.INTEREST_PAYABLE)
        == 30 * 2000 + 30 * 123_457 * 73_000 // interest.DENOMINATOR
    )
    assert s.scalar(select(func.count()).where(
        JournalEntry.kind == EntryKind.SAVINGS_ACCRUAL)) == 30  # one per product and day  # fmt: skip

    [last] = run(s, deps, date(2027, 1, 31), date(2027, 1, 31))
    small_gross = 31 * 123_457 * 73_000 // interest.DENOMINATOR  # 765 cents
    assert (last.posted_accounts, last.posted_gross_cents) == (2, 62_000 + small_gross)
    assert balance_of(s, savings_id(s, member)) == 10_000_000 + 62_000 - 9_300
    posted = s.scalars(select(SavingsInterestPosting).order_by(SavingsInterestPosting.id)).all()
    assert [(p.gross_cents, p.tax_cents, p.net_cents) for p in posted] == [
        (62_000, 9_300, 52_700), (765, 115, 650)  # 114.75 rounds up
    ]  # fmt: skip
    assert system(s, SystemAccount.INTEREST_PAYABLE) == 0  # every accrued cent posted
    assert system(s, SystemAccount.WITHHOLDING_TAX) == 9_300 + 115
    assert system(s, SystemAccount.INTEREST_ON_DEPOSITS) - expense0 == 62_000 + small_gross
    sms = s.scalar(
        select(OutboxMessage).where(OutboxMessage.recipient == member.msisdn,
                                    OutboxMessage.template == "savings_interest_posted")
    )  # fmt: skip
    assert sms is not None
    assert "to 31/01/2027: KES 620 less tax KES 93, KES 527 credited" in sms.body
    assert verify_ledger(s).ok

    # The sub-cent remainder of January stays with the account for February.
    acc = s.get(SavingsAccrual, savings_id(s, small), populate_existing=True)
    assert acc is not None and acc.accrued_cents == 0
    assert acc.remainder_units == (31 * 123_457 * 73_000) % interest.DENOMINATOR


def test_a_date_runs_once_and_dates_run_in_order(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    set_terms(s, deps, rate_percent="5")
    saver(s, deps, 1_000_000)
    first = accrue_day(s, on(deps, JAN + timedelta(days=1)), JAN)
    again = accrue_day(s, on(deps, JAN + timedelta(days=2)), JAN)
    assert first.ran and not again.ran
    assert s.scalar(select(func.count()).select_from(SavingsAccrualRun)) == 1
    with pytest.raises(AccrualOutOfOrder):
        accrue_day(s, on(deps, JAN + timedelta(days=9)), JAN + timedelta(days=3))  # a gap
    later = on(deps, JAN + timedelta(days=5))
    assert dates_to_accrue(s, later) == [JAN + timedelta(days=n) for n in range(1, 5)]
    with pytest.raises(AccrualOutOfOrder, match="not over"):
        dates_to_accrue(s, later, JAN + timedelta(days=5))  # today is not over


def test_the_minimum_balance_to_earn_by_day_or_by_the_average(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    set_terms(s, deps, rate_percent="10", min_balance_to_earn_cents=100_000)
    low = saver(s, deps, 99_999)
    rich = saver(s, deps, 100_000)
    run(s, deps, JAN, date(2027, 1, 31))
    assert s.get(SavingsAccrual, savings_id(s, low)) is not None
    earned = {p.account_id: p.gross_cents for p in s.scalars(select(SavingsInterestPosting))}
    assert savings_id(s, low) not in earned  # below the minimum every day: nothing
    assert earned[savings_id(s, rich)] == 31 * 100_000 * 100_000 // interest.DENOMINATOR

    # The average daily balance: February's average of the low saver is below the minimum
    # (accrued, then forfeited at the month's end); the rich one's is above it.
    set_terms(s, deps, balance_method="average_daily_balance")
    payable = system(s, SystemAccount.INTEREST_PAYABLE)
    [*_, end] = run(s, deps, date(2027, 2, 1), date(2027, 2, 28))
    assert end.forfeited_cents > 0 and end.posted_accounts == 1
    assert system(s, SystemAccount.INTEREST_PAYABLE) == payable == 0
    assert verify_ledger(s).ok


def test_the_balance_is_the_days_close_not_what_came_after(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    set_terms(s, deps, rate_percent="7.3")
    member = saver(s, deps, 10_000_000)
    deposit(s, deps, member, 10_000_000, JAN + timedelta(days=1))  # the morning after
    [r] = run(s, deps, JAN, JAN)  # run late: the second deposit is not the 1st's
    assert r.accrued_cents == 2000


@settings(
    max_examples=8, deadline=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(
    rate=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(30), places=4),
    moves=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 50_000_000)), max_size=5),
    opening=st.lists(st.integers(0, 100_000_000), min_size=1, max_size=3),
    days=st.integers(1, 50),
    method=st.sampled_from(["daily_balance", "average_daily_balance"]),
    minimum=st.integers(0, 20_000_000),
)
def test_posted_interest_equals_accrued_interest_over_any_period(
    db_session: Session, deps: CoreDeps, rate: Decimal, moves: list[tuple[int, int]],
    opening: list[int], days: int, method: str, minimum: int,
) -> None:  # fmt: skip
    s = db_session
    with s.begin_nested() as outer:
        set_terms(s, deps, rate_percent=str(rate), balance_method=method,
                  min_balance_to_earn_cents=minimum)  # fmt: skip
        members = [saver(s, deps, cents) for cents in opening]
        start = date(2027, 1, 15)
        for offset, cents in moves:
            deposit(s, deps, members[offset % len(members)], cents, start + timedelta(days=offset))
        expense0 = system(s, SystemAccount.INTEREST_ON_DEPOSITS)
        results = run(s, deps, start, start + timedelta(days=days - 1))
        accrued = sum(r.accrued_cents for r in results)
        forfeited = sum(r.forfeited_cents for r in results)
        gross = sum(r.posted_gross_cents for r in results)
        waiting = s.scalar(select(func.coalesce(func.sum(SavingsAccrual.accrued_cents), 0))) or 0
        # Every cent accrued is posted, forfeited or still waiting for its posting day,
        # and the ledger says the same.
        assert accrued == gross + forfeited + waiting
        assert system(s, SystemAccount.INTEREST_PAYABLE) == waiting
        assert system(s, SystemAccount.INTEREST_ON_DEPOSITS) - expense0 == accrued - forfeited
        rows = s.scalars(select(SavingsInterestPosting)).all()
        assert sum(p.gross_cents for p in rows) == gross
        assert sum(p.tax_cents for p in rows) == system(s, SystemAccount.WITHHOLDING_TAX)
        # Each account's figure is the exact sum of its days, the remainder carried.
        if method == "daily_balance" and not forfeited:
            for member in members:
                account = savings_id(s, member)
                expected, units = 0, 0
                for n in range(days):
                    day = start + timedelta(days=n)
                    bal = opening[members.index(member)] + sum(
                        c for o, c in moves
                        if members[o % len(members)] is member and start + timedelta(days=o) <= day
                    ) + sum(  # interest posted earlier compounds
                        p.net_cents for p in rows if p.account_id == account and p.business_date < day
                    )  # fmt: skip
                    cents, units = interest.accrue_one(
                        units, bal if bal >= minimum else 0, interest.rate_units(rate)
                    )
                    expected += cents
                got = sum(p.gross_cents for p in rows if p.account_id == account)
                acc = s.get(SavingsAccrual, account, populate_existing=True)
                assert got + (acc.accrued_cents if acc else 0) == expected
        assert verify_ledger(s).ok
        outer.rollback()


def test_the_run_at_the_edge_catches_up_and_refuses_a_second_run_at_once(
    factory: sessionmaker[Session], committed_pg: Engine, deps: CoreDeps
) -> None:
    with factory() as s:
        set_terms(s, deps, rate_percent="7.3")
        saver(s, deps, 10_000_000)
        s.commit()
    first = run_savings_accrual(
        factory, on(deps, JAN + timedelta(days=1)), lock_engine=committed_pg
    )
    assert [r.business_date for r in first.results] == [JAN]
    later = on(deps, JAN + timedelta(days=4))
    with committed_pg.connect() as holder:  # another run holds the lock
        assert holder.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}
        ).scalar_one()
        with pytest.raises(AccrualBusy):
            run_savings_accrual(factory, later, lock_engine=committed_pg)
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
    caught_up = run_savings_accrual(factory, later, lock_engine=committed_pg)
    assert [r.accrued_cents for r in caught_up.results] == [2000, 2000, 2000]
    assert str(run_savings_accrual(factory, later, lock_engine=committed_pg)).startswith("nothing")


def test_the_sqlite_demo_refuses_the_run(sqlite_engine: Engine, deps: CoreDeps) -> None:
    with Session(sqlite_engine) as session:
        with pytest.raises(AccrualUnsupported):
            accrue_day(session, on(deps, JAN + timedelta(days=1)), JAN)
        session.rollback()
