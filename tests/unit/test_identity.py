import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.kernel.errors import InvalidInput
from core.kernel.identity import (
    is_valid_member_number,
    member_number_for,
    normalize_msisdn,
    normalize_name,
    normalize_national_id,
)


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("0712345678", "+254712345678"),
        ("712345678", "+254712345678"),
        ("254712345678", "+254712345678"),
        ("+254712345678", "+254712345678"),
        ("0712 345 678", "+254712345678"),
        ("0110123456", "+254110123456"),
        ("+254110123456", "+254110123456"),
        ("254 110 123 456", "+254110123456"),
    ],
)
def test_kenyan_mobiles_normalise_to_e164(typed: str, e164: str) -> None:
    assert normalize_msisdn(typed) == e164


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "12345",
        "0202345678",
        "+255712345678",
        "07123456789",
        "abcdefghij",
        "+2547",
        "0" * 300,
        "+44 7911 123456",
    ],
)
def test_bad_phone_numbers_are_refused(typed: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_msisdn(typed)


@given(st.integers(min_value=1, max_value=10**6))
def test_every_member_number_checks_and_every_single_typo_is_caught(seq: int) -> None:
    number = member_number_for(seq)
    assert is_valid_member_number(number)
    for i, ch in enumerate(number):
        for d in "0123456789":
            if d != ch:
                assert not is_valid_member_number(number[:i] + d + number[i + 1 :])
    for i in range(len(number) - 1):
        if number[i] != number[i + 1]:
            swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
            assert not is_valid_member_number(swapped)


def test_national_ids() -> None:
    assert normalize_national_id(" 2345 6781 ") == "23456781"
    for bad in ["12345", "1234567890", "12a4567", "", "1" * 40]:
        with pytest.raises(InvalidInput):
            normalize_national_id(bad)


def test_names() -> None:
    assert normalize_name("  amina   wanjiru ") == "Amina Wanjiru"
    assert normalize_name("Ng'ang'a Mwangi-Otieno") == "Ng'ang'a Mwangi-Otieno"
    for bad in ["Amina", "A1 B2", "x" * 70 + " y", "<script> x", "Amina  "]:
        with pytest.raises(InvalidInput):
            normalize_name(bad)
