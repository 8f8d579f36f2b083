from datetime import UTC, datetime, timedelta

import pytest

from core.kernel.pins import (
    LOCK_DURATION,
    PinHasher,
    PinState,
    after_failure,
    after_success,
    attempts_left,
    current_lock,
    pin_weakness,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
FRESH = PinState(0, 0, None, False)


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("0000", "repeated"),
        ("7777", "repeated"),
        ("1212", "repeated"),
        ("1122", "repeated"),
        ("1234", "sequential"),
        ("6789", "sequential"),
        ("9876", "sequential"),
        ("3210", "sequential"),
        ("1990", "year"),
        ("2004", "year"),
        ("2580", "common"),
        ("123", "format"),
        ("12345", "format"),
        ("12a4", "format"),
        ("١٢٣٤", "format"),
        ("", "format"),
    ],
)
def test_trivial_pins_are_refused(pin: str, reason: str) -> None:
    assert pin_weakness(pin) == reason


def test_good_pins_are_accepted_but_not_the_phone_tail() -> None:
    for pin in ["4826", "5937", "7391", "8052"]:
        assert pin_weakness(pin) is None
    assert pin_weakness("4826", msisdn="+254712344826") == "phone"


def test_three_wrong_lock_for_thirty_minutes_then_a_second_lockout_blocks() -> None:
    state = FRESH
    state = after_failure(state, NOW)
    assert attempts_left(state) == 2 and not current_lock(state, NOW).locked
    state = after_failure(after_failure(state, NOW), NOW)
    lock = current_lock(state, NOW)
    assert lock.locked and lock.until == NOW + LOCK_DURATION and not lock.blocked
    later = NOW + LOCK_DURATION + timedelta(seconds=1)
    assert not current_lock(state, later).locked
    for _ in range(3):
        state = after_failure(state, later)
    assert current_lock(state, later + timedelta(days=30)).blocked


def test_a_correct_pin_clears_the_count() -> None:
    state = after_failure(after_failure(FRESH, NOW), NOW)
    assert after_success() == FRESH
    assert attempts_left(state) == 1


def test_hash_is_peppered_and_never_contains_the_pin() -> None:
    hasher = PinHasher(b"pepper-one-0123456789")
    digest = hasher.hash("4826")
    assert "4826" not in digest and digest.startswith("$argon2id$")
    assert hasher.verify(digest, "4826")
    assert not hasher.verify(digest, "4827")
    assert not PinHasher(b"pepper-two-0123456789").verify(digest, "4826")
    assert not hasher.verify("garbage", "4826")
