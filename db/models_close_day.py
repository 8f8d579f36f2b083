"""Close of day for the loan book (issue 13; migration 0020; docs/loans/close-of-day.md).

Written by ``core.loans.close_of_day`` (set-based SQL over the whole book) and read by the
staff API. Its own module: the loan tables in ``db/models_loans.py`` stay as the book
writes them, and the run's figures live beside them, one row per loan.
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
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime
from db.models_loans import ExactDecimal


class CloseDayRun(Base):
    """One business date closed: ``running`` until its last step, then ``done``."""

    __tablename__ = "close_day_runs"
    __table_args__ = (CheckConstraint("status IN ('running', 'done')", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    business_date: Mapped[date] = mapped_column(Date, unique=True)
    status: Mapped[str] = mapped_column(String(10))
    band_version: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class CloseDayStep(Base):
    """A step of a run, written in the step's own transaction when it is done."""

    __tablename__ = "close_day_steps"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_close_day_steps_run_step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("close_day_runs.id"))
    step: Mapped[str] = mapped_column(String(16))
    loans: Mapped[int] = mapped_column(Integer)  # loans the step changed
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # its money figure (see the step)
    detail: Mapped[str] = mapped_column(Text)  # JSON: per product, per category
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoanDayState(Base):
    """What close of day knows of one loan; each step moves its own date forward."""

    __tablename__ = "loan_day_states"

    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), primary_key=True)
    accrued_through: Mapped[date | None] = mapped_column(Date, default=None)
    # Interest recognised as income to date: accrued nightly, or taken straight to income
    # by a repayment of interest not yet accrued (core.loans.accrual.recognised_change).
    accrued_interest_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    classified_on: Mapped[date | None] = mapped_column(Date, default=None)
    days_past_due: Mapped[int] = mapped_column(Integer, default=0)
    missed_instalments: Mapped[int] = mapped_column(Integer, default=0)
    arrears_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    category: Mapped[str | None] = mapped_column(String(12), default=None)
    exposure_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    provision_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Penalties on arrears (migration 0021): charged through ``penalised_through``; the
    # exact sum in units of 1/PENALTY_DENOMINATOR cent (the remainder carried), the cents
    # charged (its floor, or less under the Reg. 31 cap), paid and waived.
    penalised_through: Mapped[date | None] = mapped_column(Date, default=None)
    penalty_units: Mapped[Decimal] = mapped_column(Numeric(38, 0), default=Decimal(0))
    penalty_accrued_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    penalty_paid_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    penalty_waived_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Reg. 31: since when the loan is delinquent (None: it is not), the principal
    # outstanding then (the cap), interest and penalties charged since, and the interest
    # the cap stopped (waived on the instalments).
    delinquent_since: Mapped[date | None] = mapped_column(Date, default=None)
    delinquent_principal_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_since_delinquent_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    interest_capped_cents: Mapped[int] = mapped_column(BigInteger, default=0)


class LoanCategoryChange(Base):
    """A loan's category changed on ``business_date`` (rows only on change)."""

    __tablename__ = "loan_category_changes"
    __table_args__ = (
        UniqueConstraint("loan_id", "business_date", name="uq_loan_category_changes_day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    business_date: Mapped[date] = mapped_column(Date)
    category_from: Mapped[str | None] = mapped_column(String(12), default=None)
    category_to: Mapped[str] = mapped_column(String(12))
    days_past_due: Mapped[int] = mapped_column(Integer)
    missed_instalments: Mapped[int] = mapped_column(Integer)
    exposure_cents: Mapped[int] = mapped_column(BigInteger)
    band_version: Mapped[int] = mapped_column(Integer)


class LoanRiskBand(Base):
    """One band of one version of the classification (seeded; a new version is a new set
    of rows with a later ``effective_from``)."""

    __tablename__ = "loan_risk_bands"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(12), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date)
    rank: Mapped[int] = mapped_column(Integer)
    min_days: Mapped[int] = mapped_column(Integer)
    min_missed: Mapped[int] = mapped_column(Integer)
    provision_percent: Mapped[Decimal] = mapped_column(ExactDecimal(6, 2))
