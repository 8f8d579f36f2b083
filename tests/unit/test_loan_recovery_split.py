"""The pro-rata split of a defaulted loan's rest over its guarantors' pledges
(core.loans.recovery.split_pro_rata): cents exact, never above what a pledge holds, each
share within a cent of its exact proportion when no pledge runs out."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.loans.recovery import split_pro_rata

CENTS = st.integers(min_value=1, max_value=10**11)


@st.composite
def pledges(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    """(total, pledges, what each still holds): a hold is at most its pledge."""
    weights = draw(st.lists(CENTS, min_size=1, max_size=9))
    caps = [draw(st.integers(min_value=0, max_value=w)) for w in weights]
    total = draw(st.integers(min_value=0, max_value=sum(weights) + 10**6))
    return total, weights, caps


@given(pledges())
def test_shares_add_up_exactly_and_never_pass_a_hold(
    case: tuple[int, list[int], list[int]],
) -> None:
    total, weights, caps = case
    shares = split_pro_rata(total, weights, caps)
    assert sum(shares) == min(total, sum(caps))
    assert all(0 <= s <= c for s, c in zip(shares, caps, strict=True))


@given(st.lists(CENTS, min_size=1, max_size=9), st.data())
def test_each_share_is_within_a_cent_of_its_proportion_when_pledges_are_whole(
    weights: list[int], data: st.DataObject
) -> None:
    total = data.draw(st.integers(min_value=0, max_value=sum(weights)))
    shares = split_pro_rata(total, weights, weights)
    # Whole pledges never cap a share: each is its exact proportion, floored or raised.
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert abs(share - exact) < 1


@given(pledges())
def test_a_guarantor_who_pledged_more_never_pays_less_unless_their_hold_ran_out(
    case: tuple[int, list[int], list[int]],
) -> None:
    total, weights, caps = case
    shares = split_pro_rata(total, weights, caps)
    for i in range(len(weights)):
        for j in range(len(weights)):
            if weights[i] > weights[j] and shares[i] < caps[i]:
                assert shares[i] >= shares[j]


def test_the_cents_left_go_to_the_largest_remainders() -> None:
    assert split_pro_rata(100, [1, 1, 1], [100, 100, 100]) == [34, 33, 33]
    assert split_pro_rata(5, [1, 2], [5, 5]) == [2, 3]
    assert split_pro_rata(10, [1, 1], [2, 100]) == [2, 8]  # one hold runs out
    assert split_pro_rata(500, [100, 200], [100, 200]) == [100, 200]  # more than they hold
    assert split_pro_rata(0, [3], [3]) == [0]


@pytest.mark.parametrize(
    ("total", "weights", "caps"),
    [(-1, [1], [1]), (1, [0], [1]), (1, [1], [-1]), (1, [1, 2], [1])],
)
def test_nonsense_is_refused(total: int, weights: list[int], caps: list[int]) -> None:
    with pytest.raises(ValueError):
        split_pro_rata(total, weights, caps)
