"""PAR over time from the close-of-day history: each closed date's recorded exposure by
category gives loans at risk and PAR 30; the chart renders it."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import matplotlib.image
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from core.reports.charts import par_chart
from core.reports.par_history import par_point, par_series
from db.models_close_day import CloseDayRun, CloseDayStep

CATEGORIES = ("performing", "watch", "substandard", "doubtful", "loss")


def closed(s: Session, day: date, exposure: dict[str, int]) -> None:
    """A closed date as close of day records it (the classify step's ``by_category``)."""
    at = datetime(day.year, day.month, day.day, 21, tzinfo=UTC)
    run = CloseDayRun(business_date=day, status="done", band_version=1, started_at=at,
                      finished_at=at)  # fmt: skip
    s.add(run)
    s.flush()
    detail = {"by_category": {c: {"loans": 1, "exposure_cents": v, "provision_cents": 0,
                                  "arrears_cents": 0, "restructured_loans": 0}
                              for c, v in exposure.items()}}  # fmt: skip
    s.add(CloseDayStep(run_id=run.id, step="classify", loans=len(exposure), amount_cents=0,
                       detail=json.dumps(detail), finished_at=at))  # fmt: skip
    s.add(
        CloseDayStep(
            run_id=run.id,
            step="accrue",
            loans=1,
            amount_cents=5,
            detail=json.dumps({"by_category": {"loss": {"exposure_cents": 10**9}}}),
            finished_at=at,
        )
    )  # fmt: skip  (another step: not read)
    s.flush()


def test_par_per_closed_date(db_session: Session) -> None:
    closed(db_session, date(2015, 4, 1), {"performing": 900_00, "watch": 100_00})
    closed(db_session, date(2015, 4, 2), {"performing": 600_00, "watch": 100_00,
                                         "substandard": 200_00, "loss": 100_00})  # fmt: skip
    closed(db_session, date(2015, 4, 5), {})
    closed(db_session, date(2015, 5, 1), {"loss": 1})  # after the range
    points = par_series(db_session, date(2015, 4, 1), date(2015, 4, 30))
    assert [(p.day.day, p.exposure_cents, p.at_risk_pct, p.par30_pct) for p in points] == [
        (1, 1_000_00, Decimal("10.00"), Decimal("0.00")),
        (2, 1_000_00, Decimal("40.00"), Decimal("30.00")),
        (5, 0, Decimal("0.00"), Decimal("0.00")),
    ]
    png = par_chart(points, "png", title="PAR")
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2] == (400, 800)


@given(st.dictionaries(st.sampled_from(CATEGORIES), st.integers(min_value=0, max_value=10**13)))
def test_par30_never_exceeds_loans_at_risk(exposure: dict[str, int]) -> None:
    point = par_point(date(2026, 1, 1), {c: {"exposure_cents": v} for c, v in exposure.items()})
    assert Decimal(0) <= point.par30_pct <= point.at_risk_pct <= Decimal(100)
    assert point.exposure_cents == sum(exposure.values())
