"""Penalties, the Reg. 31 cap, the inline catch-up and a crash mid-run, on real PostgreSQL
(core.loans.close_of_day; docs/loans/close-of-day.md): each loan's penalty equals the
day-by-day Python model, the penalty entries add up to the loans' figures, a repayment
pays the penalty first, the cap stops interest and penalties exactly at the principal
outstanding when the loan became delinquent, a repayment on a loan whose nights were not
run counts the penalty owed and the nights then post nothing twice, and a close-of-day
process killed mid-run then run again is one clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time as clock
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.loans import accrual
from core.loans.repayments import position
from core.loans.vocabulary import CloseDayStatus, CloseDayStep
from core.risk.classification import classify, provision_cents
from db.models import Account, JournalEntry, Posting
from db.models_close_day import CloseDayRun, LoanDayState
from db.models_close_day import CloseDayStep as StepRow
from db.models_loans import Loan, LoanInstalment
from db.session import make_session_factory
from tests.integration.test_close_of_day import (
    START,
    balance,
    close,
    instalments,
    on,
    periods,
    receivable_matches_loans,
    run_session,
    state,
    undone,
)
from tests.loanutil import disbursed_loan, pay
from tests.settings import PG_URL

ROOT = Path(__file__).resolve().parents[2]
DUE = date(2026, 2, 10)  # the first instalment of a monthly loan disbursed on START
FIRST = 888_488  # its principal and interest: KES 100,000 at 1 % a month over 12 months


# ------------------------------------------------------------------ the Python model


def day_units(rows: list[LoanInstalment], day: date, grace: int, factor: int) -> int:
    """One day's penalty units for a loan with these instalments (the nightly SQL's rule,
    written again from the docs: days past due of the oldest unpaid instalment due before
    the day; the principal and interest unpaid of those due before it)."""
    late = [i for i in rows if i.due_on < day]
    unpaid = [i for i in late if i.due_cents - i.paid_cents - i.waived_interest_cents > 0]
    days = (day - min(i.due_on for i in unpaid)).days if unpaid else 0
    overdue = sum(
        i.principal_cents + i.interest_cents - i.paid_principal_cents - i.paid_interest_cents
        - i.waived_interest_cents
        for i in late
    )  # fmt: skip
    return accrual.penalty_day_units(overdue, days, grace, factor)


def penalty_entries(s: Session) -> int:
    """Σ of what close of day debited to penalty receivable (nights and catch-ups)."""
    return int(
        s.scalar(
            select(func.coalesce(func.sum(Posting.amount_cents), 0))
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .join(Account, Account.id == Posting.account_id)
            .where(
                JournalEntry.kind == EntryKind.LOAN_ACCRUAL,
                Account.code == str(SystemAccount.PENALTY_RECEIVABLE),
            )
        )  # fmt: skip
        or 0
    )


def penalties_match_loans(s: Session) -> None:
    """Penalty receivable = Σ per loan (charged − paid − waived); the penalty entries add
    up to what the loans were charged; penalty income = what was charged."""
    rows = s.execute(
        select(func.coalesce(func.sum(LoanDayState.penalty_accrued_cents), 0),
               func.coalesce(func.sum(LoanDayState.penalty_paid_cents), 0),
               func.coalesce(func.sum(LoanDayState.penalty_waived_cents), 0))
    ).one()  # fmt: skip
    charged, paid, waived = (int(v) for v in rows)
    assert balance(s, SystemAccount.PENALTY_RECEIVABLE) == charged - paid - waived
    assert penalty_entries(s) == charged == balance(s, SystemAccount.PENALTY_INCOME)


def key_count(s: Session, like: str) -> int:
    return int(
        s.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.idempotency_key.like(like))
        )  # fmt: skip
        or 0
    )


# ------------------------------------------------------------------ grace and daily charge


@pytest.mark.parametrize("grace", [0, 7])
def test_the_penalty_starts_the_day_after_the_grace_and_is_charged_daily(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps, grace: int
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START), penalty_grace_days=grace)
    factor = accrual.penalty_factor(Decimal("1.0000"), monthly=True)
    close(session_factory, deps, DUE)
    assert state(s, loan).penalty_accrued_cents == 0
    units, charged = 0, []
    for n in range(1, grace + 5):
        day = DUE + timedelta(days=n)
        close(session_factory, deps, day)
        units += day_units(instalments(s, loan), day, grace, factor)
        row = state(s, loan)
        assert row.penalty_accrued_cents == accrual.penalty_cents(units)  # SQL == Python
        assert row.penalty_units == units
        charged.append(row.penalty_accrued_cents)
    # Nothing through the last day of grace (days past due = grace), then every day on
    # the instalment overdue: KES 8,884.88 × 12 % a year / 365 = 292.0974… cents a day.
    assert charged[:grace] == [0] * grace
    assert charged[grace:] == [FIRST * factor * k // accrual.PENALTY_DENOMINATOR
                               for k in range(1, 5)] == [292, 584, 876, 1168]  # fmt: skip
    # One penalty entry per product and day charged, never one per loan.
    assert key_count(s, "close_day:%:penalty:%") == 4
    penalties_match_loans(s)
    assert verify_ledger(s).ok


def test_a_repayment_pays_the_penalty_first_and_settles_penalty_receivable(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START), penalty_grace_days=0)
    close(session_factory, deps, DUE)
    close(session_factory, deps, DUE + timedelta(days=4))
    owed = state(s, loan).penalty_accrued_cents
    assert owed == 1168
    pos = position(s, on(deps, DUE + timedelta(days=5)), loan.id)
    assert pos.arrears_cents == FIRST + owed  # the member is shown the penalty owed
    income = balance(s, SystemAccount.PENALTY_INCOME)
    repaid = pay(s, on(deps, DUE + timedelta(days=5)), loan, 1000, "pen-pay-1")
    assert (repaid.penalty_cents, repaid.interest_cents) == (1000, 0)
    assert state(s, loan).penalty_paid_cents == 1000
    assert balance(s, SystemAccount.PENALTY_RECEIVABLE) == owed - 1000
    assert balance(s, SystemAccount.PENALTY_INCOME) == income  # income when charged
    penalties_match_loans(s)
    # The rest of the penalty, then the whole instalment: the loan is current again, the
    # delinquency ends and no penalty is charged any more.
    repaid = pay(s, on(deps, DUE + timedelta(days=5)), loan, FIRST + owed - 1000, "pen-pay-2")
    assert repaid.penalty_cents == owed - 1000 and repaid.principal_cents > 0
    close(session_factory, deps, DUE + timedelta(days=10))
    row = state(s, loan)
    assert (row.penalty_accrued_cents, row.penalty_paid_cents) == (owed, owed)
    assert row.delinquent_since is None and row.charged_since_delinquent_cents == 0
    assert balance(s, SystemAccount.PENALTY_RECEIVABLE) == 0
    penalties_match_loans(s)
    receivable_matches_loans(s)
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ hypothesis


@settings(
    max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(
    loans=st.lists(
        st.tuples(
            st.integers(20, 120),  # days disbursed before the first close
            st.sampled_from(["monthly", "weekly"]),
            st.integers(1, 12),  # term
            st.integers(1_000, 100_000),  # KES
            st.decimals(Decimal("0.0001"), Decimal("10"), places=4),  # penalty rate
            st.booleans(),  # monthly rate (else annual)
            st.integers(0, 10),  # grace days
        ),
        min_size=1, max_size=3,
    ),
    payments=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 14), st.integers(1, 400_000)),
                      max_size=4),
)  # fmt: skip
def test_the_penalty_entries_add_up_to_each_loans_figures_over_random_arrears(
    db_session: Session,
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
    loans: list[tuple[int, str, int, int, Decimal, bool, int]],
    payments: list[tuple[int, int, int]],
) -> None:
    """Random overdue loans closed for 14 days, with repayments on random days: each
    loan's penalty equals the Python model applied day by day to its instalments as they
    stood, the penalty entries add up to the loans' figures, and penalty receivable is
    Σ charged − paid."""
    s = db_session
    first = date(2027, 3, 1)
    with undone(s):
        made = []
        for back, frequency, term, kes, rate, monthly, grace in loans:
            loan, _, _ = disbursed_loan(
                s, on(deps, first - timedelta(days=back)), frequency=frequency, term=term,
                amount_cents=kes * 100, penalty_rate_percent=rate,
                penalty_rate_period="monthly" if monthly else "annual",
                penalty_grace_days=grace,
            )  # fmt: skip
            made.append((loan, grace, accrual.penalty_factor(rate, monthly)))
        close(session_factory, deps, first)  # a loan's first close: that day only
        expected = {}
        for loan, grace, factor in made:
            expected[loan.id] = day_units(instalments(s, loan), first, grace, factor)
            assert state(s, loan).penalty_units == expected[loan.id]
        for n in range(1, 15):
            day = first + timedelta(days=n)
            for k, (which, on_day, cents) in enumerate(payments):
                loan = made[which % len(made)][0]
                s.refresh(loan)
                if on_day == n and loan.status == "active":  # one key per payment drawn
                    pay(s, on(deps, day), loan, cents, f"pen-h-{k}-{n}-{loan.id}")
            close(session_factory, deps, day)
            for loan, grace, factor in made:
                s.refresh(loan)
                if loan.status == "active":
                    expected[loan.id] += day_units(instalments(s, loan), day, grace, factor)
        for loan, _, _ in made:
            row = state(s, loan)
            assert row.penalty_units == expected[loan.id]
            assert row.penalty_accrued_cents == accrual.penalty_cents(expected[loan.id])
            assert row.interest_capped_cents == 0  # far from the cap here
        penalties_match_loans(s)
        receivable_matches_loans(s)
        assert verify_ledger(s).ok


# ------------------------------------------------------------------ Reg. 31


def close_on(factory: sessionmaker[Session], deps: CoreDeps, day: date) -> None:
    """Both steps of ``day`` (dates need not follow each other: the SQL covers the days
    since each loan's own date)."""
    for step in CloseDayStep:
        run_session(factory, deps, day, step)


def test_penalties_stop_exactly_at_the_principal_outstanding_when_the_loan_became_delinquent(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    # KES 10,000 in one instalment at 1 % a month; penalty 10 % a month, no grace.
    loan, _, _ = disbursed_loan(
        s, on(deps, START), amount_cents=1_000_000, term=1, penalty_rate_percent=Decimal(10),
        penalty_grace_days=0,
    )  # fmt: skip
    close_on(session_factory, deps, DUE)
    close_on(session_factory, deps, DUE + timedelta(days=1))
    row = state(s, loan)
    assert (row.delinquent_since, row.delinquent_principal_cents) == (
        DUE + timedelta(days=1), 1_000_000
    )  # fmt: skip
    cap = 1_000_000
    per_day = 1_010_000 * accrual.penalty_factor(Decimal(10), monthly=True)
    reached = next(n for n in range(1, 1000) if accrual.penalty_cents(n * per_day) >= cap)
    assert accrual.penalty_cents(reached * per_day) > cap  # not a whole day's worth left
    before = DUE + timedelta(days=reached - 1)
    close_on(session_factory, deps, before)
    row = state(s, loan)
    assert row.penalty_accrued_cents == accrual.penalty_cents((reached - 1) * per_day) < cap
    assert row.charged_since_delinquent_cents == row.penalty_accrued_cents
    close_on(session_factory, deps, before + timedelta(days=1))  # the cap is reached
    row = state(s, loan)
    assert row.penalty_accrued_cents == cap == row.charged_since_delinquent_cents
    close_on(session_factory, deps, before + timedelta(days=30))  # and stays
    row = state(s, loan)
    assert row.penalty_accrued_cents == cap and row.penalised_through == before + timedelta(30)
    assert key_count(s, f"close_day:{before + timedelta(days=30)}:penalty:%") == 0
    penalties_match_loans(s)
    assert verify_ledger(s).ok


def owed_interest_begun(s: Session, loan: Loan, day: date) -> int:
    """The interest the member owes (less waived) of the periods begun by ``day``."""
    return sum(
        p.interest_cents - p.waived_interest_cents for p in periods(s, loan) if p.starts_on < day
    )


def test_interest_stops_at_the_cap_and_what_it_stops_is_waived_never_owed(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    # KES 10,000 at 10 % a month over 24 months, no penalty: unpaid, the interest accrued
    # since the first missed instalment reaches the principal then in about 15 months.
    loan, _, _ = disbursed_loan(
        s, on(deps, START), amount_cents=1_000_000, term=24, rate_percent=Decimal(10),
        penalty_rate_percent=Decimal(0),
    )  # fmt: skip
    close_on(session_factory, deps, DUE)
    base = state(s, loan).accrued_interest_cents  # the interest before it was late
    close_on(session_factory, deps, DUE + timedelta(days=1))
    row = state(s, loan)
    cap = row.delinquent_principal_cents
    assert cap == 1_000_000 and row.delinquent_since == DUE + timedelta(days=1)
    assert row.charged_since_delinquent_cents == row.accrued_interest_cents - base > 0
    plan = periods(s, loan)
    with undone(s):  # one jump far past the cap: what fits is kept, oldest growth first
        far = DUE + timedelta(days=600)
        close_on(session_factory, deps, far)
        row = state(s, loan)
        assert row.charged_since_delinquent_cents == cap
        assert row.accrued_interest_cents == base + cap == owed_interest_begun(s, loan, far)
        assert row.interest_capped_cents == accrual.recognised_cents(plan, far) - base - cap
        receivable_matches_loans(s)
        assert verify_ledger(s).ok
    # The last day the schedule's interest since then still fits under the cap.
    last = max(
        DUE + timedelta(days=n)
        for n in range(2, 800)
        if accrual.recognised_cents(plan, DUE + timedelta(days=n)) - base <= cap
    )
    close_on(session_factory, deps, last)
    row = state(s, loan)
    assert row.accrued_interest_cents == accrual.recognised_cents(plan, last)  # uncapped
    assert row.interest_capped_cents == 0 and row.charged_since_delinquent_cents <= cap
    waived_before = sum(i.waived_interest_cents for i in instalments(s, loan))
    assert waived_before == 0
    day = last + timedelta(days=1)
    close_on(session_factory, deps, day)  # one day more would pass it: stopped at the cap
    row = state(s, loan)
    uncapped = accrual.recognised_cents(plan, day) - base
    assert uncapped > cap
    assert row.charged_since_delinquent_cents == cap
    assert row.accrued_interest_cents == base + cap
    assert row.interest_capped_cents == uncapped - cap
    waived = sum(i.waived_interest_cents for i in instalments(s, loan))
    # What the cap stopped is waived whole, for the rest of the period it grew in: the
    # member never owes it, and it was never income. The interest of every period begun
    # is what was recognised, no more.
    assert waived >= row.interest_capped_cents
    assert owed_interest_begun(s, loan, day) == row.accrued_interest_cents
    receivable_matches_loans(s)
    close_on(session_factory, deps, day + timedelta(days=90))  # it stays at the cap
    row = state(s, loan)
    assert row.accrued_interest_cents == base + cap == base + row.charged_since_delinquent_cents
    assert accrual.recognised_cents(periods(s, loan), day + timedelta(days=90)) == base + cap
    assert owed_interest_begun(s, loan, day + timedelta(days=90)) == base + cap
    receivable_matches_loans(s)
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ inline catch-up


def test_a_repayment_on_a_loan_whose_nights_were_not_run_pays_the_penalty_owed(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """The nights after 10 February were not run. A repayment on 3 March brings the loan
    up to 2 March first (its own entries), so it pays the penalty the nights would have
    charged; the nights then run and post nothing twice: the loan's figures and the
    accounts are the same as when the nights had run before the repayment."""
    s = db_session
    loan, _, _ = disbursed_loan(s, on(deps, START))  # grace 7 days
    close(session_factory, deps, DUE)
    paid_on, last_night = date(2026, 3, 3), date(2026, 3, 2)
    accounts = (SystemAccount.INTEREST_RECEIVABLE, SystemAccount.LOAN_INTEREST_INCOME,
                SystemAccount.PENALTY_RECEIVABLE, SystemAccount.PENALTY_INCOME)  # fmt: skip

    def figures() -> tuple[Any, ...]:
        row = state(s, loan)
        return (row.accrued_through, row.accrued_interest_cents, row.penalised_through,
                row.penalty_units, row.penalty_accrued_cents, row.penalty_paid_cents,
                *(balance(s, a) for a in accounts))  # fmt: skip

    with undone(s):  # the nights first, then the repayment
        close(session_factory, deps, last_night)
        owed = state(s, loan).penalty_accrued_cents
        first = pay(s, on(deps, paid_on), loan, 5000, "pen-late-a")
        close(session_factory, deps, paid_on)
        nights_first = figures()
    assert owed == accrual.penalty_cents(
        sum(day_units(instalments(s, loan), DUE + timedelta(days=n), 7, 120_000)
            for n in range(1, (last_night - DUE).days + 1))
    ) > 0  # fmt: skip
    repaid = pay(s, on(deps, paid_on), loan, 5000, "pen-late-b")
    assert repaid.penalty_cents == first.penalty_cents == owed  # counted at the payment
    assert state(s, loan).accrued_through == last_night
    assert key_count(s, f"close_day:catch_up:{loan.id}:{last_night}:penalty:%") == 1
    assert key_count(s, f"close_day:catch_up:{loan.id}:{last_night}:accrue:%") == 1
    penalties_match_loans(s)
    receivable_matches_loans(s)
    report = close(session_factory, deps, paid_on)  # the nights not run
    assert len(report.dates) == (paid_on - DUE).days
    # The nights up to 2 March found the loan already there: no accrual nor penalty entry.
    for n in range(1, (paid_on - DUE).days):
        night = DUE + timedelta(days=n)
        assert key_count(s, f"close_day:{night}:accrue:%") == 0, night
        assert key_count(s, f"close_day:{night}:penalty:%") == 0, night
    assert figures() == nights_first
    # A second repayment the same day: caught up already, nothing more.
    pay(s, on(deps, paid_on + timedelta(days=1)), loan, 100, "pen-late-c")
    assert key_count(s, f"close_day:catch_up:{loan.id}:{paid_on}:%") == 0
    penalties_match_loans(s)
    receivable_matches_loans(s)
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ a crash, for real


def child(through: date) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.close_day_child", PG_URL, through.isoformat()],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_a_run_killed_mid_step_then_run_again_is_one_clean_run(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    """A real ``close-day`` process is stopped inside a step: the test holds one loan's
    state row locked, so the process waits in the middle of a date's accrual, and is
    SIGKILLed there. Run again, every date is closed once, each loan's interest, penalty
    and category are what the Python model gives, each entry once, the ledger exact."""
    factory = make_session_factory(committed_pg)
    with factory() as s:
        made = [
            disbursed_loan(s, on(deps, START), penalty_grace_days=0)[0],
            disbursed_loan(s, on(deps, START + timedelta(days=3)), frequency="weekly",
                           term=10, amount_cents=2_000_000, penalty_grace_days=3)[0],
            disbursed_loan(s, on(deps, START + timedelta(days=6)), term=3,
                           amount_cents=500_000)[0],
        ]  # fmt: skip
        s.commit()
        ids = [loan.id for loan in made]
    close(factory, deps, START + timedelta(days=6))  # the first run: every state row made
    through = date(2026, 3, 20)
    blocker = committed_pg.connect()
    proc = None
    try:
        # Let the process close a few dates, then take the first loan's row: it waits
        # for it inside its next accrual (the step's row locks), and dies there.
        proc = child(through)
        deadline = clock.monotonic() + 60
        done = 0
        while done < 3 and clock.monotonic() < deadline and proc.poll() is None:
            with factory() as s:
                done = s.scalar(
                    select(func.count()).select_from(CloseDayRun)
                    .where(CloseDayRun.status == CloseDayStatus.DONE)
                ) or 0  # fmt: skip
            clock.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        blocker.execute(
            text("SELECT loan_id FROM loan_day_states WHERE loan_id = :id FOR UPDATE"),
            {"id": ids[0]},
        )
        waiting = 0
        while not waiting and clock.monotonic() < deadline:
            waiting = blocker.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND pid <> pg_backend_pid() AND datname = current_database()")
            ).scalar_one()  # fmt: skip
            clock.sleep(0.02)
        assert waiting, "the close-of-day process never reached the locked row"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        blocker.rollback()
        blocker.close()
        if proc is not None and proc.poll() is None:  # pragma: no cover
            proc.kill()
            proc.communicate()
    with factory() as s:  # mid-run: a date started, not finished
        runs = s.scalars(select(CloseDayRun).order_by(CloseDayRun.business_date)).all()
        assert runs[-1].business_date < through
    # Run again (a second process, as the scheduler would).
    again = child(through)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    with factory() as s:
        runs = s.scalars(select(CloseDayRun).order_by(CloseDayRun.business_date)).all()
        first_day = START + timedelta(days=6)
        assert [r.business_date for r in runs] == [
            first_day + timedelta(days=n) for n in range((through - first_day).days + 1)
        ]
        assert {r.status for r in runs} == {CloseDayStatus.DONE}
        steps = s.execute(select(StepRow.run_id, StepRow.step)).all()
        assert len(steps) == len(CloseDayStep) * len(runs) == len(set(steps))
        keys = s.scalars(
            select(JournalEntry.idempotency_key).where(JournalEntry.kind.in_(
                [EntryKind.LOAN_ACCRUAL, EntryKind.LOAN_PROVISION]))
        ).all()  # fmt: skip
        assert len(keys) == len(set(keys))
        for n, loan_id in enumerate(ids):
            loan = s.get_one(Loan, loan_id)
            row = state(s, loan)
            rows = instalments(s, loan)
            assert row.accrued_interest_cents == accrual.recognised_cents(periods(s, loan), through)
            grace, factor = [0, 3, 7][n], accrual.penalty_factor(Decimal(1), monthly=True)
            first = START + timedelta(days=6)  # the first close: penalties from that day
            units = sum(
                day_units(rows, first + timedelta(days=k), grace, factor)
                for k in range((through - first).days + 1)
            )
            assert row.penalty_units == units and row.penalty_accrued_cents > 0
            unpaid = [i for i in rows if i.due_on < through and i.due_cents - i.paid_cents > 0]
            band = classify((through - unpaid[0].due_on).days if unpaid else 0, len(unpaid))
            assert row.category == band.category
            exposure = ledger.get_balance(s, loan.account_id).balance_cents
            assert row.provision_cents == provision_cents(exposure, band)
        penalties_match_loans(s)
        receivable_matches_loans(s)
        assert balance(s, SystemAccount.LOAN_LOSS_PROVISION) == sum(
            state(s, s.get_one(Loan, i)).provision_cents for i in ids
        )
        assert verify_ledger(s).ok


# ------------------------------------------------------------------ repayments during a run


def test_repayments_during_a_run_catch_up_once_whatever_the_interleaving(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    """A run closes 25 nights while, on real threads, each overdue loan is repaid the
    morning after: whether the night or the repayment gets to a loan's day first, each
    day's penalty is charged once on that day's arrears before the payment, the interest
    recognised is the schedule's, each repayment pays the penalty owed first, and the
    ledger is exact."""
    factory = make_session_factory(committed_pg)
    with factory() as s:
        made = [disbursed_loan(s, on(deps, START), penalty_grace_days=n)[0] for n in range(4)]
        s.commit()
        ids = [loan.id for loan in made]
    close(factory, deps, DUE)
    through = DUE + timedelta(days=25)
    with factory() as s:
        before = {i: instalments(s, s.get_one(Loan, i)) for i in ids}
        s.expunge_all()
    barrier = threading.Barrier(len(ids) + 1)
    repaid: dict[int, Any] = {}
    errors: list[BaseException] = []
    runs_done: list[int] = []

    def night() -> None:
        barrier.wait()
        try:
            close(factory, deps, through, lock_engine=committed_pg)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def repay(loan_id: int, pause: float) -> None:
        barrier.wait()
        clock.sleep(pause)
        try:
            with factory() as s:
                runs_done.append(
                    s.scalar(select(func.count()).select_from(CloseDayRun)
                             .where(CloseDayRun.status == CloseDayStatus.DONE)) or 0
                )  # fmt: skip
                loan = s.get_one(Loan, loan_id)
                repaid[loan_id] = pay(s, on(deps, through + timedelta(days=1)), loan, 500_000,
                                      f"pen-race-{loan_id}")  # fmt: skip
                s.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=night)] + [
        threading.Thread(target=repay, args=(loan_id, 0.15 * n)) for n, loan_id in enumerate(ids)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], [str(e) for e in errors]
    # The repayments came while the run was going (some of its nights still to run).
    assert min(runs_done) < (through - DUE).days + 1
    factor = accrual.penalty_factor(Decimal(1), monthly=True)
    with factory() as s:
        for grace, loan_id in enumerate(ids):
            loan = s.get_one(Loan, loan_id)
            units = sum(
                day_units(before[loan_id], DUE + timedelta(days=n), grace, factor)
                for n in range(1, (through - DUE).days + 1)
            )
            row = state(s, loan)
            assert row.penalty_units == units
            assert repaid[loan_id].penalty_cents == accrual.penalty_cents(units) > 0
            assert row.penalty_paid_cents == row.penalty_accrued_cents
            assert row.accrued_interest_cents == accrual.recognised_cents(periods(s, loan), through)
        runs = s.scalars(select(CloseDayRun)).all()
        assert {r.status for r in runs} == {CloseDayStatus.DONE} and len(runs) == 26
        penalties_match_loans(s)
        receivable_matches_loans(s)
        assert verify_ledger(s).ok


@settings(
    max_examples=15, deadline=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(
    loans=st.lists(
        st.tuples(st.integers(1, 6), st.integers(1_000, 20_000), st.integers(4, 10)),
        min_size=1, max_size=3,
    ),  # term, KES, penalty 4-10 % a month (interest 10 % a month): the cap is reached
    steps=st.lists(
        st.tuples(st.integers(1, 200), st.integers(0, 2), st.integers(0, 300_000)),
        min_size=1, max_size=6,
    ),  # days to the next close, which loan pays before it, how much
)  # fmt: skip
def test_the_cap_holds_and_the_ledger_stays_exact_over_random_delinquency(
    db_session: Session,
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
    loans: list[tuple[int, int, int]],
    steps: list[tuple[int, int, int]],
) -> None:
    """Costly loans left unpaid or paid in part, closed at random intervals: what is
    charged since a loan became delinquent never passes the principal then, a loan over
    it owes no interest beyond what was recognised, and interest and penalty receivable
    stay exactly what the loans' figures say."""
    s = db_session
    with undone(s):
        made = [
            disbursed_loan(
                s, on(deps, START), term=term, amount_cents=kes * 100,
                rate_percent=Decimal(10), penalty_rate_percent=Decimal(pct),
                penalty_grace_days=0,
            )[0]
            for term, kes, pct in loans
        ]  # fmt: skip
        day = DUE
        close_on(session_factory, deps, day)
        for n, (gap, which, cents) in enumerate(steps):
            day += timedelta(days=gap)
            loan = made[which % len(made)]
            s.refresh(loan)
            if cents and loan.status == "active":
                pay(s, on(deps, day), loan, cents, f"pen-cap-{n}-{loan.id}")
            close_on(session_factory, deps, day)
            for loan in made:
                row = state(s, loan)
                assert row.charged_since_delinquent_cents <= row.delinquent_principal_cents
                if row.delinquent_since is None:
                    assert row.charged_since_delinquent_cents == 0
                s.refresh(loan)
                at_cap = row.delinquent_since is not None and (
                    row.charged_since_delinquent_cents == row.delinquent_principal_cents
                )
                event("a loan at the cap" if at_cap else "no loan at the cap")
                if at_cap and row.interest_capped_cents and loan.status == "active":
                    # At the cap: no period begun owes interest beyond what was recognised.
                    assert owed_interest_begun(s, loan, day) == row.accrued_interest_cents
            penalties_match_loans(s)
            receivable_matches_loans(s)
        assert verify_ledger(s).ok
