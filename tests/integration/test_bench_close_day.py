"""bench/close_day.py stays runnable and right (issue 13, "Show"): its set-based seed of 200
loans gives a book the ledger's checks accept, the real close of day closes its opening date
and the next, and the bench's naive per-loan baseline computes, loan by loan, what the
set-based run writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bench.close_day import Book, close_through, naive_day, run_figures, sample_ids, seed
from core.kernel.calendar import business_date
from core.ledger.entries import trial_balance
from core.ledger.verify import verify_ledger
from core.loans.vocabulary import CloseDayStatus, CloseDayStep, LoanStatus
from db.base import utcnow
from db.models_close_day import CloseDayRun, LoanDayState
from db.models_close_day import CloseDayStep as StepRow
from db.models_loans import Loan
from tests.settings import PG_URL

LOANS = 200


@pytest.fixture
def book() -> Iterator[Book]:
    """The bench's own database beside the test database (it is dropped and re-created)."""
    url = make_url(PG_URL)
    url = url.set(database=f"{url.database}_bench_close_day")
    seeded = seed(
        url.render_as_string(hide_password=False),
        LOANS,
        business_date(utcnow()) - timedelta(days=5),
    )
    try:
        yield seeded
    finally:
        seeded.dispose()


def test_seed_then_one_day_closes_it_and_the_ledger_balances(book: Book) -> None:
    # The seeded book: every loan, a mix of states, and a ledger verify-ledger accepts, whose
    # loan accounts hold what the schedules say is unpaid of the principal.
    assert book.loans == LOANS and book.active > 0 and book.closed > 0
    with book.factory() as s:
        assert verify_ledger(s).ok
        owed = s.execute(
            text(
                "SELECT (SELECT sum(a.balance_cents) FROM loans l JOIN accounts a "
                "ON a.id = l.account_id), (SELECT sum(principal_cents - paid_principal_cents) "
                "FROM loan_instalments)"
            )
        ).one()
        assert owed[0] == owed[1] > 0

    close_through(book, book.opening)
    day = book.opening + timedelta(days=1)
    ids = sample_ids(book, 60)
    _, naive = naive_day(book, day, ids)  # rolled back: the run below starts from the same
    seconds, report, per_date = close_through(book, day)

    assert report.dates == [day] and [r.step for r in report.steps] == list(CloseDayStep)
    assert all(r.ran for r in report.steps) and len(per_date) == 1 and seconds > 0
    assert report.steps[0].amount_cents > 0  # a day's interest accrued on the book
    with book.factory() as s:
        run = s.scalars(select(CloseDayRun).where(CloseDayRun.business_date == day)).one()
        assert run.status == CloseDayStatus.DONE
        assert s.scalar(
            select(func.count()).select_from(StepRow).where(StepRow.run_id == run.id)
        ) == len(CloseDayStep)
        active = s.scalar(
            select(func.count()).select_from(Loan).where(Loan.status == LoanStatus.ACTIVE)
        )
        closed_today = s.scalar(
            select(func.count())
            .select_from(LoanDayState)
            .where(LoanDayState.accrued_through == day, LoanDayState.classified_on == day)
        )
        assert active == closed_today == book.active
        categories = set(s.scalars(select(LoanDayState.category).distinct()))
        assert len(categories - {None}) >= 3  # mixed: performing, watch, substandard, ...
        tb = trial_balance(s)
        assert tb.balanced  # the trial balance nets to zero
        assert verify_ledger(s).ok
    assert run_figures(book, ids) == naive  # the baseline and the run agree, loan by loan
