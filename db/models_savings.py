"""Savings products and interest (issue 14, part 1; migration 0029; docs/savings/products.md).

Written by ``core.savings.products`` (definitions, maker-checker) and
``core.savings.interest`` (the daily accrual, set-based SQL, and the posting).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime
from db.models_loans import ExactDecimal


class SavingsProduct(Base):
    """A savings product; its terms are in its versions. ``default_for``: the member
    account (savings, deposits, shares) every member holds under this product."""

    __tablename__ = "savings_products"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    current_version: Mapped[int] = mapped_column(Integer)
    default_for: Mapped[str | None] = mapped_column(String(24), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SavingsProductVersion(Base):
    """One approved definition of a savings product, never changed once written."""

    __tablename__ = "savings_product_versions"
    __table_args__ = (
        UniqueConstraint("product_id", "version", name="uq_savings_product_versions_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("savings_products.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(24))
    rate_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    balance_method: Mapped[str] = mapped_column(String(24))
    day_count: Mapped[str] = mapped_column(String(16))
    min_balance_to_earn_cents: Mapped[int] = mapped_column(BigInteger)
    posting_frequency: Mapped[str] = mapped_column(String(12))
    min_balance_cents: Mapped[int] = mapped_column(BigInteger)
    withdrawal_fee_cents: Mapped[int] = mapped_column(BigInteger)
    daily_withdrawal_limit_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    active: Mapped[bool] = mapped_column(Boolean)
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A fixed deposit's terms (migration 0044); NULL for every other kind.
    fd_term_months: Mapped[int | None] = mapped_column(Integer, default=None)
    fd_interest_at: Mapped[str | None] = mapped_column(String(12), default=None)
    fd_penalty: Mapped[str | None] = mapped_column(String(20), default=None)
    fd_penalty_rate_percent: Mapped[Decimal | None] = mapped_column(ExactDecimal(9, 4),
                                                                    default=None)  # fmt: skip


class WithholdingTaxRate(Base):
    """A withholding tax rate by kind (``interest``), from ``effective_from`` on."""

    __tablename__ = "withholding_tax_rates"
    __table_args__ = (
        UniqueConstraint("kind", "effective_from", name="uq_withholding_tax_rates_kind_from"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))
    effective_from: Mapped[date] = mapped_column(Date)
    rate_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    source: Mapped[str] = mapped_column(String(200))


class SavingsAccrualRun(Base):
    """One business date accrued (and, at a period's end, posted)."""

    __tablename__ = "savings_accrual_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    business_date: Mapped[date] = mapped_column(Date, unique=True)
    accounts: Mapped[int] = mapped_column(Integer)
    accrued_cents: Mapped[int] = mapped_column(BigInteger)
    posted_accounts: Mapped[int] = mapped_column(Integer)
    posted_gross_cents: Mapped[int] = mapped_column(BigInteger)
    posted_tax_cents: Mapped[int] = mapped_column(BigInteger)
    forfeited_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SavingsAccrual(Base):
    """An interest-bearing account's accrual since its last posting."""

    __tablename__ = "savings_accruals"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("savings_products.id"), index=True)
    period_start: Mapped[date] = mapped_column(Date)
    accrued_through: Mapped[date] = mapped_column(Date)
    remainder_units: Mapped[int] = mapped_column(BigInteger)
    accrued_cents: Mapped[int] = mapped_column(BigInteger)
    balance_days_cents: Mapped[int] = mapped_column(BigInteger)
    days: Mapped[int] = mapped_column(Integer)


class SavingsInterestPosting(Base):
    """Interest posted to a member's account: gross, withholding tax, net."""

    __tablename__ = "savings_interest_postings"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "business_date", name="uq_savings_interest_postings_account_date"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("savings_products.id"))
    business_date: Mapped[date] = mapped_column(Date)
    period_start: Mapped[date] = mapped_column(Date)
    gross_cents: Mapped[int] = mapped_column(BigInteger)
    tax_cents: Mapped[int] = mapped_column(BigInteger)
    net_cents: Mapped[int] = mapped_column(BigInteger)
    tax_rate_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FixedDeposit(Base):
    """One term of a member's fixed deposit (migration 0044; core.savings.fixed_deposits):
    the terms locked at opening; a rollover is a new row on the same ledger account."""

    __tablename__ = "fixed_deposits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("savings_products.id"))
    product_version: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    rolled_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("fixed_deposits.id"), unique=True, default=None
    )
    principal_cents: Mapped[int] = mapped_column(BigInteger)
    rate_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    term_months: Mapped[int] = mapped_column(Integer)
    interest_at: Mapped[str] = mapped_column(String(12))
    penalty: Mapped[str] = mapped_column(String(20))
    penalty_rate_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    rollover: Mapped[str] = mapped_column(String(24))
    start_date: Mapped[date] = mapped_column(Date)
    maturity_date: Mapped[date] = mapped_column(Date, index=True)
    interest_paid_cents: Mapped[int] = mapped_column(BigInteger)
    interest_paid_through: Mapped[date] = mapped_column(Date)
    tax_cents: Mapped[int] = mapped_column(BigInteger)
    penalty_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), index=True)
    opened_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
