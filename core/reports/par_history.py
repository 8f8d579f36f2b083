"""Portfolio at risk over time, from the close-of-day history (issue 16, part 5).

Each closed business date's ``classify`` step records the exposure by SASRA category
(``close_day_steps.detail``: ``by_category``). From it, per date:

* ``at_risk``: exposure in watch or worse over all exposure (any instalment late);
* ``par30``: exposure in substandard or worse over all exposure. With the default bands
  (core/risk/classification.py) substandard starts at 31 days past due, so this is PAR 30
  as the bands define it; a SACCO that changes its bands changes this line with them.

Ratios are ``Decimal`` percentages rounded half-up to two places, here and only here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.loans.vocabulary import CloseDayStep as Step
from core.risk.vocabulary import LoanCategory
from db.models_close_day import CloseDayRun, CloseDayStep

MAX_DAYS = 3 * 366
AT_RISK = frozenset(c.value for c in LoanCategory) - {LoanCategory.PERFORMING.value}
PAR30 = AT_RISK - {LoanCategory.WATCH.value}


@dataclass(frozen=True, slots=True)
class ParPoint:
    day: date
    exposure_cents: int
    at_risk_pct: Decimal
    par30_pct: Decimal


def percent(part: int, whole: int) -> Decimal:
    """``part / whole`` as a percentage, two places, half up; 0 when ``whole`` is 0."""
    if whole <= 0:
        return Decimal("0.00")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def par_point(day: date, by_category: dict[str, dict[str, int]]) -> ParPoint:
    """Pure: one date's point from its recorded exposure by category."""
    exposure = {cat: int(v.get("exposure_cents", 0)) for cat, v in by_category.items()}
    total = sum(exposure.values())
    return ParPoint(
        day,
        total,
        percent(sum(v for c, v in exposure.items() if c in AT_RISK), total),
        percent(sum(v for c, v in exposure.items() if c in PAR30), total),
    )


def par_series(session: Session, first: date, last: date) -> list[ParPoint]:
    """Every closed date from ``first`` to ``last`` with its classify step, oldest first."""
    if last < first or (last - first).days > MAX_DAYS:
        raise InvalidInput(f"a range of 0 to {MAX_DAYS} days", field="to", reason="range")
    rows = session.execute(
        select(CloseDayRun.business_date, CloseDayStep.detail)
        .join(CloseDayStep, CloseDayStep.run_id == CloseDayRun.id)
        .where(
            CloseDayStep.step == Step.CLASSIFY,
            CloseDayRun.business_date >= first,
            CloseDayRun.business_date <= last,
        )
        .order_by(CloseDayRun.business_date)
    ).tuples()
    return [par_point(day, json.loads(detail).get("by_category", {})) for day, detail in rows]
