"""Savings products' words (issue 14, part 1; docs/savings/products.md)."""

from __future__ import annotations

from enum import StrEnum


class ProductKind(StrEnum):
    """What a savings product is."""

    ORDINARY_SAVINGS = "ordinary_savings"  # withdrawable
    DEPOSITS = "deposits"  # non-withdrawable; back loans; refunded on exit
    SHARE_CAPITAL = "share_capital"  # equity: earns dividends, never interest
    FIXED_DEPOSIT = "fixed_deposit"  # a term deposit


class BalanceMethod(StrEnum):
    """Which balance earns interest (docs/savings/products.md, "Interest")."""

    DAILY_BALANCE = "daily_balance"  # each day's closing balance, if at least the minimum
    AVERAGE_DAILY_BALANCE = "average_daily_balance"  # the period earns if its average does


class DayCount(StrEnum):
    """The day count: a day's interest is the annual rate / 365 (leap years too)."""

    ACTUAL_365 = "actual/365"


class PostingFrequency(StrEnum):
    """When accrued interest is posted to the member's account: on the period's last day."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNUALLY = "annually"


class TaxKind(StrEnum):
    """``withholding_tax_rates.kind``."""

    INTEREST = "interest"  # interest on deposits and savings
