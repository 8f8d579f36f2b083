"""The savings products' rules where money leaves (issue 14, part 1), at their boundaries:
a withdrawal that leaves exactly the minimum balance passes and a cent more is refused with
the most that may go; the daily limit is reached exactly and not crossed; the fee is the
product's; deposits and shares are never withdrawn; shares keep the minimum holding unless
the holder exits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.savings.rules import (
    AccountRules,
    BelowMinimumBalance,
    BelowMinimumHolding,
    DailyWithdrawalLimit,
    NotWithdrawable,
    check_min_holding,
    check_withdrawal,
)
from core.savings.vocabulary import ProductKind

cents = st.integers(0, 10_000_000_00)


def sav(keep: int = 0, fee: int = 0, limit: int | None = None) -> AccountRules:
    return AccountRules("SAV", ProductKind.ORDINARY_SAVINGS, keep, fee, limit)


@given(keep=cents, fee=st.integers(0, 1_000_00), other=st.integers(0, 1_000_00), extra=cents)
def test_the_most_that_leaves_keeps_the_minimum_exactly_and_a_cent_more_is_refused(
    keep: int, fee: int, other: int, extra: int
) -> None:
    amount = extra + 1  # at least a cent
    available = keep + fee + other + amount
    rules = sav(keep, fee)
    assert check_withdrawal(
        rules, amount_cents=amount, available_cents=available, withdrawn_today_cents=0,
        other_fees_cents=other,
    ) == fee  # fmt: skip
    with pytest.raises(BelowMinimumBalance) as refused:
        check_withdrawal(
            rules, amount_cents=amount + 1, available_cents=available, withdrawn_today_cents=0,
            other_fees_cents=other,
        )  # fmt: skip
    if keep:
        assert refused.value.reason == "min_balance" and refused.value.limit_cents == amount
    else:  # no minimum: simply not enough, the available balance shown
        assert refused.value.reason == "insufficient" and refused.value.limit_cents == available


@given(limit=st.integers(1, 1_000_000_00), before=cents, amount=st.integers(1, 1_000_000_00))
def test_the_daily_limit_counts_what_left_today_and_shows_what_is_left(
    limit: int, before: int, amount: int
) -> None:
    rules = sav(limit=limit)
    big = 10**12
    if before + amount <= limit:
        assert check_withdrawal(
            rules, amount_cents=amount, available_cents=big, withdrawn_today_cents=before
        ) == 0  # fmt: skip
    else:
        with pytest.raises(DailyWithdrawalLimit) as refused:
            check_withdrawal(
                rules, amount_cents=amount, available_cents=big, withdrawn_today_cents=before
            )
        assert refused.value.limit_cents == max(0, limit - before)
        assert refused.value.code == "daily_withdrawal_limit"


def test_the_daily_limit_is_checked_before_the_balance() -> None:
    with pytest.raises(DailyWithdrawalLimit):
        check_withdrawal(
            sav(keep=100, limit=500), amount_cents=600, available_cents=0, withdrawn_today_cents=0
        )


@pytest.mark.parametrize("kind", [ProductKind.DEPOSITS, ProductKind.SHARE_CAPITAL,
                                  ProductKind.FIXED_DEPOSIT])  # fmt: skip
def test_only_ordinary_savings_is_withdrawable(kind: ProductKind) -> None:
    with pytest.raises(NotWithdrawable):
        check_withdrawal(
            AccountRules("X", kind, 0, 0, None),
            amount_cents=1, available_cents=10**9, withdrawn_today_cents=0,
        )  # fmt: skip


@given(keep=cents, balance=cents, amount=st.integers(1, 10_000_000_00))
def test_shares_keep_the_minimum_holding_unless_the_holder_exits(
    keep: int, balance: int, amount: int
) -> None:
    rules = AccountRules("SHR", ProductKind.SHARE_CAPITAL, keep, 0, None)
    if amount > balance:
        with pytest.raises(BelowMinimumHolding):
            check_min_holding(rules, balance_cents=balance, amount_cents=amount, exiting=True)
        return
    check_min_holding(rules, balance_cents=balance, amount_cents=amount, exiting=True)
    if balance - amount >= keep:
        check_min_holding(rules, balance_cents=balance, amount_cents=amount)
    else:
        with pytest.raises(BelowMinimumHolding) as refused:
            check_min_holding(rules, balance_cents=balance, amount_cents=amount)
        assert refused.value.limit_cents == max(0, balance - keep)
