"""Appraisal (core/loans/appraisal.py): the limit a member's deposits allow and every reason
an application cannot go ahead."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.loans.appraisal import (
    LendingRules,
    MemberFacts,
    Reason,
    ScoreVerdict,
    appraise,
    limit_cents,
    months_between,
)

KES = 100
DEVELOPMENT = LendingRules(
    deposit_multiplier=Decimal("3"),
    min_amount_cents=5_000 * KES,
    max_amount_cents=1_000_000 * KES,
    min_membership_months=6,
    min_deposits_cents=10_000 * KES,
)
TODAY = date(2026, 12, 2)


def facts(**changes: object) -> MemberFacts:
    base: dict[str, object] = {
        "today": TODAY,
        "joined_on": date(2025, 1, 15),
        "active": True,
        "free_deposits_cents": 50_000 * KES,
        "principal_outstanding_cents": 0,
    }
    return MemberFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_the_limit_is_three_times_free_deposits_less_what_is_owed() -> None:
    assert limit_cents(DEVELOPMENT, facts()) == 150_000 * KES
    owing = facts(principal_outstanding_cents=40_000 * KES)
    assert limit_cents(DEVELOPMENT, owing) == 110_000 * KES
    result = appraise(DEVELOPMENT, owing, 110_000 * KES)
    assert result.ok and result.main_reason is None
    assert appraise(DEVELOPMENT, owing, 110_000 * KES + 1).reasons == (Reason.ABOVE_LIMIT,)


def test_the_limit_is_never_negative_nor_above_the_products_maximum() -> None:
    assert limit_cents(DEVELOPMENT, facts(principal_outstanding_cents=999_999 * KES)) == 0
    rich = facts(free_deposits_cents=900_000 * KES)
    assert limit_cents(DEVELOPMENT, rich) == 1_000_000 * KES
    assert appraise(DEVELOPMENT, rich, 1_000_001 * KES).reasons == (Reason.ABOVE_MAXIMUM,)


def test_a_fractional_multiplier_floors_to_the_cent() -> None:
    rules = LendingRules(Decimal("2.5"), 1, 10**12)
    assert limit_cents(rules, facts(free_deposits_cents=333)) == 832  # 832.5 floored


def test_every_reason_is_listed_most_fundamental_first() -> None:
    everything_wrong = facts(
        active=False,
        guarantees_defaulted_loan=True,
        in_arrears=True,
        joined_on=date(2026, 10, 1),
        free_deposits_cents=1_000 * KES,
        principal_outstanding_cents=3_000 * KES,
    )
    result = appraise(DEVELOPMENT, everything_wrong, 50_000 * KES, ScoreVerdict(False, "thin"))
    assert result.reasons == (
        Reason.NOT_ACTIVE,
        Reason.GUARANTEED_DEFAULT,
        Reason.IN_ARREARS,
        Reason.TOO_NEW,
        Reason.DEPOSITS_TOO_LOW,
        Reason.NO_LIMIT,
        Reason.LOW_SCORE,
    )
    assert result.main_reason is Reason.NOT_ACTIVE and result.score_reason == "thin"
    assert appraise(DEVELOPMENT, facts(), 4_999 * KES).reasons == (Reason.BELOW_MINIMUM,)


def test_membership_months_are_whole_months_with_short_month_ends() -> None:
    assert months_between(date(2026, 1, 15), date(2026, 2, 14)) == 0
    assert months_between(date(2026, 1, 15), date(2026, 2, 15)) == 1
    assert months_between(date(2028, 1, 31), date(2028, 2, 29)) == 1  # leap month end
    assert months_between(date(2026, 1, 31), date(2026, 2, 27)) == 0
    assert months_between(date(2026, 5, 1), date(2026, 4, 1)) == 0
    six_months_less_a_day = facts(joined_on=date(2026, 6, 3))
    assert Reason.TOO_NEW in appraise(DEVELOPMENT, six_months_less_a_day).reasons
    assert appraise(DEVELOPMENT, facts(joined_on=date(2026, 6, 2))).ok


@given(
    deposits=st.integers(min_value=0, max_value=10**11),
    owed=st.integers(min_value=0, max_value=10**11),
    multiplier=st.decimals(min_value=0, max_value=10, places=2),
    asked=st.integers(min_value=1, max_value=10**11),
)
def test_an_approved_amount_never_exceeds_the_limit_nor_the_security(
    deposits: int, owed: int, multiplier: Decimal, asked: int
) -> None:
    rules = LendingRules(multiplier, 1, 10**10)
    member = facts(free_deposits_cents=deposits, principal_outstanding_cents=owed)
    result = appraise(rules, member, asked)
    assert 0 <= result.limit_cents <= rules.max_amount_cents
    assert result.limit_cents + owed <= multiplier * deposits or result.limit_cents == 0
    if result.ok:
        assert asked <= result.limit_cents
        assert asked + owed <= multiplier * deposits  # covered by the deposits it rests on
