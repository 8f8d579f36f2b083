"""Close of day for the loan book (issue 13, parts 1-5; docs/loans/close-of-day.md).

A run closes one business date in steps (``CLOSE_DAY_STEPS``), each its own unit of work
at the edge (``workers.close_day``): ``accrue`` (interest accrued per loan, one ledger
entry per product), ``classify`` (arrears, SASRA category, provision, category history,
one provision entry per product) and ``notify`` (reminders, overdue and guarantor notices
through the outbox, credit-bureau marks: ``core.loans.notices``). Each step is a few SQL statements over the whole book,
never a Python loop over loans:

* it first makes sure every loan has its ``loan_day_states`` row and locks the rows of
  the loans it will change (a repayment locks its loan's row too, in
  ``core.loans.repayments._post``: the two queue, never interleave);
* it changes only loans whose own date (``accrued_through``, ``classified_on``) is before
  the run's, and moves that date forward, so a step run twice changes nothing;
* it posts what changed, summed per product, with an idempotency key of the date, the
  step and the product, and records the step (``close_day_steps``) in the same commit.

So a run stopped between two steps (or in the middle of one: rolled back) resumes at the
next step without posting anything twice, and a date closed twice is closed once.
``dates_to_close`` gives the dates still to run, oldest first (a missed date is caught up
in order). ``run_step`` locks the run's row, so two processes never run a step of one date
at once; the edge also holds an advisory lock for the whole run and refuses a second one.

The SQL is PostgreSQL's (window functions, data-modifying CTEs, ``LATERAL``); the embedded
SQLite demo refuses close of day (``CloseDayUnsupported``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans import accrual, notices
from core.loans.vocabulary import CLOSE_DAY_STEPS, CloseDayStatus, CloseDayStep, LoanStatus
from db.models_close_day import CloseDayRun, LoanDayState, LoanRiskBand
from db.models_close_day import CloseDayStep as StepRow
from db.models_loans import LoanInstalment
from db.session import insert_for

# Advisory lock key of the whole run (``pg_try_advisory_lock``): "CLOSEDAY" in ASCII.
ADVISORY_LOCK_KEY = 0x434C4F5345444159
MAX_CATCH_UP_DAYS = 3660  # ten years: a date further back is a typo, not a missed night


class CloseDayBusy(DomainError):
    """Another close of day is running (the advisory lock is held)."""

    code = "close_day_busy"


class CloseDayUnsupported(DomainError):
    """Close of day needs PostgreSQL (the embedded SQLite demo has no set-based run)."""

    code = "close_day_unsupported"


class CloseDayOutOfOrder(DomainError):
    """A step was asked before the steps it follows (a programming error at the edge)."""

    code = "close_day_out_of_order"


@dataclass(frozen=True, slots=True)
class StepResult:
    business_date: date
    step: CloseDayStep
    loans: int  # loans the step brought up to the date
    amount_cents: int  # accrue: interest accrued (net); classify: provision change (net)
    detail: dict[str, Any]
    ran: bool  # False: the step was done before, nothing was changed


# ------------------------------------------------------------------ which dates


def last_closed(session: Session) -> date | None:
    return session.scalar(
        select(func.max(CloseDayRun.business_date)).where(CloseDayRun.status == CloseDayStatus.DONE)
    )


def dates_to_close(session: Session, deps: CoreDeps, through: date | None = None) -> list[date]:
    """The dates a run through ``through`` (default: yesterday in Nairobi) must close,
    oldest first: the day after the last closed one up to ``through`` (a run stopped
    half-way is among them), or ``through`` alone when no date was ever closed. Empty when
    ``through`` is closed already. ``InvalidInput`` (reason ``not_over``) for a day not over
    yet, (``range``) for one more than ten years back."""
    if session.get_bind().dialect.name != "postgresql":
        raise CloseDayUnsupported("close of day runs on PostgreSQL only")
    today = business_date(deps.now())
    through = through or today - timedelta(days=1)
    if type(through) is not date:
        raise InvalidInput("a date is needed", field="date", reason="format")
    if through >= today:
        raise InvalidInput(
            f"{through} is not over yet: close a day once it has ended", field="date",
            reason="not_over",
        )  # fmt: skip
    if (today - through).days > MAX_CATCH_UP_DAYS:
        raise InvalidInput("that date is too far back", field="date", reason="range")
    last = last_closed(session)
    start = through if last is None else last + timedelta(days=1)
    return [start + timedelta(days=n) for n in range((through - start).days + 1)]


# ------------------------------------------------------------------ one step


def _band_version(session: Session, day: date) -> int:
    version = session.scalar(
        select(func.max(LoanRiskBand.version)).where(LoanRiskBand.effective_from <= day)
    )
    if version is None:
        raise DomainError(f"no loan risk bands in force on {day}")
    return version


def _lock_run(session: Session, deps: CoreDeps, day: date) -> CloseDayRun:
    """The date's run row, locked (made first when none): the bands version in force on
    the date is fixed when the run starts, so a resumed run classifies as it began."""
    query = (
        select(CloseDayRun)
        .where(CloseDayRun.business_date == day)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    run = session.scalars(query).one_or_none()
    if run is not None:
        return run
    session.execute(
        insert_for(session, CloseDayRun)
        .values(
            business_date=day,
            status=CloseDayStatus.RUNNING,
            band_version=_band_version(session, day),
            started_at=deps.now(),
        )
        .on_conflict_do_nothing(index_elements=["business_date"])
    )
    return session.scalars(query).one()


def run_step(
    session: Session,
    deps: CoreDeps,
    day: date,
    step: CloseDayStep,
    *,
    policy: notices.NoticePolicy | None = None,
) -> StepResult:
    """Run one step of ``day``'s close (see the module); a step already done returns its
    recorded figures with ``ran=False`` and changes nothing. Never commits. ``policy``:
    the ``notify`` step's settings (the defaults when None)."""
    if session.get_bind().dialect.name != "postgresql":
        raise CloseDayUnsupported("close of day runs on PostgreSQL only")
    step = CloseDayStep(step)
    run = _lock_run(session, deps, day)
    done = {
        row.step: row for row in session.scalars(select(StepRow).where(StepRow.run_id == run.id))
    }
    if step in done:
        row = done[step]
        return StepResult(day, step, row.loans, row.amount_cents, json.loads(row.detail), False)
    earlier = CLOSE_DAY_STEPS[: CLOSE_DAY_STEPS.index(step)]
    if any(s not in done for s in earlier):
        raise CloseDayOutOfOrder(f"{step} of {day} before {', '.join(earlier)}")
    if step is CloseDayStep.ACCRUE:
        result = _accrue(session, deps, day)
    elif step is CloseDayStep.CLASSIFY:
        result = _classify(session, deps, day, run.band_version)
    else:
        told = notices.run(session, deps, day, policy or notices.NoticePolicy())
        result = StepResult(day, step, told.loans, told.amount_cents, told.detail, True)
    session.add(
        StepRow(
            run_id=run.id, step=step, loans=result.loans, amount_cents=result.amount_cents,
            detail=json.dumps(result.detail, sort_keys=True), finished_at=deps.now(),
        )
    )  # fmt: skip
    if step is CLOSE_DAY_STEPS[-1]:
        run.status = CloseDayStatus.DONE
        run.finished_at = deps.now()
    session.flush()
    return result


# ------------------------------------------------------------------ the set-based SQL

# Loans the run looks at on :day: active, paid out by then.
_BOOK = "l.status = :active AND l.disbursed_on <= :day"

# Every loan of the book gets its row; a new loan's recognised interest is what is paid
# of it (paid before any close counted straight to income: core.loans.repayments).
_ENSURE_STATES = text(
    "INSERT INTO loan_day_states (loan_id, accrued_interest_cents, days_past_due, "
    "missed_instalments, arrears_cents, exposure_cents, provision_cents) "
    "SELECT l.id, COALESCE(SUM(i.paid_interest_cents), 0), 0, 0, 0, 0, 0 "
    "FROM loans l JOIN loan_instalments i ON i.loan_id = l.id "
    f"WHERE {_BOOK} GROUP BY l.id "
    "ON CONFLICT (loan_id) DO NOTHING"
)


def _lock_states(session: Session, day: date, column: str, extra: str = "") -> None:
    """Lock the state rows this step will change, in loan order (one statement)."""
    session.execute(
        text(
            "SELECT count(*) FROM (SELECT s.loan_id FROM loan_day_states s "
            "JOIN loans l ON l.id = s.loan_id "
            f"WHERE (({_BOOK}) {extra}) AND (s.{column} IS NULL OR s.{column} < :day) "
            "ORDER BY s.loan_id FOR UPDATE OF s) locked"
        ),
        {"day": day, "active": LoanStatus.ACTIVE},
    )


# Interest recognised through :day per loan (core.loans.accrual in SQL): per instalment
# the larger of what is paid and floor(interest × elapsed / days), at most the interest
# less what was waived; the delta against what is recognised already, per product.
_ACCRUE = text(
    "WITH periods AS ("
    " SELECT i.loan_id, i.interest_cents AS interest, i.paid_interest_cents AS paid,"
    "  i.waived_interest_cents AS waived, i.due_on,"
    "  COALESCE(i.starts_on, LAG(i.due_on) OVER (PARTITION BY i.loan_id ORDER BY i.number),"
    "           l.disbursed_on) AS starts_on"
    " FROM loan_instalments i JOIN loans l ON l.id = i.loan_id"
    " JOIN loan_day_states s ON s.loan_id = l.id"
    f" WHERE {_BOOK} AND (s.accrued_through IS NULL OR s.accrued_through < :day)"
    "), target AS ("
    " SELECT loan_id, SUM(GREATEST(paid, LEAST(interest - waived,"
    "  CASE WHEN due_on <= starts_on THEN CASE WHEN :day >= due_on THEN interest ELSE 0 END"
    "  ELSE interest * LEAST(GREATEST(:day - starts_on, 0), due_on - starts_on)"
    "       / (due_on - starts_on) END))) AS cents"
    " FROM periods GROUP BY loan_id"
    "), changes AS ("
    " SELECT t.loan_id, t.cents, t.cents - s.accrued_interest_cents AS delta, v.product_id"
    " FROM target t JOIN loan_day_states s ON s.loan_id = t.loan_id"
    " JOIN loans l ON l.id = t.loan_id"
    " JOIN loan_product_versions v ON v.id = l.product_version_id"
    "), upd AS ("
    " UPDATE loan_day_states s SET accrued_interest_cents = c.cents, accrued_through = :day"
    " FROM changes c WHERE s.loan_id = c.loan_id RETURNING s.loan_id"
    ") SELECT c.product_id, SUM(c.delta) AS delta, COUNT(*) AS n"
    " FROM changes c GROUP BY c.product_id ORDER BY c.product_id"
)


def _accrue(session: Session, deps: CoreDeps, day: date) -> StepResult:
    params = {"day": day, "active": LoanStatus.ACTIVE}
    session.execute(_ENSURE_STATES, params)
    _lock_states(session, day, "accrued_through")
    rows = session.execute(_ACCRUE, params).all()
    per_product = {str(r.product_id): int(r.delta) for r in rows}
    for product_id, delta in per_product.items():
        _post_pair(
            session, deps, day, EntryKind.LOAN_ACCRUAL, f"close_day:{day}:accrue:{product_id}",
            delta, SystemAccount.INTEREST_RECEIVABLE, SystemAccount.LOAN_INTEREST_INCOME,
            memo=f"Interest accrued {day} product {product_id}",
        )  # fmt: skip
    return StepResult(
        day, CloseDayStep.ACCRUE, sum(int(r.n) for r in rows), sum(per_product.values()),
        {"interest_cents_by_product": per_product}, True,
    )  # fmt: skip


# Arrears per loan on :day (instalments due before :day and not fully paid), its category
# (the worst band it reaches by days or by missed instalments), the exposure (principal
# outstanding: the loan account's balance) and the provision (half up to the cent); a
# history row where the category changed; the provision change summed per product. Loans
# that left the book (repaid, written off) give their provision back. A restructured loan
# (rescheduled: core.loans.reschedule) is never upgraded: its current band counts as
# reached, so it stays or worsens.
_CLASSIFY = text(
    "WITH owed AS ("
    " SELECT i.loan_id, i.due_on, i.principal_cents + i.interest_cents + i.fee_cents"
    "  - i.paid_principal_cents - i.paid_interest_cents - i.paid_fee_cents"
    "  - i.waived_interest_cents AS unpaid"
    " FROM loan_instalments i JOIN loans l ON l.id = i.loan_id"
    " JOIN loan_day_states s ON s.loan_id = l.id"
    f" WHERE {_BOOK} AND (s.classified_on IS NULL OR s.classified_on < :day)"
    "), per_loan AS ("
    " SELECT loan_id,"
    "  COALESCE(:day - MIN(due_on) FILTER (WHERE unpaid > 0 AND due_on < :day), 0) AS dpd,"
    "  COUNT(*) FILTER (WHERE unpaid > 0 AND due_on < :day) AS missed,"
    "  COALESCE(SUM(unpaid) FILTER (WHERE due_on < :day), 0) AS arrears"
    " FROM owed GROUP BY loan_id"
    "), graded AS ("
    " SELECT p.loan_id, p.dpd, p.missed, p.arrears, b.category, a.balance_cents AS exposure,"
    "  CAST(FLOOR(a.balance_cents * b.provision_percent / 100 + 0.5) AS BIGINT) AS provision,"
    "  v.product_id"
    " FROM per_loan p JOIN loans l ON l.id = p.loan_id JOIN accounts a ON a.id = l.account_id"
    " JOIN loan_product_versions v ON v.id = l.product_version_id"
    " JOIN loan_day_states ps ON ps.loan_id = p.loan_id"
    " CROSS JOIN LATERAL (SELECT rb.category, rb.provision_percent FROM loan_risk_bands rb"
    "  WHERE rb.version = :version AND (rb.min_days <= p.dpd OR rb.min_missed <= p.missed"
    "   OR (l.restructured AND rb.category = ps.category))"
    "  ORDER BY rb.rank DESC LIMIT 1) b"
    "), gone AS ("
    " SELECT s.loan_id, 0 AS dpd, 0 AS missed, 0 AS arrears, s.category, 0 AS exposure,"
    "  0 AS provision, v.product_id"
    " FROM loan_day_states s JOIN loans l ON l.id = s.loan_id"
    " JOIN loan_product_versions v ON v.id = l.product_version_id"
    " WHERE l.status <> :active AND s.provision_cents > 0"
    "), changes AS ("
    " SELECT g.*, s.category AS old_category, g.provision - s.provision_cents AS delta"
    " FROM (SELECT * FROM graded UNION ALL SELECT * FROM gone) g"
    " JOIN loan_day_states s ON s.loan_id = g.loan_id"
    "), upd AS ("
    " UPDATE loan_day_states s SET classified_on = :day, days_past_due = c.dpd,"
    "  missed_instalments = c.missed, arrears_cents = c.arrears, category = c.category,"
    "  exposure_cents = c.exposure, provision_cents = c.provision"
    " FROM changes c WHERE s.loan_id = c.loan_id RETURNING s.loan_id"
    "), hist AS ("
    " INSERT INTO loan_category_changes (loan_id, business_date, category_from, category_to,"
    "  days_past_due, missed_instalments, exposure_cents, band_version)"
    " SELECT loan_id, :day, old_category, category, dpd, missed, exposure, :version"
    " FROM changes WHERE old_category IS DISTINCT FROM category RETURNING loan_id"
    ") SELECT c.product_id, SUM(c.delta) AS delta, COUNT(*) AS n,"
    " (SELECT count(*) FROM hist) AS changed"
    " FROM changes c GROUP BY c.product_id ORDER BY c.product_id"
)

# The book's standing after the step, by category (the run's result for staff), with the
# restructured loans among them counted apart.
_BY_CATEGORY = text(
    "SELECT s.category, COUNT(*) AS loans, SUM(s.exposure_cents) AS exposure,"
    " SUM(s.provision_cents) AS provision, SUM(s.arrears_cents) AS arrears,"
    " COUNT(*) FILTER (WHERE l.restructured) AS restructured"
    " FROM loan_day_states s JOIN loans l ON l.id = s.loan_id"
    " WHERE l.status = :active AND s.classified_on = :day GROUP BY s.category"
)


def _classify(session: Session, deps: CoreDeps, day: date, version: int) -> StepResult:
    params = {"day": day, "active": LoanStatus.ACTIVE, "version": version}
    ranks = session.scalar(
        select(func.count()).select_from(LoanRiskBand).where(
            LoanRiskBand.version == version, LoanRiskBand.min_days == 0,
            LoanRiskBand.min_missed == 0,
        )
    )  # fmt: skip
    if not ranks:  # without a band from 0 days, a loan would silently go unclassified
        raise DomainError(f"loan risk bands version {version} has no band from 0 days")
    session.execute(_ENSURE_STATES, params)
    _lock_states(
        session, day, "classified_on", extra="OR (l.status <> :active AND s.provision_cents > 0)"
    )
    rows = session.execute(_CLASSIFY, params).all()
    per_product = {str(r.product_id): int(r.delta) for r in rows}
    for product_id, delta in per_product.items():
        _post_pair(
            session, deps, day, EntryKind.LOAN_PROVISION,
            f"close_day:{day}:provision:{product_id}", delta,
            SystemAccount.PROVISIONS_EXPENSE, SystemAccount.LOAN_LOSS_PROVISION,
            memo=f"Loan-loss provision {day} product {product_id}",
        )  # fmt: skip
    by_category = {
        str(r.category): {
            "loans": int(r.loans), "exposure_cents": int(r.exposure),
            "provision_cents": int(r.provision), "arrears_cents": int(r.arrears),
            "restructured_loans": int(r.restructured),
        }
        for r in session.execute(_BY_CATEGORY, params)
    }  # fmt: skip
    changed = sum(int(r.changed) for r in rows[:1])
    return StepResult(
        day, CloseDayStep.CLASSIFY, sum(int(r.n) for r in rows), sum(per_product.values()),
        {"provision_change_cents_by_product": per_product, "by_category": by_category,
         "category_changes": changed, "band_version": version},
        True,
    )  # fmt: skip


def _post_pair(
    session: Session,
    deps: CoreDeps,
    day: date,
    kind: EntryKind,
    key: str,
    cents: int,
    debit: SystemAccount,
    credit: SystemAccount,
    *,
    memo: str,
) -> None:
    """Dr ``debit`` / Cr ``credit`` by ``cents`` (the reverse when negative; nothing at 0)."""
    if cents == 0:
        return
    debit_id = ledger.account_id_by_code(session, debit)
    credit_id = ledger.account_id_by_code(session, credit)
    ledger.post_entry(
        session,
        kind=kind,
        legs=[ledger.Leg(debit_id, cents), ledger.Leg(credit_id, -cents)],
        idempotency_key=key,
        now=deps.now(),
        value_date=day,
        memo=memo,
    )


# ------------------------------------------------------------------ reading runs


@dataclass(frozen=True, slots=True)
class RunView:
    run: CloseDayRun
    steps: tuple[StepRow, ...]


def list_runs(session: Session, *, limit: int, before_id: int | None = None) -> list[RunView]:
    """Runs, newest first (dates are closed in order, so ids follow the dates), with their
    steps; ``before_id`` pages on."""
    query = select(CloseDayRun).order_by(CloseDayRun.id.desc()).limit(limit)
    if before_id:
        query = query.where(CloseDayRun.id < before_id)
    runs = list(session.scalars(query))
    steps: dict[int, list[StepRow]] = {r.id: [] for r in runs}
    if runs:
        for row in session.scalars(
            select(StepRow).where(StepRow.run_id.in_(steps)).order_by(StepRow.id)
        ):
            steps[row.run_id].append(row)
    return [RunView(r, tuple(steps[r.id])) for r in runs]


def get_run(session: Session, day: date) -> RunView | None:
    run = session.scalar(select(CloseDayRun).where(CloseDayRun.business_date == day))
    if run is None:
        return None
    rows = session.scalars(select(StepRow).where(StepRow.run_id == run.id).order_by(StepRow.id))
    return RunView(run, tuple(rows))


# ------------------------------------------------------------------ a repayment's share


def recognise_repayment(
    session: Session, loan_id: int, disbursed_on: date, paid: dict[int, tuple[int, int]]
) -> int:
    """A repayment's change to the loan's recognised interest (``core.loans.accrual``):
    ``paid`` maps an instalment number to (interest paid, interest waived) by it. Locks the
    loan's state row (so close of day and the repayment queue: the caller holds the loan's
    row already), adds the change to it and returns it: interest to credit to income now
    (negative: accrued interest waived, to take back from income); the rest of the interest
    paid settles interest receivable. Call it before the instalments' ``paid_*`` change."""
    session.execute(
        insert_for(session, LoanDayState)
        .values(
            loan_id=loan_id, accrued_interest_cents=0, days_past_due=0, missed_instalments=0,
            arrears_cents=0, exposure_cents=0, provision_cents=0,
        )
        .on_conflict_do_nothing(index_elements=["loan_id"])
    )  # fmt: skip
    state = session.scalars(
        select(LoanDayState)
        .where(LoanDayState.loan_id == loan_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    rows = session.execute(
        select(
            LoanInstalment.number, LoanInstalment.due_on, LoanInstalment.interest_cents,
            LoanInstalment.paid_interest_cents, LoanInstalment.waived_interest_cents,
            LoanInstalment.starts_on,
        ).where(LoanInstalment.loan_id == loan_id)
    ).all()  # fmt: skip
    before = accrual.periods(
        disbursed_on, [tuple(r)[:5] for r in rows],
        starts={r.number: r.starts_on for r in rows if r.starts_on is not None},
    )  # fmt: skip
    change = accrual.recognised_change(before, paid, state.accrued_through)
    state.accrued_interest_cents += change
    session.flush()
    return change
