"""Year end: dividends on shares and rebates on deposits (issue 14, part 2; migration 0031;
docs/savings/year-end.md), written by ``core.savings.year_end``.

* ``year_end_runs``: one row per run the board's rates were tried with; at most one per
  financial year is ever posted (``posted_year`` is unique).
* ``year_end_lines``: every member's amounts, frozen when the run is submitted and
  posted exactly as frozen.
* ``member_payout_choices``: where each member's net goes (no row: savings).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime
from db.models_loans import ExactDecimal


class YearEndRun(Base):
    """The board's proposed rates for a financial year, their totals and their state."""

    __tablename__ = "year_end_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'pending_approval', 'posted', 'rejected')", name="status"
        ),
        CheckConstraint(
            "dividend_method IN ('closing_balance', 'days_held')", name="dividend_method"
        ),
        CheckConstraint(
            "rebate_method IN ('monthly_pro_rata', 'average_monthly_balance')",
            name="rebate_method",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    financial_year: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20))
    dividend_method: Mapped[str] = mapped_column(String(24))
    dividend_rate_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    rebate_method: Mapped[str] = mapped_column(String(24))
    rebate_rate_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    dividend_tax_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    rebate_tax_percent: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4))
    members: Mapped[int] = mapped_column(Integer, default=0)
    dividend_gross_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    dividend_tax_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    rebate_gross_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    rebate_tax_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    net_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    digest: Mapped[str | None] = mapped_column(String(64), default=None)
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    posted_year: Mapped[int | None] = mapped_column(Integer, unique=True, default=None)
    posted_on: Mapped[date | None] = mapped_column(Date, default=None)
    declare_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class YearEndLine(Base):
    """One member's dividend and rebate in a run (gross, tax, net) and where the net went."""

    __tablename__ = "year_end_lines"
    __table_args__ = (
        UniqueConstraint("run_id", "member_id", name="uq_year_end_lines_run_member"),
        CheckConstraint(
            "dividend_gross_cents >= dividend_tax_cents AND dividend_tax_cents >= 0 AND "
            "rebate_gross_cents >= rebate_tax_cents AND rebate_tax_cents >= 0 AND "
            "net_cents = dividend_gross_cents - dividend_tax_cents + rebate_gross_cents "
            "- rebate_tax_cents",
            name="parts",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("year_end_runs.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    shares_basis_cents: Mapped[int] = mapped_column(BigInteger)
    deposits_basis_cents: Mapped[int] = mapped_column(BigInteger)
    dividend_gross_cents: Mapped[int] = mapped_column(BigInteger)
    dividend_tax_cents: Mapped[int] = mapped_column(BigInteger)
    rebate_gross_cents: Mapped[int] = mapped_column(BigInteger)
    rebate_tax_cents: Mapped[int] = mapped_column(BigInteger)
    net_cents: Mapped[int] = mapped_column(BigInteger)
    destination: Mapped[str] = mapped_column(String(12))
    credit_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )


class MemberPayoutChoice(Base):
    """A member's standing choice for dividends and rebates (no row: savings)."""

    __tablename__ = "member_payout_choices"
    __table_args__ = (
        CheckConstraint(
            "destination IN ('savings', 'mpesa', 'shares', 'deposits')", name="destination"
        ),
    )

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    destination: Mapped[str] = mapped_column(String(12))
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
