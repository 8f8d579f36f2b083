"""A phone's hop budget, counted in the same round trip that reads the session's state
(``ussd.store``: ``Store.admit``): Redis (a Lua script) and the demo's memory store give
the same verdicts, and both the moving-window rule."""

from __future__ import annotations

import uuid

import redis as redis_lib
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.settings import REDIS_URL
from ussd.store import MemoryStore, RedisStore, Window, windows

LIMITS = (Window(3, 60, "3 per 1 minute"), Window(5, 600, "5 per 10 minutes"))


def oracle(counted: list[list[float]], now: float) -> Window | None:
    """The rule, written plainly: a window is full when it already counted ``amount``
    hops in the last ``seconds``; the first full window stops the count."""
    for hops, w in zip(counted, LIMITS, strict=True):
        if sum(1 for t in hops if t >= now - w.seconds) >= w.amount:
            return w
        hops.append(now)
    return None


@settings(max_examples=40, deadline=None)
@given(gaps=st.lists(st.sampled_from([0.0, 1.0, 7.5, 19.0, 59.0, 61.0, 130.0]), max_size=30))
def test_redis_and_memory_budgets_agree_with_the_moving_window_rule(gaps: list[float]) -> None:
    now = [1_800_000_000.0]
    client = redis_lib.Redis.from_url(REDIS_URL)
    prefix = f"t-{uuid.uuid4().hex}:"
    on_redis = RedisStore(client, prefix=prefix, clock=lambda: now[0])
    in_memory = MemoryStore(clock=lambda: now[0])
    counted: list[list[float]] = [[], []]
    try:
        for gap in gaps:
            now[0] += gap
            expected = oracle(counted, now[0])
            assert on_redis.admit("s:1", "+254712000001", LIMITS) == (None, expected, None)
            assert in_memory.admit("s:1", "+254712000001", LIMITS) == (None, expected, None)
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_admit_reads_the_state_and_each_phone_has_its_own_budget(
    redis_client: redis_lib.Redis,
) -> None:
    for store in (RedisStore(redis_client), MemoryStore()):
        store.put("s:abc", '{"screen": "main"}', 180)
        one = (Window(1, 60, "1 per 1 minute"),)
        state = '{"screen": "main"}'
        assert store.admit("s:abc", "+254712000001", one) == (state, None, None)
        assert store.admit("s:abc", "+254712000001", one) == (state, one[0], None)
        assert store.admit("s:new", "+254712000002", one) == (None, None, None)
        assert store.admit("s:new", "+254712000002", ()) == (None, None, None)  # no limit set


def test_a_dial_takes_the_offer_only_when_the_phone_is_within_its_budget(
    redis_client: redis_lib.Redis,
) -> None:
    for store in (RedisStore(redis_client), MemoryStore()):
        one = (Window(1, 60, "1 per 1 minute"),)
        store.put("r:+254712000003", '{"screen": "dep_amount"}', 120)
        store.put("r:+254712000004", '{"screen": "wd_amount"}', 120)
        got = store.admit("s:a", "+254712000003", one, take="r:+254712000003")
        assert got == (None, None, '{"screen": "dep_amount"}')
        assert store.get("r:+254712000003") is None  # an offer is made once
        assert store.admit("s:b", "+254712000004", one) == (None, None, None)
        # Over the budget: turned away, and the offer stays for a later dial.
        got = store.admit("s:c", "+254712000004", one, take="r:+254712000004")
        assert got == (None, one[0], None)
        assert store.get("r:+254712000004") == '{"screen": "wd_amount"}'


def test_the_setting_becomes_windows_in_its_order() -> None:
    assert windows("30/minute;300/day") == (
        Window(30, 60, "30 per 1 minute"),
        Window(300, 86_400, "300 per 1 day"),
    )
    assert windows("") == ()
