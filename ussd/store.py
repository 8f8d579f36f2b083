"""Where USSD sessions live between hops: Redis in production, memory in the demo.

Three kinds of record, each with a TTL:

* the session state, under the gateway's ``sessionId`` (a few minutes: a USSD
  session lasts at most 180 s);
* the resume offer, under the phone number (2 minutes): where a member who
  dropped mid-flow may continue on their next dial;
* a member's live session id, under the member id (as long as the session), so a change
  of the member's phone number can end it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


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


class RedisStore:
    def __init__(self, client: Any, prefix: str = "ussd:") -> None:
        self.client = client
        self.prefix = prefix

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


def session_key(session_id: str) -> str:
    return f"s:{session_id}"


def resume_key(msisdn: str) -> str:
    return f"r:{msisdn}"


def member_key(member_id: int) -> str:
    """The member's live session id (``UssdService.after_approval`` ends it)."""
    return f"m:{member_id}"
