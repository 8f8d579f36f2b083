"""PIN policy (pure) and PIN hashing.

Policy: 4 digits; refused when trivially guessable (all one digit, a run up or
down like 1234 or 9876, a repeated pair like 1212, one of the most common PINs,
a year 1940-2029 -- members pick birth years --, or the last four digits of the
member's own phone). Three wrong in a row lock PIN use for 30 minutes; a second
lockout without a correct PIN in between blocks the PIN until a staff reset. A
correct PIN clears the count.

Hashing: Argon2id over HMAC-SHA256(pepper, pin). The pepper comes from the
settings, never the database, so a stolen database alone cannot be brute-forced
over the 10,000 possible PINs. Parameters follow OWASP's Argon2id minimum
(19 MiB, t=2, p=1): verify takes tens of milliseconds, under the 100 ms budget.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PIN_LENGTH = 4
MAX_ATTEMPTS = 3
LOCK_DURATION = timedelta(minutes=30)
LOCKOUTS_BEFORE_BLOCK = 2

COMMON_PINS = frozenset(
    {
        "1122",
        "1313",
        "2211",
        "6969",
        "1004",
        "4321",
        "1010",
        "2020",
        "0101",
        "1230",
        "0852",
        "2580",
        "0007",
        "1000",
        "7777",
        "0911",
        "4444",
        "8888",
    }
)


def pin_weakness(pin: str, msisdn: str | None = None) -> str | None:
    """Why a PIN is refused (``format``, ``repeated``, ``sequential``, ``common``,
    ``year``, ``phone``), or None when it is acceptable."""
    if not isinstance(pin, str) or len(pin) != PIN_LENGTH or not pin.isascii() or not pin.isdigit():
        return "format"
    digits = [int(c) for c in pin]
    if len(set(digits)) == 1 or (pin[:2] == pin[2:]) or (pin[0] == pin[1] and pin[2] == pin[3]):
        return "repeated"
    steps = {b - a for a, b in zip(digits, digits[1:], strict=False)}
    if steps in ({1}, {-1}):
        return "sequential"
    if pin in COMMON_PINS:
        return "common"
    if 1940 <= int(pin) <= 2029:
        return "year"
    if msisdn and msisdn[-PIN_LENGTH:] == pin:
        return "phone"
    return None


@dataclass(frozen=True, slots=True)
class PinState:
    failed: int
    lockouts: int
    locked_until: datetime | None
    blocked: bool


@dataclass(frozen=True, slots=True)
class PinCheck:
    """The lock a member is under right now: ``blocked`` (staff reset) or ``until``."""

    blocked: bool
    until: datetime | None

    @property
    def locked(self) -> bool:
        return self.blocked or self.until is not None


def current_lock(state: PinState, now: datetime) -> PinCheck:
    if state.blocked:
        return PinCheck(True, None)
    if state.locked_until is not None and state.locked_until > now:
        return PinCheck(False, state.locked_until)
    return PinCheck(False, None)


def after_failure(state: PinState, now: datetime) -> PinState:
    failed = state.failed + 1
    if failed < MAX_ATTEMPTS:
        return replace(state, failed=failed)
    lockouts = state.lockouts + 1
    if lockouts >= LOCKOUTS_BEFORE_BLOCK:
        return PinState(failed=0, lockouts=lockouts, locked_until=None, blocked=True)
    return PinState(failed=0, lockouts=lockouts, locked_until=now + LOCK_DURATION, blocked=False)


def after_success() -> PinState:
    return PinState(failed=0, lockouts=0, locked_until=None, blocked=False)


def attempts_left(state: PinState) -> int:
    return MAX_ATTEMPTS - state.failed


class PinHasher:
    def __init__(self, pepper: bytes, *, time_cost: int = 2, memory_cost: int = 19456) -> None:
        if len(pepper) < 16:
            raise ValueError("the PIN pepper must be at least 16 bytes")
        self._pepper = pepper
        self._argon = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1)

    def _peppered(self, pin: str) -> bytes:
        return hmac.new(self._pepper, pin.encode(), hashlib.sha256).digest()

    def hash(self, pin: str) -> str:
        return self._argon.hash(self._peppered(pin))

    def verify(self, pin_hash: str, pin: str) -> bool:
        try:
            return self._argon.verify(pin_hash, self._peppered(pin))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, pin_hash: str) -> bool:
        return self._argon.check_needs_rehash(pin_hash)
