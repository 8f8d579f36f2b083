"""Close of day on real PostgreSQL (core.loans.close_of_day, workers.close_day): accrual day
by day equals the schedule, repayments settle what was accrued, a run twice is once, a run
stopped between steps resumes to one clean run, 40 days caught up equal 40 single days,
provisioning equals exposure × rate per category, the SASRA boundaries, and two runs at once."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.loans import accrual
from core.loans.close_of_day import CloseDayBusy, dates_to_close, run_step
from core.loans.vocabulary import CloseDayStatus, CloseDayStep
from core.risk.classification import DEFAULT_BANDS, Band, classify, provision_cents
from core.risk.vocabulary import LoanCategory as Category
from db.models import Account, JournalEntry, Posting
from db.models_close_day import (
    CloseDayRun,
    LoanCategoryChange,
    LoanDayState,
    LoanRiskBand,
)
from db.models_close_day import CloseDayStep as StepRow
from db.models_loans import Loan, LoanInstalment
from db.session import make_session_factory
from tests.loanutil import disbursed_loan, pay
from workers.close_day import advisory_lock, run_close_day

KES = 100
START = date(2026, 1, 10)  # a Saturday; monthly loans fall due on the 10th


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)  # noon in Nairobi
    return dataclasses.replace(deps, now=lambda: moment)


def close(factory: sessionmaker[Session], deps: CoreDeps, through: date, **kw: Any) -> Any:
    """Close up to ``through``, run the morning after."""
    return run_close_day(factory, on(deps, through + timedelta(days=1)), through=through, **kw)


def balance(s: Session, code: SystemAccount) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def state(s: Session, loan: Loan) -> LoanDayState:
    row = s.scalars(
        select(LoanDayState)
        .where(LoanDayState.loan_id == loan.id)
        .execution_options(populate_existing=True)
    ).one()
    return row


def instalments(s: Session, loan: Loan) -> list[LoanInstalment]:
    return list(
        s.scalars(
            select(LoanInstalment)
            .where(LoanInstalment.loan_id == loan.id)
            .order_by(LoanInstalment.number)
            .execution_options(populate_existing=True)
        )
    )


def periods(s: Session, loan: Loan) -> list[accrual.PeriodInterest]:
    return accrual.periods(
        loan.disbursed_on,
        [(i.number, i.due_on, i.interest_cents, i.paid_interest_cents, i.waived_interest_cents)
         for i in instalments(s, loan)],
    )  # fmt: skip


def close_day_ledger(s: Session) -> list[tuple[Any, ...]]:
    """Every close-of-day entry: key, kind, value date and its legs by account code."""
    rows = s.execute(
        select(JournalEntry.idempotency_key, JournalEntry.kind, JournalEntry.value_date,
               Account.code, Posting.amount_cents)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(Account, Account.id == Posting.account_id)
        .where(JournalEntry.kind.in_([EntryKind.LOAN_ACCRUAL, EntryKind.LOAN_PROVISION]))
        .order_by(JournalEntry.idempotency_key, Account.code)
    ).all()  # fmt: skip
    return [tuple(r) for r in rows]


def book_state(s: Session) -> list[tuple[Any, ...]]:
    states = s.execute(
        select(LoanDayState.loan_id, LoanDayState.accrued_through,
               LoanDayState.accrued_interest_cents, LoanDayState.classified_on,
               LoanDayState.days_past_due, LoanDayState.missed_instalments,
               LoanDayState.arrears_cents, LoanDayState.category, LoanDayState.exposure_cents,
               LoanDayState.provision_cents).order_by(LoanDayState.loan_id)
    ).all()  # fmt: skip
    history = s.execute(
        select(LoanCategoryChange.loan_id, LoanCategoryChange.business_date,
               LoanCategoryChange.category_from, LoanCategoryChange.category_to)
        .order_by(LoanCategoryChange.loan_id, LoanCategoryChange.business_date)
    ).all()  # fmt: skip
    return [tuple(r) for r in states] + [tuple(r) for r in history]


@contextmanager
def undone(s: Session) -> Iterator[None]:
    """Everything inside is rolled back afterwards (a savepoint on the test's connection)."""
    nested = s.connection().begin_nested()
    try:
        yield
    finally:
        nested.rollback()
        s.expire_all()


def receivable_matches_loans(s: Session) -> None:
    """Interest receivable is, loan by loan, what is recognised and not yet paid."""
    recognised = s.scalar(select(func.sum(LoanDayState.accrued_interest_cents))) or 0
    paid = s.scalar(select(func.sum(LoanInstalment.paid_interest_cents))) or 0
    # Every loan here was made in the test (each has its state row from its first close or
    # repayment), so recognised − paid is exactly the receivable.
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == recognised - paid


# ------------------------------------------------------------------ accrual


def test_daily_accrual_over_the_first_period_adds_up_to_its_interest_exactly(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START))  # KES 100,000 at 1 % a month, 12 months
    first = instalments(s, loan)[0]
    assert (first.due_on, first.interest_cents) == (date(2026, 2, 10), 100_000)
    days = (first.due_on - START).days  # 31
    accrued = []
    for n in range(days + 1):
        day = START + timedelta(days=n)
        close(session_factory, deps, day)
        accrued.append(state(s, loan).accrued_interest_cents)
        assert accrued[-1] == accrual.recognised_cents(periods(s, loan), day)  # SQL == Python
    daily = [b - a for a, b in zip(accrued, accrued[1:], strict=False)]
    assert accrued[0] == 0 and sum(daily) == 100_000 == accrued[-1]
    assert set(daily) <= {3225, 3226}  # 1,000.00 over 31 days, the remainder carried
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == 100_000
    # One accrual entry per product and day, never one per loan.
    entries = s.scalars(select(JournalEntry).where(JournalEntry.kind == EntryKind.LOAN_ACCRUAL))
    assert len(list(entries)) == days
    assert verify_ledger(s).ok


def test_a_repayment_settles_accrued_interest_from_receivable_and_the_rest_goes_to_income(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START))
    due = date(2026, 2, 10)
    close(session_factory, deps, due - timedelta(days=1))  # 30 of 31 days accrued
    accrued = state(s, loan).accrued_interest_cents
    assert accrued == 100_000 * 30 // 31
    income_before = balance(s, SystemAccount.LOAN_INTEREST_INCOME)
    pay(s, on(deps, due), loan, 888_488, "cod-pay-1")  # the first instalment, on its day
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == 0
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) - income_before == 100_000 - accrued
    close(session_factory, deps, due)  # the due date: nothing left to accrue of period 1
    assert state(s, loan).accrued_interest_cents == 100_000
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == 0
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) - income_before == 100_000 - accrued
    # Ten days into period 2, the member pays the loan off: the interest accrued of
    # period 2 is waived with the rest of it, and leaves income again.
    close(session_factory, deps, due + timedelta(days=10))
    assert state(s, loan).accrued_interest_cents == 100_000 + 92_115 * 10 // 28
    payoff = sum(i.principal_cents - i.paid_principal_cents for i in instalments(s, loan))
    repaid = pay(s, on(deps, due + timedelta(days=11)), loan, payoff, "cod-payoff")
    assert repaid.closed and repaid.waived_interest_cents > 0
    assert state(s, loan).accrued_interest_cents == 100_000
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == 0
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) - income_before == 100_000 - accrued
    # The closed loan's provision goes back at the next close.
    assert balance(s, SystemAccount.LOAN_LOSS_PROVISION) > 0
    close(session_factory, deps, due + timedelta(days=11))
    assert balance(s, SystemAccount.LOAN_LOSS_PROVISION) == 0
    receivable_matches_loans(s)
    assert verify_ledger(s).ok


def test_interest_paid_before_any_close_goes_to_income_and_is_never_accrued_again(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START))
    income = balance(s, SystemAccount.LOAN_INTEREST_INCOME)
    pay(s, on(deps, date(2026, 2, 10)), loan, 888_488, "cod-pay-early")
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) - income == 100_000
    close(session_factory, deps, date(2026, 2, 10))
    assert balance(s, SystemAccount.LOAN_INTEREST_INCOME) - income == 100_000
    assert balance(s, SystemAccount.INTEREST_RECEIVABLE) == 0
    receivable_matches_loans(s)


# ------------------------------------------------------------------ runs


def test_a_date_closed_twice_is_closed_once(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    disbursed_loan(s, on(deps, START))
    day = date(2026, 3, 1)
    first = close(session_factory, deps, day)
    assert [r.ran for r in first.steps] == [True, True, True]
    ledger_after, book_after = close_day_ledger(s), book_state(s)
    again = close(session_factory, deps, day)
    assert again.dates == [] and "nothing to close" in str(again)
    # Each step asked again directly: recorded figures back, nothing changed.
    for step in CloseDayStep:
        result = run_session(session_factory, deps, day, step)
        assert not result.ran and result.amount_cents == next(
            r.amount_cents for r in first.steps if r.step == step
        )
    assert close_day_ledger(s) == ledger_after and book_state(s) == book_after
    assert verify_ledger(s).ok


def run_session(factory: sessionmaker[Session], deps: CoreDeps, day: date, step: Any) -> Any:
    with factory() as s:
        result = run_step(s, on(deps, day + timedelta(days=1)), day, step)
        s.commit()
    return result


def test_a_run_stopped_between_steps_resumes_to_one_clean_run(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    disbursed_loan(s, on(deps, START))
    disbursed_loan(s, on(deps, START + timedelta(days=3)), frequency="weekly", term=20)
    day = date(2026, 3, 5)
    close(session_factory, deps, day - timedelta(days=1))
    with undone(s):
        close(session_factory, deps, day)
        clean = close_day_ledger(s), book_state(s)
    stopped = close(session_factory, deps, day, stop_after=CloseDayStep.ACCRUE)
    assert stopped.stopped and [r.step for r in stopped.steps] == [CloseDayStep.ACCRUE]
    run = s.scalars(select(CloseDayRun).where(CloseDayRun.business_date == day)).one()
    assert run.status == CloseDayStatus.RUNNING
    # Half-way: the accrual is posted, the provision is not.
    keys = {k for k, *_ in close_day_ledger(s)}
    assert any(k.startswith(f"close_day:{day}:accrue") for k in keys)
    assert not any(k.startswith(f"close_day:{day}:provision") for k in keys)
    resumed = close(session_factory, deps, day)
    assert [(r.step, r.ran) for r in resumed.steps] == [
        (CloseDayStep.ACCRUE, False), (CloseDayStep.CLASSIFY, True), (CloseDayStep.NOTIFY, True)
    ]  # fmt: skip
    assert (close_day_ledger(s), book_state(s)) == clean
    s.expire_all()
    assert s.get_one(CloseDayRun, run.id).status == CloseDayStatus.DONE
    assert verify_ledger(s).ok


def test_a_step_refused_writes_nothing_and_the_next_run_does_it_whole(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """The run stops after its accrual; the classification is then refused (its band
    table emptied): nothing of it is written, and once the bands are back the next run
    does it whole, to the same book as a clean run."""
    s = db_session
    disbursed_loan(s, on(deps, START))
    day = date(2026, 3, 5)
    with undone(s):
        close(session_factory, deps, day)
        clean = close_day_ledger(s), book_state(s)
    close(session_factory, deps, day, stop_after=CloseDayStep.ACCRUE)
    half = close_day_ledger(s), book_state(s)
    bands = [
        {c: getattr(b, c) for c in ("version", "category", "effective_from", "rank",
                                   "min_days", "min_missed", "provision_percent")}
        for b in s.scalars(select(LoanRiskBand))
    ]  # fmt: skip
    s.execute(delete(LoanRiskBand))
    with pytest.raises(DomainError, match="no band from 0 days"):
        close(session_factory, deps, day)
    assert (close_day_ledger(s), book_state(s)) == half
    assert s.scalar(select(func.count()).select_from(StepRow)) == 1  # the accrual only
    s.execute(insert(LoanRiskBand), bands)
    close(session_factory, deps, day)
    assert (close_day_ledger(s), book_state(s)) == clean


def test_forty_days_caught_up_equal_forty_single_days(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    disbursed_loan(s, on(deps, START))  # monthly, falls into arrears after 10 February
    disbursed_loan(s, on(deps, START + timedelta(days=5)), frequency="weekly", term=30,
                   amount_cents=2_000_000)  # fmt: skip
    disbursed_loan(s, on(deps, START + timedelta(days=12)), method="flat", term=3,
                   amount_cents=500_000)  # fmt: skip
    loan, _, _ = disbursed_loan(s, on(deps, START + timedelta(days=2)), term=6)
    close(session_factory, deps, START)  # the first run ever: one date
    last = START + timedelta(days=40)
    with undone(s):
        caught_up = close(session_factory, deps, last)
        assert len(caught_up.dates) == 40
        one_go = close_day_ledger(s), book_state(s)
    for n in range(1, 41):
        report = close(session_factory, deps, START + timedelta(days=n))
        assert report.dates == [START + timedelta(days=n)]
    assert (close_day_ledger(s), book_state(s)) == one_go
    assert (s.scalar(select(func.count()).select_from(LoanCategoryChange)) or 0) > 4
    receivable_matches_loans(s)
    assert verify_ledger(s).ok


def test_which_dates_a_run_closes(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    today = date(2026, 5, 20)
    assert dates_to_close(s, on(deps, today)) == [date(2026, 5, 19)]  # first run: yesterday
    with pytest.raises(InvalidInput) as refused:
        dates_to_close(s, on(deps, today), today)
    assert refused.value.reason == "not_over"
    with pytest.raises(InvalidInput):
        dates_to_close(s, on(deps, today), date(1990, 1, 1))
    for step in CloseDayStep:
        run_step(s, on(deps, today), date(2026, 5, 15), step)
    assert dates_to_close(s, on(deps, today)) == [date(2026, 5, d) for d in (16, 17, 18, 19)]
    assert dates_to_close(s, on(deps, today), date(2026, 5, 10)) == []


# ------------------------------------------------------------------ classification


def expected_provision(s: Session, day: date) -> tuple[int, dict[str, str]]:
    """Σ exposure × rate, computed in Python from the instalments and the loan accounts."""
    total, categories = 0, dict[str, str]()
    for loan in s.scalars(select(Loan).where(Loan.status == "active")):
        rows = instalments(s, loan)
        unpaid = [
            i for i in rows
            if i.due_on < day
            and i.due_cents - i.paid_cents - i.waived_interest_cents > 0
        ]  # fmt: skip
        days = (day - unpaid[0].due_on).days if unpaid else 0
        band = classify(days, len(unpaid))
        exposure = ledger.get_balance(s, loan.account_id).balance_cents
        total += provision_cents(exposure, band)
        categories[loan.reference] = band.category
    return total, categories


@settings(
    max_examples=8, deadline=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(
    loans=st.lists(
        st.tuples(
            st.integers(0, 400),  # days disbursed before the close
            st.sampled_from(["monthly", "weekly"]),
            st.integers(1, 24),  # term
            st.integers(1_000, 150_000),  # KES (the limit: 3 × KES 50,000 of deposits)
            st.integers(0, 3),  # instalments paid
        ),
        min_size=1, max_size=5,
    )
)  # fmt: skip
def test_provision_equals_exposure_times_rate_per_category(
    db_session: Session,
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
    loans: list[tuple[int, str, int, int, int]],
) -> None:
    s = db_session
    day = date(2027, 6, 15)
    with undone(s):
        for n, (back, frequency, term, kes, paid) in enumerate(loans):
            loan, _, _ = disbursed_loan(
                s, on(deps, day - timedelta(days=back)), frequency=frequency, term=term,
                amount_cents=kes * KES,
            )  # fmt: skip
            for k, row in enumerate(instalments(s, loan)[:paid]):
                pay(s, on(deps, row.due_on), loan, row.due_cents, f"cod-h-{n}-{k}-{loan.id}")
        close(session_factory, deps, day)
        total, categories = expected_provision(s, day)
        assert balance(s, SystemAccount.LOAN_LOSS_PROVISION) == total
        assert balance(s, SystemAccount.PROVISIONS_EXPENSE) == total
        for loan in s.scalars(select(Loan).where(Loan.status == "active")):
            assert state(s, loan).category == categories[loan.reference]
        receivable_matches_loans(s)
        assert verify_ledger(s).ok


def test_the_bands_seeded_are_the_defaults_in_the_code(db_session: Session) -> None:
    rows = db_session.scalars(
        select(LoanRiskBand).where(LoanRiskBand.version == 1).order_by(LoanRiskBand.rank)
    )
    seeded = tuple(
        Band(Category(r.category), r.rank, r.min_days, r.min_missed, r.provision_percent)
        for r in rows
    )
    assert seeded == DEFAULT_BANDS


DAYS = [(0, "performing"), (1, "watch"), (30, "watch"), (31, "substandard"),
        (180, "substandard"), (181, "doubtful"), (360, "doubtful"), (361, "loss")]  # fmt: skip
# Weekly loans with m instalments missed (the first missed 1 + 7(m − 1) days ago): the
# worse of the two bands.
MISSED = [(0, "performing"), (1, "watch"), (2, "substandard"), (6, "substandard"),
          (7, "doubtful"), (12, "doubtful"), (13, "loss")]  # fmt: skip


def test_sasra_boundaries_in_days_and_missed_instalments(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    day = date(2027, 6, 15)  # day − n falls on a day of the month up to 28 for every n
    by_days, by_missed = {}, {}
    for n, _ in DAYS:  # one instalment, due n days before the close
        due = day - timedelta(days=n)
        disbursed = date(due.year - (due.month == 1), (due.month - 2) % 12 + 1, due.day)
        loan, _, _ = disbursed_loan(s, on(deps, disbursed), term=1)
        assert instalments(s, loan)[0].due_on == due
        by_days[n] = loan
    for m, _ in MISSED:  # weekly, the m-th instalment due yesterday (m = 0: due today)
        first_due = day - timedelta(days=1 + 7 * (m - 1)) if m else day
        loan, _, _ = disbursed_loan(
            s, on(deps, first_due - timedelta(days=7)), frequency="weekly", term=20
        )
        by_missed[m] = loan
    close(session_factory, deps, day)
    for n, category in DAYS:
        st_ = state(s, by_days[n])
        assert (st_.days_past_due, st_.missed_instalments, st_.category) == (
            n,
            1 if n else 0,
            category,
        ), n
    for m, category in MISSED:
        st_ = state(s, by_missed[m])
        assert (st_.missed_instalments, st_.category) == (m, category), m
        assert st_.days_past_due == (1 + 7 * (m - 1) if m else 0)
    # Rows only on change: one row per loan (from none), none the next day for those
    # whose category holds.
    assert s.scalar(select(func.count()).select_from(LoanCategoryChange)) == len(DAYS) + len(MISSED)
    close(session_factory, deps, day + timedelta(days=1))
    changes = s.execute(
        select(LoanCategoryChange.loan_id, LoanCategoryChange.category_from,
               LoanCategoryChange.category_to)
        .where(LoanCategoryChange.business_date == day + timedelta(days=1))
    ).all()  # fmt: skip
    moved = {(by_days[n].id, a, b) for n, a, b in [
        (0, "performing", "watch"), (30, "watch", "substandard"),
        (180, "substandard", "doubtful"), (360, "doubtful", "loss")]}  # fmt: skip
    moved |= {(by_missed[0].id, "performing", "watch")}
    assert set(changes) >= moved
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ concurrency


def test_two_runs_at_once_close_each_date_once(committed_pg: Engine, deps: CoreDeps) -> None:
    factory = make_session_factory(committed_pg)
    with factory() as s:
        for n in range(3):
            disbursed_loan(s, on(deps, START + timedelta(days=n)))
        s.commit()
    through = START + timedelta(days=20)
    barrier = threading.Barrier(3)
    outcomes: list[str] = []

    def run() -> None:
        barrier.wait()
        try:
            close(factory, deps, through, lock_engine=committed_pg)
            outcomes.append("ran")
        except CloseDayBusy:
            outcomes.append("busy")

    def direct() -> None:  # no advisory lock: the run row's lock alone keeps it once
        barrier.wait()
        close(factory, deps, through)
        outcomes.append("ran")

    threads = [threading.Thread(target=run), threading.Thread(target=run),
               threading.Thread(target=direct)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "ran" in outcomes and len(outcomes) == 3
    with factory() as s:
        keys = [k for k, *_ in close_day_ledger(s)]
        assert len(keys) == 2 * len(set(keys))  # two legs per entry, each key once
        runs = s.scalars(select(CloseDayRun)).all()
        assert {r.status for r in runs} == {CloseDayStatus.DONE}
        assert len(runs) == 1  # the first run ever closes its one date
        assert verify_ledger(s).ok


def test_the_advisory_lock_refuses_a_second_run(committed_pg: Engine) -> None:
    with advisory_lock(committed_pg), pytest.raises(CloseDayBusy), advisory_lock(committed_pg):
        pass  # pragma: no cover
    with advisory_lock(committed_pg):  # let go: taken again
        pass
