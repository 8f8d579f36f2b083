"""The nomination's 100 % rule, over random splits, and the SIM-swap rule for a change
of phone number (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.kernel.errors import InvalidInput
from core.members.nominations import Beneficiary, check_date_of_birth, check_nomination
from core.risk.sim_swap import SimSwapVerdict, swap_status

CENT = Decimal("0.01")


def nominees(shares: list[Decimal]) -> list[Beneficiary]:
    return [
        Beneficiary("Mary Atieno", "child", "birth_certificate", f"BC{1000 + i}", share)
        for i, share in enumerate(shares)
    ]


@st.composite
def splits_of_100(draw: st.DrawFn) -> list[Decimal]:
    """1-10 positive shares with two decimals that sum to exactly 100."""
    n = draw(st.integers(1, 10))
    cuts = sorted(draw(st.sets(st.integers(1, 9_999), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, 10_000]
    return [Decimal(b - a) * CENT for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=60, deadline=None)
@given(splits_of_100())
def test_any_split_that_sums_to_100_is_accepted_as_given(shares: list[Decimal]) -> None:
    checked = check_nomination(nominees(shares))
    assert [b.share_percent for b in checked] == shares


@settings(max_examples=60, deadline=None)
@given(splits_of_100(), st.integers(-50, 50).filter(bool), st.data())
def test_a_split_off_by_any_cent_is_refused_with_the_sum(
    shares: list[Decimal], cents: int, data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(shares) - 1))
    moved = shares[i] + cents * CENT
    if not Decimal(0) < moved <= 100:
        return
    shares[i] = moved
    with pytest.raises(InvalidInput) as refused:
        check_nomination(nominees(shares))
    assert refused.value.field == "beneficiaries"
    assert f"they sum to {(100 + cents * CENT).normalize():f}" in refused.value.detail


@pytest.mark.parametrize("share", ["0", "-5", "100.5", "33.333", "NaN", "abc", True])
def test_a_share_out_of_range_or_finer_than_a_cent_is_refused(share: object) -> None:
    with pytest.raises(InvalidInput):
        check_nomination(nominees([share]))  # type: ignore[list-item]


def test_no_beneficiary_or_more_than_ten_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        check_nomination([])
    with pytest.raises(InvalidInput, match="at most 10"):
        check_nomination(nominees([Decimal("9.09")] * 10 + [Decimal("9.1")]))


def test_a_member_is_at_least_18_on_the_day() -> None:
    today = date(2026, 12, 2)
    assert check_date_of_birth(date(2008, 12, 2), today) == date(2008, 12, 2)
    with pytest.raises(InvalidInput):
        check_date_of_birth(date(2008, 12, 3), today)
    assert check_date_of_birth(date(2008, 2, 29), date(2026, 3, 1))
    for absurd in (date(9999, 12, 31), date(1, 1, 1), date(1899, 12, 31)):
        with pytest.raises(InvalidInput):
            check_date_of_birth(absurd, today)


NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
NOT_SWAPPED = SimSwapVerdict(True, False, None)


def test_a_phone_change_within_the_window_is_a_recent_swap_until_cleared() -> None:
    changed = NOW - timedelta(days=2)
    assert swap_status(NOT_SWAPPED, now=NOW, window=WEEK, phone_changed_at=changed) == "recent"
    assert (
        swap_status(
            NOT_SWAPPED, now=NOW, window=WEEK, phone_changed_at=changed, cleared_swap_at=changed
        )
        == "cleared"
    )
    assert swap_status(NOT_SWAPPED, now=NOW, window=WEEK, phone_changed_at=NOW - WEEK) == "recent"
    old = NOW - WEEK - timedelta(microseconds=1)
    assert swap_status(NOT_SWAPPED, now=NOW, window=WEEK, phone_changed_at=old) == "none"
    failed = SimSwapVerdict(False, None, None, "timeout")
    assert swap_status(failed, now=NOW, window=WEEK, phone_changed_at=old) == "unknown"
    assert swap_status(failed, now=NOW, window=WEEK, phone_changed_at=changed) == "recent"
