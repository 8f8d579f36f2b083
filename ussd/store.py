"""Where USSD sessions live between hops: Redis in production, memory in the demo.

Three kinds of record, each with a TTL:

* the session state, under the gateway's ``sessionId`` (a few minutes: a USSD
  session lasts at most 180 s);
* the resume offer, under the phone number (2 minutes): where a member who
  dropped mid-flow may continue on their next dial;
* a member's live session id, under the member id (as long as the session), so a change
  of the member's phone number can end it;
* a phone's hop budget (``USSD_RATE_LIMIT``): per moving window, the times of its last
  hops (as long as the window).

A hop reads its session state and counts itself against the phone's budget in one round
trip (``Store.admit``: a Lua script on Redis), then writes what it keeps in one more
(``Store.write``): the floor for any design that keeps state between hops.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from limits import parse_many


@dataclass(frozen=True)
class Window:
    """One moving-window limit of a phone's hop budget: at most ``amount`` hops in any
    ``seconds``; ``text`` is how the setting wrote it (for the log)."""

    amount: int
    seconds: int
    text: str


def windows(setting: str) -> tuple[Window, ...]:
    """``USSD_RATE_LIMIT`` (``30/minute;300/day``, the ``limits`` syntax) as windows, in
    the setting's order; empty: no limit."""
    if not setting.strip():
        return ()
    return tuple(Window(i.amount, i.get_expiry(), str(i)) for i in parse_many(setting))


# KEYS: the state's key, the key to take (or ""), then one key per window; ARGV: now (s),
# then amount and seconds per window. Each window in turn, as the ``limits`` library's
# moving window does it (a list of the last ``amount`` hop times): over it if the oldest
# kept hop is within ``seconds``; else this hop is pushed. The first window over its limit
# stops the count, and nothing is taken. Returns {the state or false, 0 or the 1-based
# index of the window over its limit, the taken value or false}.
ADMIT_LUA = """
local now = tonumber(ARGV[1])
local state = redis.call('get', KEYS[1])
for i = 3, #KEYS do
    local limit = tonumber(ARGV[2 * i - 4])
    local seconds = tonumber(ARGV[2 * i - 3])
    local oldest = redis.call('lindex', KEYS[i], limit - 1)
    if oldest and tonumber(oldest) >= now - seconds then
        return {state, i - 2, false}
    end
    redis.call('lpush', KEYS[i], ARGV[1])
    redis.call('ltrim', KEYS[i], 0, limit - 1)
    redis.call('expire', KEYS[i], seconds)
end
local taken = false
if KEYS[2] ~= "" then
    taken = redis.call('getdel', KEYS[2])
end
return {state, 0, taken}
"""


class Admitted(NamedTuple):
    value: str | None  # under the key read
    over: Window | None  # the first window already full: the hop was turned away
    taken: str | None = None  # under the key taken (never when turned away)


class Store(Protocol):
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str, ttl_seconds: int) -> None: ...
    def delete(self, key: str) -> None: ...
    def take(self, key: str) -> str | None:
        """Read and delete in one step (an offer is made once)."""
        ...

    def write(self, puts: list[tuple[str, str, int]], deletes: list[str]) -> None:
        """Several puts (key, value, ttl) and deletes in one round trip."""
        ...

    def admit(
        self, key: str, budget: str, limits: Sequence[Window], take: str | None = None
    ) -> Admitted:
        """In one round trip: the value under ``key``, and one hop counted against each
        window of ``budget`` in turn; the first window already full is returned (the hop
        is then not counted in it nor in those after it), None when all had room; then,
        unless a window was full, the value under ``take`` read and deleted."""
        ...


class RedisStore:
    def __init__(
        self, client: Any, prefix: str = "ussd:", clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock  # hop times in the budget lists (shared by every worker)
        self._admit = client.register_script(ADMIT_LUA)  # EVALSHA, loaded on first use

    def admit(
        self, key: str, budget: str, limits: Sequence[Window], take: str | None = None
    ) -> Admitted:
        keys = [self.prefix + key, self.prefix + take if take else ""]
        args: list[Any] = [repr(self._clock())]
        for w in limits:
            keys.append(f"{self.prefix}rl:{budget}:{w.amount}/{w.seconds}")
            args += [w.amount, w.seconds]
        raw, over, taken = self._admit(keys=keys, args=args)
        return Admitted(
            raw.decode() if isinstance(raw, bytes) else raw,
            limits[int(over) - 1] if over else None,
            taken.decode() if isinstance(taken, bytes) else taken,
        )

    def get(self, key: str) -> str | None:
        raw = self.client.get(self.prefix + key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        self.client.set(self.prefix + key, value, ex=max(1, ttl_seconds))

    def delete(self, key: str) -> None:
        self.client.delete(self.prefix + key)

    def take(self, key: str) -> str | None:
        raw = self.client.getdel(self.prefix + key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def write(self, puts: list[tuple[str, str, int]], deletes: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value, ttl in puts:
            pipe.set(self.prefix + key, value, ex=max(1, ttl))
        if deletes:
            pipe.delete(*[self.prefix + key for key in deletes])
        pipe.execute()


class MemoryStore:
    """The embedded demo's store: one process (gunicorn runs one worker in the demo)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_items: int = 10_000
    ) -> None:
        self._items: dict[str, tuple[float, str]] = {}
        self._hops: dict[tuple[str, int, int], deque[float]] = {}  # the budgets' windows
        self._lock = threading.Lock()
        self._clock = clock
        self._max = max_items

    def _live(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        return item[1]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        with self._lock:
            now = self._clock()
            if len(self._items) >= self._max:
                for k in [k for k, (exp, _) in self._items.items() if exp <= now]:
                    del self._items[k]
                while len(self._items) >= self._max:  # still full: drop the oldest expiry
                    del self._items[min(self._items, key=lambda k: self._items[k][0])]
            self._items[key] = (now + max(1, ttl_seconds), value)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def take(self, key: str) -> str | None:
        with self._lock:
            value = self._live(key)
            self._items.pop(key, None)
            return value

    def write(self, puts: list[tuple[str, str, int]], deletes: list[str]) -> None:
        for key, value, ttl in puts:
            self.put(key, value, ttl)
        for key in deletes:
            self.delete(key)

    def admit(
        self, key: str, budget: str, limits: Sequence[Window], take: str | None = None
    ) -> Admitted:
        with self._lock:
            now = self._clock()
            if len(self._hops) >= self._max:  # drop budgets whose every hop is out of window
                for k in [k for k, q in self._hops.items() if not q or q[-1] < now - k[2]]:
                    del self._hops[k]
            for w in limits:
                hops = self._hops.setdefault((budget, w.amount, w.seconds), deque())
                while hops and hops[0] < now - w.seconds:
                    hops.popleft()
                if len(hops) >= w.amount:
                    return Admitted(self._live(key), w)
                hops.append(now)
            taken = self._live(take) if take else None
            if take:
                self._items.pop(take, None)
            return Admitted(self._live(key), None, taken)


def session_key(session_id: str) -> str:
    return f"s:{session_id}"


def resume_key(msisdn: str) -> str:
    return f"r:{msisdn}"


def member_key(member_id: int) -> str:
    """The member's live session id (``UssdService.after_approval`` ends it)."""
    return f"m:{member_id}"
