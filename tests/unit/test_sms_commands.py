"""The inbound SMS command parser (pure): keywords in both languages, case, spaces, typos."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.messaging.sms_commands import COMMANDS, KEYWORDS, parse_command, within_one_edit


@pytest.mark.parametrize(
    ("text", "kind", "language"),
    [
        ("BAL", "balance", "en"),
        ("bal", "balance", "en"),
        ("  Bal  ", "balance", "en"),
        ("balance", "balance", "en"),
        ("SALIO", "balance", "sw"),
        ("salio tafadhali", "balance", "sw"),
        ("mini", "mini", "en"),
        ("Taarifa", "mini", "sw"),
        ("loan", "loan", "en"),
        ("mkopo", "loan", "sw"),
        ("limit", "limit", "en"),
        ("kikomo", "limit", "sw"),
        ("help", "help", "en"),
        ("msaada", "help", "sw"),
        ("STOP", "stop", "en"),
        ("simama", "stop", "sw"),
        ("start", "start", "en"),
        ("anza", "start", "sw"),
        ("B A L", "balance", "en"),
        ("bal.", "balance", "en"),
        ("Bál", "balance", "en"),
        # one typo
        ("BLA", "balance", "en"),
        ("BALL", "balance", "en"),
        ("SALO", "balance", "sw"),
        ("MIMI", "mini", "en"),
        ("LAON", "loan", "en"),
        ("HLEP", "help", "en"),
        ("STPO", "stop", "en"),
        ("STRAT", "start", "en"),
        ("MSADA", "help", "sw"),
        ("MKOP", "loan", "sw"),
    ],
)
def test_keywords_in_both_languages_any_case_spacing_and_one_typo(
    text: str, kind: str, language: str
) -> None:
    command = parse_command(text)
    assert (command.kind, command.language) == (kind, language)


@pytest.mark.parametrize(
    ("text", "kind", "code"),
    [
        ("ACCEPT G7K2", "accept", "G7K2"),
        ("accept   g7k2 ", "accept", "G7K2"),
        ("kubali g7k2", "accept", "G7K2"),
        ("DECLINE AB12", "decline", "AB12"),
        ("kataa ab12", "decline", "AB12"),
        ("ACCEPT", "accept", None),
        ("accept abcdefghijklmnop", "accept", "ABCDEFGHIJ"),
    ],
)
def test_accept_and_decline_take_a_code(text: str, kind: str, code: str | None) -> None:
    command = parse_command(text)
    assert (command.kind, command.code) == (kind, code)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("TOPUP", "en"),
        ("top up", "en"),  # two words: TOPUP, not STOP (TOP is one letter from it)
        ("Top-up please", "en"),
        ("TOPPUP", "en"),  # one typo
        ("ongeza", "sw"),
        ("ONGEZA mkopo", "sw"),
        ("ONGZA", "sw"),
    ],
)
def test_topup_in_both_languages_and_never_read_as_stop(text: str, language: str) -> None:
    command = parse_command(text)
    assert (command.kind, command.language) == ("topup", language)


def test_top_alone_is_still_one_typo_from_stop() -> None:
    assert parse_command("TOP").kind == "stop"  # unchanged: only the pair makes TOPUP


@pytest.mark.parametrize("text", ["hello", "I want money", "12345", "xx", "ok", "BA NK"])
def test_other_text_is_unknown(text: str) -> None:
    assert parse_command(text).kind == "unknown"


@pytest.mark.parametrize("text", ["", "   ", "!!!", "\n"])
def test_blank_text_is_empty(text: str) -> None:
    assert parse_command(text).kind == "empty"


@given(st.text(max_size=2000))
def test_any_text_parses_without_error_to_a_known_command(text: str) -> None:
    command = parse_command(text)
    assert command.kind in COMMANDS
    assert command.code is None or (command.code.isalnum() and len(command.code) <= 10)


@given(st.sampled_from(sorted(KEYWORDS)), st.text(alphabet=" \t", max_size=4), st.booleans())
def test_case_and_surrounding_space_never_change_the_command(
    keyword: str, pad: str, lower: bool
) -> None:
    text = pad + (keyword.lower() if lower else keyword) + pad
    assert parse_command(text).kind == KEYWORDS[keyword][0]


@given(
    st.sampled_from(sorted(KEYWORDS)),
    st.integers(0, 10),
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
)
def test_one_substitution_maps_to_the_keyword_or_is_refused_when_ambiguous(
    keyword: str, position: int, letter: str
) -> None:
    i = position % len(keyword)
    typo = keyword[:i] + letter + keyword[i + 1 :]
    command = parse_command(typo)
    close = {KEYWORDS[k][0] for k in KEYWORDS if within_one_edit(typo, k)}
    if typo in KEYWORDS:
        assert command.kind == KEYWORDS[typo][0]
    elif len(typo) < 3 or len(close) != 1:
        assert command.kind == "unknown"
    else:
        assert command.kind == KEYWORDS[keyword][0]


def test_edit_distance_one() -> None:
    assert within_one_edit("BAL", "BLA") and within_one_edit("BAL", "BA")
    assert within_one_edit("STOP", "STOPS") and not within_one_edit("STOP", "SPOT")
    assert not within_one_edit("LOAN", "LIMIT")
