"""Fixed deposits on real PostgreSQL (core.savings.fixed_deposits;
docs/savings/fixed-deposits.md): opened from savings with the product's terms locked,
interest paid exactly (monthly or at maturity) net of withholding tax, matured by the
daily run per the rollover instruction, closed early with the penalty; a day run twice is
run once, and over any term the interest paid is exactly the term's interest."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.errors import InsufficientFunds, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.members import exit as member_exit
from core.members.registration import member_account_ids
from core.savings import fixed_deposits as fds
from core.savings import products
from core.savings.fixed_deposits import FixedDepositRefused, interest_through
from db.models import Account, JournalEntry, Member, Posting
from db.models_savings import FixedDeposit
from db.session import unit_of_work
from tests.loanutil import funded_member
from workers.savings_accrual import run_savings_accrual

KES = 100
START = date(2027, 1, 15)


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)  # noon in Nairobi
    return dataclasses.replace(deps, now=lambda: moment)


def make_product(s: Session, deps: CoreDeps, code: str = "FD6", **terms: Any) -> None:
    raw = {**products.DEFAULTS, "name": f"Fixed {code}", "kind": "fixed_deposit",
           "rate_percent": "9", "term_months": 6, "interest_at": "maturity",
           "penalty": "forfeit_interest", **terms}  # fmt: skip
    products.create_product(s, deps, SYSTEM, code, products.parse_terms(raw))


def savings(s: Session, member: Member) -> int:
    return ledger.get_balance(s, member_account_ids(s, member.id)["savings"]).balance_cents


def system(s: Session, code: SystemAccount) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def fd_interest(s: Session, fd_reference: str) -> int:
    """Gross interest the ledger booked for the deposit (all its terms)."""
    expense = ledger.account_id_by_code(s, SystemAccount.INTEREST_ON_DEPOSITS)
    return int(
        s.scalar(
            select(func.coalesce(func.sum(Posting.amount_cents), 0))
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .where(
                Posting.account_id == expense,
                JournalEntry.kind == EntryKind.FIXED_DEPOSIT_INTEREST,
                JournalEntry.memo.like(f"Fixed deposit {fd_reference}%"),
            )
        )
        or 0
    )


def run_days(s: Session, deps: CoreDeps, first: date, last: date) -> None:
    day = first
    while day <= last:
        fds.run_day(s, on(deps, day + timedelta(days=1)), day)
        day += timedelta(days=1)


def test_open_from_savings_then_mature_and_pay_out_with_tax(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = on(deps, START)
    make_product(s, d0)
    member = funded_member(s, d0, savings_cents=150_000 * KES)
    fd = fds.open_fixed_deposit(s, d0, member_id=member.id, product_code="fd6",
                                amount_cents=100_000 * KES, rollover="pay_out")  # fmt: skip
    assert savings(s, member) == 50_000 * KES
    assert ledger.get_balance(s, fd.account_id).balance_cents == 100_000 * KES
    assert (fd.maturity_date, fd.rate_percent, fd.term_months) == (date(2027, 7, 15),
                                                                   Decimal(9), 6)  # fmt: skip
    # The product's rate changes afterwards: the deposit keeps its own.
    view = products.get_product(s, s.scalar(select(FixedDeposit.product_id)) or 0)
    products.change_product(
        s, d0, SYSTEM, view.id, view.current_version,
        products.parse_terms({**products.terms_payload(view.terms), "rate_percent": "4"}),
    )  # fmt: skip
    days = (date(2027, 7, 15) - START).days  # 181
    gross = 100_000 * KES * 90_000 * days // (365 * 100 * 10_000)
    assert gross == interest_through(100_000 * KES, Decimal(9), START, fd.maturity_date)
    tax = (gross * 150_000 + 500_000) // 1_000_000  # 15 %, half up
    wht_before = system(s, SystemAccount.WITHHOLDING_TAX)
    run_days(s, deps, START, date(2027, 7, 14))
    assert fd_interest(s, fd.reference) == 0  # nothing before maturity
    assert fd.status == "active"
    entries = s.scalar(select(func.count()).select_from(JournalEntry)) or 0
    for _ in range(2):  # the maturity day twice: once
        fds.run_day(s, on(deps, date(2027, 7, 16)), date(2027, 7, 15))
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries + 2
    s.refresh(fd)
    assert fd.status == "matured" and fd.interest_paid_cents == gross and fd.tax_cents == tax
    assert savings(s, member) == 150_000 * KES + gross - tax
    assert system(s, SystemAccount.WITHHOLDING_TAX) - wht_before == tax
    account = s.get_one(Account, fd.account_id)
    assert account.balance_cents == 0 and account.closed_at is not None
    assert verify_ledger(s).ok


def test_monthly_interest_and_rollovers_pay_exactly_the_terms_interest(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = on(deps, START)
    make_product(s, d0, "FDM", rate_percent="10.5", term_months=3, interest_at="monthly")
    member = funded_member(s, d0, savings_cents=20_000 * KES)
    fd = fds.open_fixed_deposit(s, d0, member_id=member.id, product_code="FDM",
                                amount_cents=12_345_67, rollover="principal")  # fmt: skip
    before = savings(s, member)
    run_days(s, deps, START, date(2027, 2, 15))
    first = interest_through(12_345_67, Decimal("10.5"), START, date(2027, 2, 15))
    assert fd_interest(s, fd.reference) == first > 0  # the first month, to savings
    run_days(s, deps, date(2027, 2, 16), date(2027, 4, 15))  # maturity: a new term
    s.refresh(fd)
    term = interest_through(12_345_67, Decimal("10.5"), START, date(2027, 4, 15))
    assert fd.status == "matured" and fd.interest_paid_cents == term
    assert fd_interest(s, fd.reference) == term
    [new] = s.scalars(select(FixedDeposit).where(FixedDeposit.rolled_from_id == fd.id)).all()
    assert (new.principal_cents, new.start_date, new.status) == (12_345_67, date(2027, 4, 15),
                                                                 "active")  # fmt: skip
    assert new.account_id == fd.account_id and new.reference == f"{fd.reference}/2"
    paid = s.scalar(select(func.sum(FixedDeposit.tax_cents)))
    assert savings(s, member) == before + term - (paid or 0)  # principal stays on deposit

    # Principal and interest rolled: the net interest joins the new principal.
    other = funded_member(s, d0, savings_cents=5_000 * KES)
    both = fds.open_fixed_deposit(s, d0, member_id=other.id, product_code="FDM",
                                  amount_cents=5_000 * KES,
                                  rollover="principal_and_interest")  # fmt: skip
    run_days(s, deps, date(2027, 4, 16), date(2027, 4, 16))
    s.refresh(both)
    [rolled] = s.scalars(select(FixedDeposit).where(FixedDeposit.rolled_from_id == both.id))
    last_month = both.interest_paid_cents - interest_through(
        5_000 * KES, Decimal("10.5"), START, date(2027, 3, 15)
    )
    last_tax = (last_month * 150_000 + 500_000) // 1_000_000
    assert rolled.principal_cents == 5_000 * KES + last_month - last_tax
    assert verify_ledger(s).ok


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    principal=st.integers(1, 50_000_000_00),
    rate=st.decimals(Decimal("0.0001"), Decimal(30), places=4),
    months=st.integers(1, 14),
    monthly=st.booleans(),
    stops=st.lists(st.integers(0, 450), max_size=6),
)
def test_interest_paid_over_a_term_is_exactly_the_terms_interest_and_twice_is_once(
    db_session: Session, deps: CoreDeps, principal: int, rate: Decimal, months: int,
    monthly: bool, stops: list[int],
) -> None:  # fmt: skip
    s = db_session
    with s.begin_nested() as outer:
        d0 = on(deps, START)
        make_product(s, d0, "FDP", rate_percent=str(rate), term_months=months,
                     interest_at="monthly" if monthly else "maturity")  # fmt: skip
        member = funded_member(s, d0, savings_cents=principal)
        fd = fds.open_fixed_deposit(s, d0, member_id=member.id, product_code="FDP",
                                    amount_cents=principal, rollover="pay_out")  # fmt: skip
        # The job run on some days (in order, some twice), then surely after maturity.
        for offset in [*sorted(stops), *sorted(stops)[-1:], 460, 460]:
            day = START + timedelta(days=offset)
            fds.run_day(s, on(deps, day + timedelta(days=1)), day)
        s.refresh(fd)
        term = interest_through(principal, rate, START, fd.maturity_date)
        assert fd.status == "matured" and fd.interest_paid_cents == term
        assert fd_interest(s, fd.reference) == term
        assert savings(s, member) == principal + term - fd.tax_cents
        assert ledger.get_balance(s, fd.account_id).balance_cents == 0
        outer.rollback()


def test_closing_early_forfeits_interest_or_charges_the_rate(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = on(deps, START)
    make_product(s, d0, "FDF", term_months=12, interest_at="monthly")
    make_product(s, d0, "FDR", term_months=12, penalty="rate", penalty_rate_percent="2.5")
    member = funded_member(s, d0, savings_cents=300_000 * KES)
    forfeit = fds.open_fixed_deposit(s, d0, member_id=member.id, product_code="FDF",
                                     amount_cents=100_000 * KES, rollover="pay_out")  # fmt: skip
    rate = fds.open_fixed_deposit(s, d0, member_id=member.id, product_code="FDR",
                                  amount_cents=100_000 * KES, rollover="pay_out")  # fmt: skip
    run_days(s, deps, START, date(2027, 3, 20))  # two monthly payments on the first
    s.refresh(forfeit)
    net_paid = forfeit.interest_paid_cents - forfeit.tax_cents
    assert net_paid > 0
    before = savings(s, member)
    d = on(deps, date(2027, 3, 21))
    with pytest.raises(InvalidInput):
        fds.close_early(s, d, SYSTEM, forfeit.id, note="x")
    closed = fds.close_early(s, d, SYSTEM, forfeit.id, note="school fees due")
    assert closed.status == "closed_early" and closed.penalty_cents == net_paid
    assert savings(s, member) == before + 100_000 * KES - net_paid  # the interest came back
    with pytest.raises(FixedDepositRefused) as again:
        fds.close_early(s, d, SYSTEM, forfeit.id, note="school fees due")
    assert again.value.context["reason"] == "not_active"

    before = savings(s, member)
    earned = interest_through(100_000 * KES, Decimal(9), START, date(2027, 3, 21))
    tax = (earned * 150_000 + 500_000) // 1_000_000
    fees = system(s, SystemAccount.FEE_INCOME)
    closed = fds.close_early(s, d, SYSTEM, rate.id, note="medical bill")
    assert closed.penalty_cents == 2_500 * KES  # 2.5 % of the principal
    assert closed.interest_paid_cents == earned
    assert savings(s, member) == before + 100_000 * KES - 2_500 * KES + earned - tax
    assert system(s, SystemAccount.FEE_INCOME) - fees == 2_500 * KES  # the penalty is income
    assert s.get_one(Account, rate.account_id).closed_at is not None
    assert verify_ledger(s).ok


def test_bad_input_and_refusals_write_nothing(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    d0 = on(deps, START)
    make_product(s, d0)
    products.create_product(
        s, d0, SYSTEM, "HOLI",
        products.parse_terms({**products.DEFAULTS, "name": "Holiday", "kind": "ordinary_savings"}),
    )  # fmt: skip
    member = funded_member(s, d0, savings_cents=1_000 * KES)
    suspended = funded_member(s, d0, savings_cents=1_000 * KES, status="suspended")
    entries = s.scalar(select(func.count()).select_from(JournalEntry))
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"amount_cents": 0}, InvalidInput), ({"amount_cents": True}, InvalidInput),
        ({"amount_cents": "100"}, InvalidInput), ({"rollover": "forever"}, InvalidInput),
        ({"product_code": ""}, InvalidInput), ({"product_code": "NOPE"}, NotFound),
        ({"product_code": "HOLI"}, FixedDepositRefused),
        ({"amount_cents": 2_000 * KES}, InsufficientFunds),
    ]  # fmt: skip
    for change, error in cases:
        args = {"product_code": "FD6", "amount_cents": 500 * KES, "rollover": "pay_out", **change}
        with pytest.raises(error), s.begin_nested():
            fds.open_fixed_deposit(s, d0, member_id=member.id, **args)
    with pytest.raises(MemberNotAllowed):
        fds.open_fixed_deposit(s, d0, member_id=suspended.id, product_code="FD6",
                               amount_cents=100, rollover="pay_out")  # fmt: skip
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries
    assert s.scalar(select(func.count()).select_from(FixedDeposit)) == 0
    # Product definitions: a fixed deposit needs its terms; other kinds refuse them.
    for raw, field in (
        ({"kind": "fixed_deposit"}, "term_months"),
        ({"kind": "fixed_deposit", "term_months": 0, "interest_at": "maturity",
          "penalty": "forfeit_interest"}, "term_months"),
        ({"kind": "fixed_deposit", "term_months": 6, "interest_at": "maturity",
          "penalty": "rate"}, "penalty_rate_percent"),
        ({"kind": "ordinary_savings", "term_months": 6}, "term_months"),
    ):  # fmt: skip
        with pytest.raises(InvalidInput) as bad:
            products.parse_terms({**products.DEFAULTS, "name": "Bad one", **raw})
        assert bad.value.context["field"] == field


def test_an_open_fixed_deposit_blocks_the_exit_until_closed(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    d0 = on(deps, START)
    make_product(s, d0)
    member = funded_member(s, d0, savings_cents=1_000 * KES, deposits_cents=500 * KES)
    fd = fds.open_fixed_deposit(s, d0, member_id=member.id, product_code="FD6",
                                amount_cents=800 * KES, rollover="pay_out")  # fmt: skip
    policy = member_exit.ExitPolicy(notice_days=30)
    member_exit.request_exit(s, d0, member_id=member.id, reason="relocating", policy=policy,
                             channel=member_exit.ExitChannel.STAFF)  # fmt: skip
    later = on(deps, START + timedelta(days=31))
    reasons = [r for r, _ in member_exit.plan(s, later, member.id, policy).blockers]
    assert reasons == ["fixed_deposit_open"]
    fds.close_early(s, later, SYSTEM, fd.id, note="member is leaving")
    the = member_exit.plan(s, later, member.id, policy)
    assert the.blockers == () and the.refund_cents == 1_500 * KES


def test_the_daily_savings_job_matures_a_deposit_once(
    factory: sessionmaker[Session], committed_pg: Engine, deps: CoreDeps
) -> None:
    """``manage.py savings-accrue``'s run: the date's fixed deposits with the accrual, in
    its transaction; the date again does nothing."""
    with factory() as s:
        d0 = on(deps, START)
        make_product(s, d0, "FD1", term_months=1)
        member = funded_member(s, d0, savings_cents=10_000 * KES)
        fd = fds.open_fixed_deposit(s, d0, member_id=member.id, product_code="FD1",
                                    amount_cents=10_000 * KES, rollover="pay_out")  # fmt: skip
        fd_id, member_id = fd.id, member.id
        s.commit()
    maturity = date(2027, 2, 15)
    next_day = on(deps, maturity + timedelta(days=1))
    report = run_savings_accrual(factory, next_day, lock_engine=committed_pg)
    [result] = report.results
    assert result.business_date == maturity and result.fd_matured == 1
    gross = interest_through(10_000 * KES, Decimal(9), START, maturity)
    assert result.fd_interest_cents == gross > 0
    assert "fd_matured=1" in str(report)
    assert str(run_savings_accrual(factory, next_day, lock_engine=committed_pg)).startswith(
        "nothing"
    )
    with factory() as s:
        row = s.get_one(FixedDeposit, fd_id)
        assert row.status == "matured" and row.interest_paid_cents == gross
        member = s.get_one(Member, member_id)
        assert savings(s, member) == 10_000 * KES + gross - row.tax_cents


def test_two_opens_racing_for_the_same_savings_and_two_closes_race_once(
    factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """Real threads: two tellers open deposits from savings that hold enough for one; one
    opens, the other is refused, savings never below zero. Then two staff close the same
    deposit at once: it closes once, the penalty is charged once."""
    d0 = on(deps, START)
    with unit_of_work(factory) as s:
        make_product(s, d0, "FDT", penalty="rate", penalty_rate_percent="1")
        member = funded_member(s, d0, savings_cents=1_500 * KES)
        member_id = member.id

    def both(work: Callable[[Session], str]) -> list[str]:
        barrier = threading.Barrier(2)
        out: list[str] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                barrier.wait()
                with unit_of_work(factory) as s:
                    out.append(work(s))
            except (InsufficientFunds, FixedDepositRefused) as refused:
                out.append(refused.code)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        return sorted(out)

    def open_one(s: Session) -> str:
        return fds.open_fixed_deposit(s, d0, member_id=member_id, product_code="FDT",
                                      amount_cents=1_000 * KES, rollover="pay_out").reference  # fmt: skip

    opened = both(open_one)
    assert opened[0].startswith("FD") and opened[1] == "insufficient_funds"
    with unit_of_work(factory) as s:
        member = s.get_one(Member, member_id)
        assert savings(s, member) == 500 * KES
        [fd_id] = s.scalars(select(FixedDeposit.id).where(FixedDeposit.member_id == member_id))
    later = on(deps, START + timedelta(days=30))

    def close(s: Session) -> str:
        return fds.close_early(s, later, SYSTEM, fd_id, note="both at once").status

    assert both(close) == ["closed_early", "fixed_deposit_refused"]
    with unit_of_work(factory) as s:
        row = s.get_one(FixedDeposit, fd_id)
        earned = interest_through(1_000 * KES, Decimal(9), START, START + timedelta(days=30))
        assert row.penalty_cents == 10 * KES and row.interest_paid_cents == earned
        member = s.get_one(Member, member_id)
        assert savings(s, member) == 1_500 * KES - 10 * KES + earned - row.tax_cents
        assert verify_ledger(s).ok
