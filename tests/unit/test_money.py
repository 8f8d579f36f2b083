from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.kernel.errors import InvalidInput
from core.kernel.money import Money, format_cents, format_signed, parse_amount


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("1,500", 150_000),
        ("1500.50", 150_050),
        (" 200 ", 20_000),
        ("0.5", 50),
        ("1,000,000", 100_000_000),
        ("7.05", 705),
    ],
)
def test_member_typed_amounts_parse_to_exact_cents(typed: str, cents: int) -> None:
    assert parse_amount(typed) == Money(cents)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("-5", "format"),
        ("0", "zero"),
        ("0.00", "zero"),
        ("1e9", "format"),
        ("abc", "format"),
        ("1.005", "format"),
        ("1,50", "format"),
        ("", "format"),
        ("1 000", "format"),
        ("99999999999", "too_large"),
        ("12" * 5000, "format"),
        ("１２", "format"),
        ("+5", "format"),
        ("5.", "format"),
        (".5", "format"),
        ("NaN", "format"),
        ("Infinity", "format"),
    ],
)
def test_bad_amounts_are_refused_with_a_reason(typed: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_amount(typed)
    assert err.value.reason == reason


def test_channel_limit_is_enforced() -> None:
    with pytest.raises(InvalidInput):
        parse_amount("150,001", max_cents=150_000 * 100)
    assert parse_amount("150,000", max_cents=150_000 * 100).cents == 15_000_000


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (150_050, "KES 1,500.50"),
        (150_000, "KES 1,500"),
        (5, "KES 0.05"),
        (-20_000, "-KES 200"),
        (0, "KES 0"),
    ],
)
def test_phone_screen_format(cents: int, text: str) -> None:
    assert format_cents(cents) == text


def test_money_refuses_floats_and_mixed_currencies() -> None:
    with pytest.raises(TypeError):
        Money(10.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True)
    with pytest.raises(ValueError):
        Money(100) + Money(100, "UGX")
    assert Money.of("12.34") == Money(1234)
    with pytest.raises(ValueError):
        Money.of(Decimal("0.001"))


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.lists(st.integers(0, 1000), min_size=1, max_size=12),
)
def test_allocation_never_loses_or_invents_a_cent(cents: int, ratios: list[int]) -> None:
    if sum(ratios) == 0:
        ratios[0] = 1
    parts = Money(cents).allocate(ratios)
    assert sum(p.cents for p in parts) == cents
    assert max(p.cents for p in parts) - min(p.cents for p in parts) <= abs(cents)


@given(st.integers(min_value=1, max_value=10**9))
def test_format_then_parse_round_trips(cents: int) -> None:
    assert parse_amount(format_cents(cents).removeprefix("KES ")) == Money(cents)


@given(st.integers(-(10**12), 10**12))
def test_a_signed_movement_reads_as_the_amount_with_its_sign(cents: int) -> None:
    text = format_signed(cents)
    assert text.startswith("+" if cents > 0 else "-" if cents < 0 else "0")
    assert format_cents(cents).endswith(text.lstrip("+-")) and "KES" not in text
