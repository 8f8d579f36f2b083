"""The pure rules of savings interest (core.savings.interest): a day's accrual with the
remainder carried sums to the exact interest floored, the tax rounds half up, and periods
end on the last day of a month, quarter or year."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_FLOOR, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.savings.interest import DENOMINATOR, accrue_one, period_ends, rate_units, tax_cents
from core.savings.vocabulary import PostingFrequency


@settings(max_examples=200)
@given(
    balances=st.lists(st.integers(0, 10**12), min_size=1, max_size=60),
    rate=st.decimals(min_value=Decimal(0), max_value=Decimal(30), places=4),
)
def test_carried_remainder_sums_to_the_exact_interest_floored(
    balances: list[int], rate: Decimal
) -> None:
    units, total = 0, 0
    for balance in balances:
        cents, units = accrue_one(units, balance, rate_units(rate))
        total += cents
        assert 0 <= units < DENOMINATOR
    exact = sum(Decimal(b) * rate / 100 / 365 for b in balances)
    assert total == int(
        (sum(balances) * rate * 10_000 // DENOMINATOR).to_integral_value(ROUND_FLOOR)
    )
    assert Decimal(total) <= exact < total + 1


def test_tax_rounds_half_up_to_the_cent() -> None:
    assert tax_cents(62_000, Decimal(15)) == 9_300
    assert tax_cents(765, Decimal(15)) == 115  # 114.75
    assert tax_cents(3, Decimal(15)) == 0  # 0.45
    assert tax_cents(10, Decimal(15)) == 2  # 1.5
    assert tax_cents(0, Decimal(15)) == 0


def test_periods_end_on_the_last_day_of_their_month_quarter_or_year() -> None:
    year = [date(2028, 1, 1) + timedelta(days=n) for n in range(366)]  # a leap year
    ends = {f: [d for d in year if period_ends(d, f)] for f in PostingFrequency}
    assert len(ends[PostingFrequency.MONTHLY]) == 12
    assert date(2028, 2, 29) in ends[PostingFrequency.MONTHLY]
    assert ends[PostingFrequency.QUARTERLY] == [
        date(2028, 3, 31), date(2028, 6, 30), date(2028, 9, 30), date(2028, 12, 31)
    ]  # fmt: skip
    assert ends[PostingFrequency.ANNUALLY] == [date(2028, 12, 31)]
