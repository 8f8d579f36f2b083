"""Routing a posting to a shard of a hot account: pure rules (core.ledger.entries)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from core.ledger.entries import Leg, pick_shard, route_to_shards

# Two sharded accounts (ids 1 and 2) with their shards, and cold accounts from 100 up.
SHARDS = {1: (11, 12, 13, 14), 2: (21, 22, 23, 24, 25, 26, 27, 28)}


def test_the_shard_is_a_uniform_function_of_the_key() -> None:
    shards = tuple(range(100, 116))
    counts = Counter(pick_shard(shards, f"c2b:RX{n:08d}") for n in range(16_000))
    assert set(counts) == set(shards)
    # 1,000 expected each; a binomial's sd here is 31, so 850-1150 is about five sd.
    assert all(850 <= c <= 1150 for c in counts.values()), counts
    assert pick_shard(shards, "c2b:RX1") == pick_shard(shards, "c2b:RX1")


@st.composite
def entries(draw: st.DrawFn) -> tuple[list[Leg], str]:
    named = draw(
        st.lists(
            st.sampled_from([1, 2, 11, 12, 21, 100, 101, 102, 103]),
            min_size=2,
            max_size=5,
            unique=True,
        )
    )
    amounts = [draw(st.integers(1, 10**9)) * draw(st.sampled_from([1, -1])) for _ in named[1:]]
    legs = [Leg(a, m) for a, m in zip(named[1:], amounts, strict=True)]
    legs.insert(0, Leg(named[0], -sum(amounts) or 1))
    return legs, draw(st.text(min_size=1, max_size=40))


@given(entries(), st.sets(st.sampled_from([1, 2])))
def test_routing_keeps_every_amount_and_one_leg_per_account(
    entry: tuple[list[Leg], str], keep: set[int]
) -> None:
    legs, key = entry
    routed = route_to_shards(legs, SHARDS, key, keep)
    assert [leg.amount_cents for leg in routed] == [leg.amount_cents for leg in legs]
    assert len({leg.account_id for leg in routed}) == len(routed)
    for before, after in zip(legs, routed, strict=True):
        if before.account_id in SHARDS and before.account_id not in keep:
            assert after.account_id in SHARDS[before.account_id]
        else:
            assert after == before
    assert route_to_shards(legs, SHARDS, key, keep) == routed  # the same key, the same rows


def test_a_shard_the_entry_names_itself_is_skipped() -> None:
    key = next(k for k in (f"k{n}" for n in range(100)) if pick_shard(SHARDS[1], k) == 12)
    routed = route_to_shards([Leg(1, 500), Leg(12, -500)], SHARDS, key)
    assert routed == (Leg(13, 500), Leg(12, -500))
    assert route_to_shards([Leg(1, 5), Leg(100, -5)], {}, key) == (Leg(1, 5), Leg(100, -5))
