"""The one SIM-swap policy (``core.risk.sim_swap.swap_status``): what withdrawals, payouts,
PIN resets and loans all ask. At the window's edge a swap still counts as recent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.risk.sim_swap import SimSwapVerdict, swap_status

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
WEEK = timedelta(days=7)
TICK = timedelta(microseconds=1)

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
windows = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))
offsets = st.timedeltas(min_value=-timedelta(days=3), max_value=timedelta(days=3))


def swapped(at: datetime | None) -> SimSwapVerdict:
    return SimSwapVerdict(True, True, at)


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (SimSwapVerdict(True, False, None), "none"),
        (swapped(NOW - timedelta(days=6)), "recent"),
        (swapped(NOW - WEEK), "recent"),  # exactly at the edge: still recent
        (swapped(NOW - WEEK - TICK), "none"),
        (swapped(NOW + timedelta(hours=1)), "recent"),  # dated ahead of our clock
        (swapped(None), "recent"),  # no date: we cannot show it is old
        (SimSwapVerdict(False, None, None, "timeout"), "unknown"),
        (SimSwapVerdict(True, None, None), "unknown"),  # "ok" without a verdict
    ],
)
def test_the_status_of_a_verdict(verdict: SimSwapVerdict, expected: str) -> None:
    assert swap_status(verdict, now=NOW, window=WEEK) == expected


@given(moments, windows, offsets)
def test_a_swap_is_recent_exactly_when_at_most_the_window_ago(
    now: datetime, window: timedelta, offset: timedelta
) -> None:
    """Around the edge (``offset`` either side of it, down to the microsecond)."""
    at = now - window + offset
    status = swap_status(swapped(at), now=now, window=window)
    assert status == ("recent" if now - at <= window else "none")


@given(moments, windows, st.timedeltas(min_value=TICK, max_value=timedelta(days=30)))
def test_the_edge_itself_is_recent_and_a_moment_later_is_not(
    now: datetime, window: timedelta, later: timedelta
) -> None:
    edge = now - window
    assert swap_status(swapped(edge), now=now, window=window) == "recent"
    assert swap_status(swapped(edge), now=now + later, window=window) == "none"


@given(moments, windows, offsets, offsets)
def test_a_clearance_covers_its_swap_and_earlier_ones_never_a_later_one(
    now: datetime, window: timedelta, swap_offset: timedelta, cleared_offset: timedelta
) -> None:
    swap_at = now - window / 2 + swap_offset
    cleared_at = now - window / 2 + cleared_offset
    plain = swap_status(swapped(swap_at), now=now, window=window)
    status = swap_status(swapped(swap_at), now=now, window=window, cleared_swap_at=cleared_at)
    if plain == "recent":
        assert status == ("cleared" if swap_at <= cleared_at else "recent")
    else:
        assert status == plain


@given(moments, windows, st.none() | moments)
def test_no_verdict_is_unknown_whatever_was_cleared(
    now: datetime, window: timedelta, cleared: datetime | None
) -> None:
    failed = SimSwapVerdict(False, None, None, "provider answered HTTP 500")
    assert swap_status(failed, now=now, window=window, cleared_swap_at=cleared) == "unknown"
    undated = swap_status(swapped(None), now=now, window=window, cleared_swap_at=cleared)
    assert undated == "recent"
