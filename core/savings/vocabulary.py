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

    INTEREST = "interest"  # interest on deposits and savings; also the year-end rebate
    DIVIDEND = "dividend"  # dividends on share capital (core.savings.year_end)


class DividendMethod(StrEnum):
    """How a year's dividend on share capital is worked out (docs/savings/year-end.md)."""

    CLOSING_BALANCE = "closing_balance"  # the share capital held at the year's end
    DAYS_HELD = "days_held"  # pro rata by days held: each day's closing balance / days


class RebateMethod(StrEnum):
    """How a year's rebate (interest) on deposits is worked out."""

    # opening deposits × rate + each month's net contribution × rate × months remaining / 12
    MONTHLY_PRO_RATA = "monthly_pro_rata"
    AVERAGE_MONTHLY_BALANCE = "average_monthly_balance"  # the mean of the 12 month-end balances


class PayoutChoice(StrEnum):
    """Where a member's net dividend and rebate go (the member's standing choice)."""

    SAVINGS = "savings"  # credited to savings (the default)
    MPESA = "mpesa"  # credited to savings, then paid out by M-Pesa B2C (two-phase)
    SHARES = "shares"  # capitalised into share capital
    DEPOSITS = "deposits"  # capitalised into deposits


class YearEndStatus(StrEnum):
    """``year_end_runs.status``."""

    DRAFT = "draft"  # rates set; preview at will
    PENDING_APPROVAL = "pending_approval"  # submitted: the amounts are frozen (``digest``)
    POSTED = "posted"
    REJECTED = "rejected"
