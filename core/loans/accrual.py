"""Interest accrual, pure (issue 13, part 3; docs/loans/close-of-day.md).

A schedule charges interest per instalment period (``core.loans.schedule``: whatever the
method, the period's interest is fixed at disbursement). Accrual spreads each period's
interest over the period's days, straight line on actual days, and carries the rounding
remainder: through day ``d`` of a period of ``D`` days, ``floor(interest × d / D)`` is
accrued, so each day's accrual is the difference of two such figures and the last day
takes what is left. The sum of a period's daily accruals is the period's interest,
exactly.

Period ``k`` runs from the previous due date (the disbursement date for the first) to
its due date; closing day ``day`` accrues the days elapsed, ``day − starts_on`` (0 on the
first day of the period, all of them on its due date).

What the loan has *recognised* as income (``recognised_cents``) is per instalment the
larger of what is accrued and what is already paid (interest paid before it is accrued
goes to income at once), and never more than the interest less what an early payoff
waived. Close of day books ``recognised(day) − recognised so far``; a repayment books the
change it makes to ``recognised`` at the loan's accrued-through date
(``recognised_change``), so the nightly figure and the repayment's never count a shilling
twice. ``core.loans.close_of_day`` computes the same in SQL over the whole book; the tests
hold the two together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class PeriodInterest:
    """One instalment's interest period and what is paid or waived of its interest."""

    number: int
    starts_on: date
    due_on: date
    interest_cents: int
    paid_interest_cents: int = 0
    waived_interest_cents: int = 0


def accrued_in_period(interest_cents: int, starts_on: date, due_on: date, day: date) -> int:
    """Interest of one period accrued by the close of ``day``: ``floor(interest × elapsed /
    days)``, elapsed clamped to the period (a period of no days accrues at its due date)."""
    days = (due_on - starts_on).days
    if days <= 0:
        return interest_cents if day >= due_on else 0
    elapsed = min(max((day - starts_on).days, 0), days)
    return interest_cents * elapsed // days


def recognised_in_period(p: PeriodInterest, day: date) -> int:
    """What is income of this instalment's interest by ``day`` (see the module)."""
    accrued = accrued_in_period(p.interest_cents, p.starts_on, p.due_on, day)
    return max(p.paid_interest_cents, min(accrued, p.interest_cents - p.waived_interest_cents))


def recognised_cents(periods: Sequence[PeriodInterest], day: date | None) -> int:
    """The loan's interest recognised by the close of ``day`` (None: never closed; only
    what is paid counts)."""
    if day is None:
        return sum(p.paid_interest_cents for p in periods)
    return sum(recognised_in_period(p, day) for p in periods)


def periods(
    disbursed_on: date,
    rows: Sequence[tuple[int, date, int, int, int]],
    starts: Mapping[int, date] | None = None,
) -> list[PeriodInterest]:
    """Periods from instalment rows ``(number, due_on, interest, paid, waived)``. A period
    starts at the previous due date (the disbursement for the first) unless ``starts``
    gives its own start (``loan_instalments.starts_on``: the first instalment of a
    rescheduled loan's new schedule starts on the day of the rescheduling)."""
    out: list[PeriodInterest] = []
    previous = disbursed_on
    for number, due_on, interest, paid, waived in sorted(rows):
        begins = (starts or {}).get(number, previous)
        out.append(PeriodInterest(number, begins, due_on, interest, paid, waived))
        previous = due_on
    return out


def recognised_change(
    before: Sequence[PeriodInterest],
    paid: dict[int, tuple[int, int]],
    day: date | None,
) -> int:
    """How a repayment changes the loan's recognised interest at ``day`` (its
    accrued-through date): ``paid`` maps an instalment number to (interest paid, interest
    waived) by the repayment. Positive: interest paid that was not yet accrued, income
    now; negative: accrued interest an early payoff waived, taken back from income."""
    after = [
        replace(
            p,
            paid_interest_cents=p.paid_interest_cents + paid.get(p.number, (0, 0))[0],
            waived_interest_cents=p.waived_interest_cents + paid.get(p.number, (0, 0))[1],
        )
        for p in before
    ]
    return recognised_cents(after, day) - recognised_cents(before, day)


# ------------------------------------------------------------------ penalties

# A penalty rate is a percent per its period with four decimals (``RATE_PLACES``); a day
# is 1/365 of a year and a month 1/12 of one. One day's penalty on ``overdue`` cents is
# ``overdue × rate × 10,000 × months / PENALTY_DENOMINATOR`` cents (``months``: 12 for a
# monthly rate, 1 for an annual one): kept exact in these units, charged in whole cents.
PENALTY_DENOMINATOR = 365 * 100 * 10_000


def penalty_factor(rate_percent: Decimal, monthly: bool) -> int:
    """Units of one day's penalty per cent overdue (see ``PENALTY_DENOMINATOR``)."""
    scaled = rate_percent * 10_000
    if scaled != scaled.to_integral_value():
        raise ValueError("a penalty rate has at most four decimals")
    return int(scaled) * (12 if monthly else 1)


def penalty_day_units(overdue_cents: int, days_past_due: int, grace_days: int, factor: int) -> int:
    """One day's penalty in units: on what is overdue (principal and interest of the
    instalments due before the day) once the oldest of them is past the grace period."""
    return overdue_cents * factor if days_past_due > grace_days else 0


def penalty_cents(units: int) -> int:
    """The whole cents charged for ``units`` (the rest waits for the next day)."""
    return units // PENALTY_DENOMINATOR
