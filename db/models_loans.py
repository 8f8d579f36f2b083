"""Loan products (migration 0014): a product's identity and its immutable versions.

A product (``loan_products``) is a code and a pointer to its current version; its terms live
in ``loan_product_versions``, one row per approved definition, never updated or deleted (a
PostgreSQL trigger refuses it), with its fees in ``loan_product_fees``. A change approved
through maker-checker writes version N+1 and moves the pointer; a loan keeps the version it
was made with (it will reference ``loan_product_versions.id``), so changing a product never
changes a loan already made.

Rates, percents and the deposit multiplier are exact decimals (``ExactDecimal``: NUMERIC on
PostgreSQL; text on SQLite, which has no decimal type and would round through a float).
Their own module, not ``db/models.py``: the loan tables of issue 12 grow together here, and
the column type they need lives with them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    Numeric,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from db.base import Base, BigId, UTCDateTime


class ExactDecimal(TypeDecorator[Decimal]):
    """A ``Decimal`` stored exactly: ``NUMERIC(precision, scale)`` on PostgreSQL, its text
    on SQLite. A value with more decimals than ``scale`` is refused, never rounded: core
    validates first, so reaching this is a programming error."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision, scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self.quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(self.precision + 2))
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError(f"ExactDecimal takes a finite Decimal, got {value!r}")
        exact = value.quantize(self.quantum)
        if exact != value:
            raise ValueError(f"{value} has more than {self.scale} decimals")
        return str(exact) if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(self.quantum)


Rate = ExactDecimal(8, 4)  # a percent: 1.2000 is 1.2%; up to 9999.9999
Share = ExactDecimal(6, 2)  # a multiplier (3.00) or a cover percent (100.00)


class LoanProduct(Base):
    """A product's identity: its code, never changed, and which version is current."""

    __tablename__ = "loan_products"
    __table_args__ = (CheckConstraint("current_version >= 1", name="version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoanProductVersion(Base):
    """One approved definition of a product; immutable once written."""

    __tablename__ = "loan_product_versions"
    __table_args__ = (
        UniqueConstraint("product_id", "version", name="uq_loan_product_versions_version"),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint("min_term >= 1 AND max_term >= min_term", name="term"),
        CheckConstraint(
            "min_amount_cents > 0 AND max_amount_cents >= min_amount_cents", name="amount"
        ),
        CheckConstraint(
            "min_membership_months >= 0 AND min_deposits_cents >= 0 AND "
            "grace_instalments >= 0 AND penalty_grace_days >= 0 AND "
            "auto_approve_ceiling_cents >= 0 AND max_guarantees_per_guarantor >= 1",
            name="not_negative",
        ),
        CheckConstraint("rate_period IN ('annual', 'monthly')", name="rate_period"),
        CheckConstraint("penalty_rate_period IN ('annual', 'monthly')", name="penalty_period"),
        CheckConstraint(
            "method IN ('reducing_equal_instalments', 'reducing_equal_principal', 'flat')",
            name="method",
        ),
        CheckConstraint("frequency IN ('monthly', 'weekly')", name="frequency"),
        CheckConstraint("rounding IN ('cent', 'shilling')", name="rounding"),
        CheckConstraint("guarantor_policy IN ('none', 'required')", name="guarantor_policy"),
        CheckConstraint("pledge_release IN ('pro_rata', 'at_own_deposits')", name="pledge_release"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("loan_products.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    rate_percent: Mapped[Decimal] = mapped_column(Rate)
    rate_period: Mapped[str] = mapped_column(String(8))
    method: Mapped[str] = mapped_column(String(32))
    frequency: Mapped[str] = mapped_column(String(8))
    min_term: Mapped[int] = mapped_column(Integer)  # instalments
    max_term: Mapped[int] = mapped_column(Integer)
    min_amount_cents: Mapped[int] = mapped_column(BigInteger)
    max_amount_cents: Mapped[int] = mapped_column(BigInteger)
    deposit_multiplier: Mapped[Decimal] = mapped_column(Share)
    min_membership_months: Mapped[int] = mapped_column(Integer)
    min_deposits_cents: Mapped[int] = mapped_column(BigInteger)
    penalty_rate_percent: Mapped[Decimal] = mapped_column(Rate)
    penalty_rate_period: Mapped[str] = mapped_column(String(8))
    grace_instalments: Mapped[int] = mapped_column(Integer)  # interest only, at the start
    penalty_grace_days: Mapped[int] = mapped_column(Integer)  # after a due date
    guarantor_policy: Mapped[str] = mapped_column(String(10))
    guarantor_cover_percent: Mapped[Decimal | None] = mapped_column(Share, default=None)
    max_guarantees_per_guarantor: Mapped[int] = mapped_column(Integer)
    self_guarantee_allowed: Mapped[bool] = mapped_column(Boolean)
    pledge_release: Mapped[str] = mapped_column(String(16))
    rounding: Mapped[str] = mapped_column(String(8))
    auto_approve_ceiling_cents: Mapped[int] = mapped_column(BigInteger)
    channels: Mapped[str] = mapped_column(String(24))  # space-separated, sorted
    active: Mapped[bool] = mapped_column(Boolean)
    # The maker-checker request that made this version (none for a seeded product).
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoanProductFee(Base):
    """A fee of one product version, optionally only for a range of terms (a one-off fee
    of 7.5% for one month and 10% for two or three). Immutable like its version."""

    __tablename__ = "loan_product_fees"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('processing', 'insurance', 'top_up_commission')", name="kind"
        ),
        CheckConstraint(
            "timing IN ('deducted_at_disbursement', 'added_to_schedule')", name="timing"
        ),
        CheckConstraint("fixed_cents IS NULL OR fixed_cents >= 0", name="fixed"),
        CheckConstraint(
            "min_term IS NULL OR max_term IS NULL OR max_term >= min_term", name="term"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("loan_product_versions.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # order as given
    kind: Mapped[str] = mapped_column(String(20))
    percent: Mapped[Decimal | None] = mapped_column(Rate, default=None)
    fixed_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    timing: Mapped[str] = mapped_column(String(28))
    min_term: Mapped[int | None] = mapped_column(Integer, default=None)
    max_term: Mapped[int | None] = mapped_column(Integer, default=None)
