"""The member statement's texts and pure parts: every label a member can read has its
text in both languages, the same words as the USSD statement; running balances add up;
an SMS request's period; a statement e-mail's business key round-trips."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from core.ledger.statements import StatementLabel
from core.messaging.statement_mail import parse_statement_key, sms_period, statement_key
from core.reports.member_statement import TEXTS, running

USSD = Path(__file__).resolve().parents[2] / "ussd" / "catalogues"


def test_labels_and_account_names_match_the_ussd_catalogue() -> None:
    assert set(TEXTS["en"]) == set(TEXTS["sw"])
    for language in ("en", "sw"):
        ussd = tomllib.loads((USSD / f"ussd.{language}.toml").read_text())
        flat = {k: v for section in ussd.values() if isinstance(section, dict)
                for k, v in section.items()} | ussd  # fmt: skip
        for label in StatementLabel:
            assert TEXTS[language][f"kind_{label}"] == flat[f"kind_{label}"]
        for account in ("savings", "deposits", "shares", "loan", "other"):
            assert TEXTS[language][f"acct_{account}"] == flat[f"acct_{account}"]


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.lists(st.integers(min_value=-(10**9), max_value=10**9).filter(bool), max_size=50),
)
def test_running_balances_add_every_movement_once(opening: int, amounts: list[int]) -> None:
    moves = [(i, date(2026, 1, 1), f"R{i}", "deposit_mpesa", a) for i, a in enumerate(amounts)]
    rows = running(opening, moves)
    assert [r.amount_cents for r in rows] == amounts
    for i, row in enumerate(rows):
        assert row.balance_cents == opening + sum(amounts[: i + 1])


def test_an_sms_statement_covers_this_month_and_the_two_before() -> None:
    assert sms_period(date(2026, 3, 15)) == (date(2026, 1, 1), date(2026, 3, 15))
    assert sms_period(date(2026, 1, 31)) == (date(2025, 11, 1), date(2026, 1, 31))
    assert sms_period(date(2026, 12, 1)) == (date(2026, 10, 1), date(2026, 12, 1))


def test_a_statement_emails_key_names_its_member_and_period() -> None:
    key = statement_key(42, date(2026, 1, 1), date(2026, 3, 31), "sms:ATXid_1:x")
    asked = parse_statement_key(key)
    assert asked is not None
    assert (asked.member_id, asked.start, asked.end) == (42, date(2026, 1, 1), date(2026, 3, 31))
    assert parse_statement_key("sms_reply:ATXid_1") is None
    assert parse_statement_key("member_statement:x:2026-01-01:2026-03-31:t") is None
