"""Close of day's pure rules: accrual over any period of any schedule adds up to the
schedule's interest exactly (hypothesis), what a repayment recognises, and the SASRA
classification at every boundary (core.loans.accrual, core.risk.classification)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.kernel.errors import InvalidInput
from core.loans import accrual
from core.loans.schedule import ScheduleTerms, build_schedule
from core.loans.vocabulary import Frequency, RatePeriod, RepaymentMethod, Rounding
from core.risk.classification import (
    DEFAULT_BANDS,
    Band,
    check_bands,
    classify,
    provision_cents,
)
from core.risk.vocabulary import LoanCategory as Category


@st.composite
def schedules(draw: st.DrawFn) -> ScheduleTerms:
    frequency = draw(st.sampled_from(Frequency))
    instalments = draw(st.integers(1, 48))
    disbursed = draw(st.dates(date(2000, 1, 1), date(2090, 12, 31)))
    first_due = draw(
        st.one_of(
            st.none(),
            st.integers(1, 56 if frequency is Frequency.MONTHLY else 14).map(
                lambda d: disbursed + timedelta(days=d)
            ),
        )
    )
    return ScheduleTerms(
        principal_cents=draw(st.integers(1_000_00, 5_000_000_00)),
        rate=draw(st.decimals(min_value=0, max_value=Decimal("0.05"), places=4)),
        rate_period=RatePeriod.MONTHLY,
        method=draw(st.sampled_from(RepaymentMethod)),
        frequency=frequency,
        instalments=instalments,
        disbursed_on=disbursed,
        first_due_on=first_due,
        grace_periods=draw(st.integers(0, min(instalments - 1, 3))),
        rounding=draw(st.sampled_from(Rounding)),
    )


@settings(max_examples=150, deadline=None)
@given(terms=schedules(), data=st.data())
def test_daily_accruals_over_any_period_add_up_to_the_schedules_interest_exactly(
    terms: ScheduleTerms, data: st.DataObject
) -> None:
    try:
        schedule = build_schedule(terms)
    except InvalidInput:
        return  # terms no level instalment repays (docs/loans/schedules.md)
    periods = accrual.periods(
        terms.disbursed_on,
        [(i.number, i.due_on, i.interest_cents, 0, 0) for i in schedule.instalments],
    )
    # Any period: the day-by-day accruals from its start to its due date sum to its interest.
    p = data.draw(st.sampled_from(periods))
    days = (p.due_on - p.starts_on).days
    cumulative = [
        accrual.accrued_in_period(
            p.interest_cents, p.starts_on, p.due_on, p.starts_on + timedelta(n)
        )
        for n in range(days + 1)
    ]
    daily = [b - a for a, b in zip(cumulative, cumulative[1:], strict=False)]
    assert cumulative[0] == 0 and sum(daily) == p.interest_cents
    assert all(d >= 0 for d in daily) and max(daily, default=0) - min(daily, default=0) <= 1
    # The loan as a whole: by each due date, everything due is accrued, nothing more.
    for k, row in enumerate(schedule.instalments, start=1):
        due_so_far = sum(i.interest_cents for i in schedule.instalments[:k])
        assert accrual.recognised_cents(periods, row.due_on) == due_so_far
    # Any span of days, accrued in one go, equals the same days one at a time.
    a = data.draw(st.dates(terms.disbursed_on, schedule.instalments[-1].due_on))
    b = data.draw(st.dates(a, schedule.instalments[-1].due_on))
    one_go = accrual.recognised_cents(periods, b) - accrual.recognised_cents(periods, a)
    step = sum(
        accrual.recognised_cents(periods, a + timedelta(n + 1))
        - accrual.recognised_cents(periods, a + timedelta(n))
        for n in range((b - a).days)
    )
    assert one_go == step


def test_what_a_repayment_recognises() -> None:
    start, due = date(2026, 1, 10), date(2026, 2, 10)
    periods = [
        accrual.PeriodInterest(1, start, due, 100_000),
        accrual.PeriodInterest(2, due, date(2026, 3, 10), 92_115),
    ]
    accrued = 100_000 * 30 // 31  # closed through 9 February
    # Paid on its due date, before that day is closed: the day not accrued is income now.
    assert accrual.recognised_change(periods, {1: (100_000, 0)}, due - timedelta(1)) == (
        100_000 - accrued
    )
    # Never closed: all of it is income now.
    assert accrual.recognised_change(periods, {1: (100_000, 0)}, None) == 100_000
    # Paid off on 20 February after closing the 19th: period 2's accrued interest waived.
    paid = [accrual.PeriodInterest(1, start, due, 100_000, 100_000), periods[1]]
    waived = accrual.recognised_change(paid, {2: (0, 92_115)}, date(2026, 2, 19))
    assert waived == -(92_115 * 9 // 28)
    # A period of no days (never built, but safe) accrues on its due date.
    assert accrual.accrued_in_period(500, due, due, due - timedelta(1)) == 0
    assert accrual.accrued_in_period(500, due, due, due) == 500


@pytest.mark.parametrize(
    ("days", "missed", "category"),
    [
        (0, 0, Category.PERFORMING),
        (1, 0, Category.WATCH),
        (30, 0, Category.WATCH),
        (31, 0, Category.SUBSTANDARD),
        (180, 0, Category.SUBSTANDARD),
        (181, 0, Category.DOUBTFUL),
        (360, 0, Category.DOUBTFUL),
        (361, 0, Category.LOSS),
        (0, 1, Category.WATCH),
        (0, 2, Category.SUBSTANDARD),
        (0, 6, Category.SUBSTANDARD),
        (0, 7, Category.DOUBTFUL),
        (0, 12, Category.DOUBTFUL),
        (0, 13, Category.LOSS),
        # The worse of the two.
        (1, 7, Category.DOUBTFUL),
        (200, 1, Category.DOUBTFUL),
        (30, 13, Category.LOSS),
        (361, 0, Category.LOSS),
    ],
)
def test_classification_boundaries(days: int, missed: int, category: Category) -> None:
    assert classify(days, missed).category == category


def test_provision_is_the_bands_percent_of_the_exposure_half_up() -> None:
    rates = {b.category: b.provision_percent for b in DEFAULT_BANDS}
    assert rates == {
        Category.PERFORMING: Decimal(1), Category.WATCH: Decimal(5),
        Category.SUBSTANDARD: Decimal(25), Category.DOUBTFUL: Decimal(50),
        Category.LOSS: Decimal(100),
    }  # fmt: skip
    assert provision_cents(10_000_000, classify(0, 0)) == 100_000
    assert provision_cents(150, classify(0, 0)) == 2  # 1.5 cents, half up
    assert provision_cents(149, classify(0, 0)) == 1
    assert provision_cents(123_457, classify(400, 0)) == 123_457
    assert provision_cents(0, classify(400, 0)) == 0


def test_a_band_table_must_get_worse_with_each_band() -> None:
    check_bands(DEFAULT_BANDS)
    with pytest.raises(ValueError):
        check_bands(DEFAULT_BANDS[1:])  # no band from 0 days
    swapped = (
        *DEFAULT_BANDS[:2],
        Band(Category.SUBSTANDARD, 2, 20, 2, Decimal(25)),
        Band(Category.DOUBTFUL, 3, 10, 7, Decimal(50)),
    )
    with pytest.raises(ValueError):
        check_bands(swapped)
    with pytest.raises(ValueError):
        classify(-1, 0)
