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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans import accrual, notices
from core.loans.vocabulary import (
    CLOSE_DAY_STEPS,
    CloseDayStatus,
    CloseDayStep,
    LoanStatus,
    RatePeriod,
)
from db.models_close_day import CloseDayRun, LoanDayState, LoanRiskBand
from db.models_close_day import CloseDayStep as StepRow
from db.models_loans import LoanInstalment
from db.session import insert_for

R = TypeVar("R", CloseDayRun, LoanDayState)

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
    return _locked_or_made(
        session, CloseDayRun, CloseDayRun.business_date == day, "business_date",
        lambda: {
            "business_date": day, "status": CloseDayStatus.RUNNING,
            "band_version": _band_version(session, day), "started_at": deps.now(),
        },
    )  # fmt: skip


def _locked_or_made(
    session: Session,
    model: type[R],
    where: ColumnElement[bool],
    key: str,
    values: Callable[[], dict[str, Any]],
) -> R:
    """The row ``where`` finds, locked; made first (``values``) when there is none. Looked
    for before any insert: a row another transaction is changing is waited for, never
    raced with a speculative insert (which makes others wait on it: a deadlock)."""
    query = select(model).where(where).with_for_update().execution_options(populate_existing=True)
    found = session.scalars(query).one_or_none()
    if found is not None:
        return found
    made = (
        insert_for(session, model).values(**values()).on_conflict_do_nothing(index_elements=[key])
    )
    session.execute(made)
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

# Loans the run looks at on :day: active, paid out by then; and of them the whole book,
# or the ones a repayment catches up (``catch_up_loan``).
_BOOK = "l.status = :active AND l.disbursed_on <= :day"
_LOANS = "AND (:all_loans OR l.id = ANY(:loan_ids))"

# Every loan of the book gets its row; a new loan's recognised interest is what is paid
# of it (paid before any close counted straight to income: core.loans.repayments). Only
# loans without one are inserted: an ON CONFLICT check on a row another transaction is
# changing waits for it, and a speculative insert makes others wait (a deadlock with a
# repayment's catch-up, found by the test of repayments during a run).
_ENSURE_STATES = text(
    "INSERT INTO loan_day_states (loan_id, accrued_interest_cents, days_past_due, "
    "missed_instalments, arrears_cents, exposure_cents, provision_cents) "
    "SELECT l.id, COALESCE(SUM(i.paid_interest_cents), 0), 0, 0, 0, 0, 0 "
    "FROM loans l JOIN loan_instalments i ON i.loan_id = l.id "
    f"WHERE {_BOOK} {_LOANS} AND NOT EXISTS "
    "(SELECT 1 FROM loan_day_states x WHERE x.loan_id = l.id) GROUP BY l.id "
    "ON CONFLICT (loan_id) DO NOTHING"
)


def _params(day: date, loan_ids: list[int] | None) -> dict[str, Any]:
    return {
        "day": day, "active": LoanStatus.ACTIVE, "all_loans": loan_ids is None,
        "loan_ids": loan_ids or [],
    }  # fmt: skip


def _lock_states(session: Session, params: dict[str, Any], behind: str, extra: str = "") -> None:
    """Lock the state rows this step will change, in loan order (one statement)."""
    session.execute(
        text(
            "SELECT count(*) FROM (SELECT s.loan_id FROM loan_day_states s "
            "JOIN loans l ON l.id = s.loan_id "
            f"WHERE ((({_BOOK}) {_LOANS} AND ({behind})) {extra}) "
            "ORDER BY s.loan_id FOR UPDATE OF s) locked"
        ),
        params,
    )


# Interest accrued through :day, per instalment (core.loans.accrual in SQL).
_ACCRUED_BY = (
    "CASE WHEN due_on <= starts_on THEN CASE WHEN {d} >= due_on THEN interest ELSE 0 END"
    " ELSE interest * LEAST(GREATEST({d} - starts_on, 0), due_on - starts_on)"
    " / (due_on - starts_on) END"
)
# What an instalment's unpaid parts (for days past due, as in _CLASSIFY) add up to.
_UNPAID = (
    "i.principal_cents + i.interest_cents + i.fee_cents - i.paid_principal_cents"
    " - i.paid_interest_cents - i.paid_fee_cents - i.waived_interest_cents"
)

# Interest recognised through :day per loan (core.loans.accrual in SQL): per instalment
# the larger of what is paid and what is accrued, at most the interest less what was
# waived. Reg. 31: a loan delinquent on :day (an instalment due before it unpaid) has its
# delinquency start and the principal outstanding then recorded (its cap); interest
# charged since then stops at the cap, and what the cap stops is waived on the
# instalments whose interest grew today, newest growth first, so it is never owed. The
# delta against what is recognised already, per product.
_ACCRUE = text(
    "WITH periods AS ("
    " SELECT i.id, i.loan_id, i.number, i.interest_cents AS interest,"
    "  i.paid_interest_cents AS paid, i.waived_interest_cents AS waived, i.due_on,"
    f"  s.accrued_through AS prev, {_UNPAID} AS unpaid,"
    "  COALESCE(i.starts_on, LAG(i.due_on) OVER (PARTITION BY i.loan_id ORDER BY i.number),"
    "           l.disbursed_on) AS starts_on"
    " FROM loan_instalments i JOIN loans l ON l.id = i.loan_id"
    " JOIN loan_day_states s ON s.loan_id = l.id"
    f" WHERE {_BOOK} {_LOANS} AND (s.accrued_through IS NULL OR s.accrued_through < :day)"
    "), rec AS ("
    " SELECT p.*,"
    f"  GREATEST(paid, LEAST(interest - waived, {_ACCRUED_BY.format(d=':day')})) AS rec_day,"
    "  CASE WHEN prev IS NULL THEN paid ELSE"
    f"  GREATEST(paid, LEAST(interest - waived, {_ACCRUED_BY.format(d='prev')})) END AS rec_prev"
    " FROM periods p"
    "), per_loan AS ("
    " SELECT loan_id, SUM(rec_day) AS target,"
    "  COALESCE(:day - MIN(due_on) FILTER (WHERE unpaid > 0 AND due_on < :day), 0) AS dpd"
    " FROM rec GROUP BY loan_id"
    "), limits AS ("
    " SELECT p.loan_id, p.target - s.accrued_interest_cents AS raw, v.product_id,"
    "  CASE WHEN p.dpd > 0 THEN COALESCE(s.delinquent_since, :day) END AS since,"
    "  CASE WHEN p.dpd = 0 THEN 0 WHEN s.delinquent_since IS NULL THEN a.balance_cents"
    "   ELSE s.delinquent_principal_cents END AS cap,"
    "  CASE WHEN p.dpd = 0 OR s.delinquent_since IS NULL THEN 0"
    "   ELSE s.charged_since_delinquent_cents END AS used"
    " FROM per_loan p JOIN loan_day_states s ON s.loan_id = p.loan_id"
    " JOIN loans l ON l.id = p.loan_id JOIN accounts a ON a.id = l.account_id"
    " JOIN loan_product_versions v ON v.id = l.product_version_id"
    "), changes AS ("
    " SELECT m.*, CASE WHEN m.since IS NOT NULL AND m.raw > GREATEST(m.cap - m.used, 0)"
    "  THEN GREATEST(m.cap - m.used, 0) ELSE m.raw END AS delta"
    " FROM limits m"
    "), grown AS ("
    " SELECT r.id, r.interest, r.waived, r.rec_prev, r.rec_day - r.rec_prev AS growth,"
    "  GREATEST(c.delta - COALESCE(SUM(r.rec_day - r.rec_prev) OVER (PARTITION BY r.loan_id"
    "   ORDER BY r.number ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0), 0) AS allowed"
    " FROM rec r JOIN changes c ON c.loan_id = r.loan_id WHERE c.delta < c.raw"
    "), waive AS ("
    " UPDATE loan_instalments i"
    " SET waived_interest_cents = g.interest - g.rec_prev - g.allowed"
    " FROM grown g WHERE i.id = g.id AND g.growth > g.allowed RETURNING i.id"
    "), upd AS ("
    " UPDATE loan_day_states s SET accrued_interest_cents = s.accrued_interest_cents + c.delta,"
    "  accrued_through = :day, delinquent_since = c.since, delinquent_principal_cents = c.cap,"
    "  charged_since_delinquent_cents = c.used"
    "   + CASE WHEN c.since IS NULL THEN 0 ELSE GREATEST(c.delta, 0) END,"
    "  interest_capped_cents = s.interest_capped_cents + c.raw - c.delta"
    " FROM changes c WHERE s.loan_id = c.loan_id RETURNING s.loan_id"
    ") SELECT c.product_id, SUM(c.delta) AS delta, COUNT(*) AS n"
    " FROM changes c GROUP BY c.product_id ORDER BY c.product_id"
)

# Penalties per loan for each day after it was last penalised up to :day (a loan never
# penalised: :day alone, so no day before close of day first saw the loan is charged)
# (core.loans.accrual.penalty_day_units in SQL): on a day whose oldest overdue
# instalment is past the product's grace, the principal and interest overdue × the
# product's factor, in exact units; the whole cents of the running sum are charged, and
# Reg. 31's cap (room left after the day's interest) stops them like interest.
_PENALISE = text(
    "WITH base AS ("
    " SELECT l.id AS loan_id, v.product_id, v.penalty_grace_days AS grace,"
    "  CAST(v.penalty_rate_percent * 10000 AS NUMERIC)"
    "   * CASE WHEN v.penalty_rate_period = :monthly THEN 12 ELSE 1 END AS factor,"
    "  COALESCE(s.penalised_through, GREATEST(l.disbursed_on, CAST(:day AS DATE) - 1)) AS since"
    " FROM loans l JOIN loan_day_states s ON s.loan_id = l.id"
    " JOIN loan_product_versions v ON v.id = l.product_version_id"
    f" WHERE {_BOOK} {_LOANS} AND (s.penalised_through IS NULL OR s.penalised_through < :day)"
    "), days AS ("
    " SELECT b.loan_id, b.grace, b.factor, CAST(g.d AS DATE) AS d FROM base b"
    " CROSS JOIN LATERAL generate_series(CAST(b.since + 1 AS TIMESTAMP),"
    "  CAST(:day AS TIMESTAMP), INTERVAL '1 day') AS g(d)"
    "), daily AS ("
    " SELECT x.loan_id, CASE WHEN x.d - MIN(i.due_on)"
    f"  FILTER (WHERE {_UNPAID} > 0 AND i.due_on < x.d) > x.grace"
    "  THEN x.factor * COALESCE(SUM(i.principal_cents + i.interest_cents"
    "   - i.paid_principal_cents - i.paid_interest_cents - i.waived_interest_cents)"
    "   FILTER (WHERE i.due_on < x.d), 0) ELSE 0 END AS units"
    " FROM days x JOIN loan_instalments i ON i.loan_id = x.loan_id"
    " GROUP BY x.loan_id, x.d, x.grace, x.factor"
    "), summed AS ("
    " SELECT b.loan_id, b.product_id, s.penalty_units + COALESCE(SUM(d.units), 0) AS units,"
    "  s.penalty_accrued_cents AS before,"
    "  CASE WHEN s.delinquent_since IS NOT NULL"
    "   THEN GREATEST(s.delinquent_principal_cents - s.charged_since_delinquent_cents, 0)"
    "  END AS room"
    " FROM base b JOIN loan_day_states s ON s.loan_id = b.loan_id"
    " LEFT JOIN daily d ON d.loan_id = b.loan_id"
    " GROUP BY b.loan_id, b.product_id, s.penalty_units, s.penalty_accrued_cents,"
    "  s.delinquent_since, s.delinquent_principal_cents, s.charged_since_delinquent_cents"
    "), raw AS ("
    " SELECT m.*, CAST(div(m.units, :den) AS BIGINT) - m.before AS raw FROM summed m"
    "), changes AS ("
    " SELECT r.loan_id, r.product_id,"
    "  CASE WHEN r.raw > r.room THEN r.room ELSE r.raw END AS delta,"
    "  CASE WHEN r.raw > r.room THEN (r.before + r.room) * :den ELSE r.units END AS units"
    " FROM raw r"
    "), upd AS ("
    " UPDATE loan_day_states s SET penalised_through = :day, penalty_units = c.units,"
    "  penalty_accrued_cents = s.penalty_accrued_cents + c.delta,"
    "  charged_since_delinquent_cents = s.charged_since_delinquent_cents"
    "   + CASE WHEN s.delinquent_since IS NULL THEN 0 ELSE c.delta END"
    " FROM changes c WHERE s.loan_id = c.loan_id RETURNING s.loan_id"
    ") SELECT c.product_id, SUM(c.delta) AS delta, COUNT(*) AS n"
    " FROM changes c GROUP BY c.product_id ORDER BY c.product_id"
)


@dataclass(frozen=True, slots=True)
class Accrued:
    """What one accrual (the night's, or a repayment's catch-up) changed, per product."""

    interest_by_product: dict[str, int]
    penalty_by_product: dict[str, int]
    loans: int


def _accrue_loans(
    session: Session, deps: CoreDeps, day: date, loan_ids: list[int] | None, key: str
) -> Accrued:
    """Interest, then penalties, through ``day`` for the book (``loan_ids`` None) or those
    loans, posted per product: Dr interest receivable / Cr loan interest income and Dr
    penalty receivable / Cr penalty income, keyed ``<key>:accrue|penalty:<product>``."""
    params = _params(day, loan_ids)
    session.execute(_ENSURE_STATES, params)
    _lock_states(
        session, params,
        "s.accrued_through IS NULL OR s.accrued_through < :day"
        " OR s.penalised_through IS NULL OR s.penalised_through < :day",
    )  # fmt: skip
    interest = session.execute(_ACCRUE, params).all()
    penalty = session.execute(
        _PENALISE,
        {**params, "monthly": RatePeriod.MONTHLY, "den": accrual.PENALTY_DENOMINATOR},
    ).all()
    by_product = {
        "interest": {str(r.product_id): int(r.delta) for r in interest},
        "penalty": {str(r.product_id): int(r.delta) for r in penalty},
    }
    for kind, debit, credit in (
        ("interest", SystemAccount.INTEREST_RECEIVABLE, SystemAccount.LOAN_INTEREST_INCOME),
        ("penalty", SystemAccount.PENALTY_RECEIVABLE, SystemAccount.PENALTY_INCOME),
    ):
        step = "accrue" if kind == "interest" else "penalty"
        for product_id, delta in by_product[kind].items():
            _post_pair(
                session, deps, day, EntryKind.LOAN_ACCRUAL, f"{key}:{step}:{product_id}",
                delta, debit, credit,
                memo=f"{kind.capitalize()} accrued {day} product {product_id}",
            )  # fmt: skip
    loans = max(sum(int(r.n) for r in interest), sum(int(r.n) for r in penalty))
    return Accrued(by_product["interest"], by_product["penalty"], loans)


def _accrue(session: Session, deps: CoreDeps, day: date) -> StepResult:
    done = _accrue_loans(session, deps, day, None, f"close_day:{day}")
    return StepResult(
        day, CloseDayStep.ACCRUE, done.loans, sum(done.interest_by_product.values()),
        {"interest_cents_by_product": done.interest_by_product,
         "penalty_cents_by_product": done.penalty_by_product},
        True,
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
    params = {**_params(day, None), "version": version}
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
        session, params, "s.classified_on IS NULL OR s.classified_on < :day",
        extra="OR (l.status <> :active AND s.provision_cents > 0)",
    )  # fmt: skip
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
    state = _state(session, loan_id)
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


# ------------------------------------------------------------------ a repayment's catch-up


def catch_up_loan(session: Session, deps: CoreDeps, loan_id: int) -> date | None:
    """Inline catch-up: bring one loan's interest and penalties up to yesterday's close
    with the night's own SQL filtered to it, posting per-loan entries keyed
    ``close_day:catch_up:<loan id>:<date>``, so what a repayment pays (and the balance the
    member is shown) counts the penalty owed even when nights were not run. Locks the
    loan's state row (call it with the loan's row locked, before its instalments: the
    night locks state rows first too). Nothing on SQLite, nor before close of day was
    ever run (nothing is accrued there: a repayment settles as it always did). Returns
    the date caught up to (None: nothing to do)."""
    if session.get_bind().dialect.name != "postgresql" or last_closed(session) is None:
        return None
    through = business_date(deps.now()) - timedelta(days=1)
    _state(session, loan_id)  # the row locked first: a night changing it is waited for
    _accrue_loans(session, deps, through, [loan_id], f"close_day:catch_up:{loan_id}:{through}")
    return through


def _state(session: Session, loan_id: int) -> LoanDayState:
    """The loan's state row, locked (made when missing)."""
    return _locked_or_made(
        session, LoanDayState, LoanDayState.loan_id == loan_id, "loan_id",
        lambda: {
            "loan_id": loan_id, "accrued_interest_cents": 0, "days_past_due": 0,
            "missed_instalments": 0, "arrears_cents": 0, "exposure_cents": 0,
            "provision_cents": 0,
        },
    )  # fmt: skip


def penalty_owed_cents(session: Session, loan_id: int) -> int:
    """What the loan owes in penalties: charged, less paid and waived."""
    row = session.execute(
        select(
            LoanDayState.penalty_accrued_cents, LoanDayState.penalty_paid_cents,
            LoanDayState.penalty_waived_cents,
        ).where(LoanDayState.loan_id == loan_id)
    ).one_or_none()  # fmt: skip
    return 0 if row is None else int(row[0]) - int(row[1]) - int(row[2])


def pay_penalty(session: Session, loan_id: int, cents: int) -> None:
    """A repayment paid ``cents`` of the loan's penalties (they settle penalty
    receivable: a penalty is owed only once it is charged)."""
    if cents:
        state = _state(session, loan_id)
        state.penalty_paid_cents += cents
        session.flush()
