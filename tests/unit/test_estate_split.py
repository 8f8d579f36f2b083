"""The estate of a deceased member shared per the nomination (core.members.death.split_estate):
the parts sum to the estate exactly, each within a cent of its percentage, whatever the
estate and the shares."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.kernel.errors import InvalidInput
from core.members.death import split_estate


@st.composite
def nominations(draw: st.DrawFn) -> list[Decimal]:
    """1-10 shares of at most two decimals, each above 0, summing to exactly 100."""
    n = draw(st.integers(1, 10))
    cuts = sorted(draw(st.lists(st.integers(1, 9_999), min_size=n - 1, max_size=n - 1,
                                unique=True)))  # fmt: skip
    bounds = [0, *cuts, 10_000]
    return [Decimal(b - a) / 100 for a, b in zip(bounds, bounds[1:], strict=False)]


@given(st.integers(0, 10**12), nominations())
def test_the_parts_sum_to_the_estate_and_each_is_within_a_cent_of_its_share(
    estate: int, shares: list[Decimal]
) -> None:
    parts = split_estate(estate, shares)
    assert sum(parts) == estate
    assert len(parts) == len(shares)
    for part, share in zip(parts, shares, strict=True):
        assert abs(Decimal(part) - Decimal(estate) * share / 100) < 1
        assert part >= 0


def test_a_third_each_gives_the_odd_cent_to_the_first_nominee() -> None:
    assert split_estate(100, [Decimal("33.33"), Decimal("33.33"), Decimal("33.34")]) == [33, 33, 34]
    assert split_estate(1_000_001, [Decimal(50), Decimal(50)]) == [500_001, 500_000]


@pytest.mark.parametrize(
    "shares", [[], [Decimal(60)], [Decimal(60), Decimal(41)], [Decimal(100), Decimal(0)]]
)
def test_shares_that_are_not_a_nomination_are_refused(shares: list[Decimal]) -> None:
    with pytest.raises(InvalidInput):
        split_estate(10_000, shares)
