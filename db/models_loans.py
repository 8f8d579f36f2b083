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
        CheckConstraint(
            "allocation_order IN ('penalties_fees_interest_principal', 'oldest_instalment_first', "
            "'interest_principal_penalties_fees')",
            name="allocation_order",
        ),
        CheckConstraint(
            "early_payoff_interest IN ('waive', 'charge_current_period', 'charge_all')",
            name="early_payoff_interest",
        ),
        CheckConstraint(
            "top_up_min_instalments_paid IS NULL OR top_up_min_instalments_paid >= 0",
            name="top_up",
        ),
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
    # How a repayment is split, and what an early payoff pays of interest not yet due
    # (migration 0017; core.loans.vocabulary AllocationOrder, EarlyPayoffInterest).
    allocation_order: Mapped[str] = mapped_column(
        String(40), default="penalties_fees_interest_principal"
    )
    early_payoff_interest: Mapped[str] = mapped_column(String(24), default="waive")
    channels: Mapped[str] = mapped_column(String(24))  # space-separated, sorted
    active: Mapped[bool] = mapped_column(Boolean)
    # Top-ups (migration 0019): None, the product offers none; N, a loan may be topped up
    # once N of its instalments are paid in full (docs/loans/book.md, "Top-ups").
    top_up_min_instalments_paid: Mapped[int | None] = mapped_column(Integer, default=None)
    # Credit scoring (migration 0030): the appraisal refuses a score below this (None: the
    # product asks for no score; docs/loans/scoring.md).
    min_score: Mapped[int | None] = mapped_column(Integer, default=None)
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
        CheckConstraint("kind IN ('processing', 'insurance', 'top_up_commission')", name="kind"),
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


# =========================================================================================
# The loan book (issue 12, parts 3, 5, 6, 7; migration 0015): applications, loans, their
# fixed schedules and guarantees. Statuses are core.loans.vocabulary's StrEnums. Written by
# core/loans/book.py, guarantees.py and disbursement.py.
# =========================================================================================

from datetime import date  # noqa: E402  (kept with the block it serves)

from sqlalchemy import Date, Index  # noqa: E402


class LoanApplication(Base):
    """A member's application under one product version, from apply to disbursed."""

    __tablename__ = "loan_applications"
    __table_args__ = (
        CheckConstraint(
            "status IN ('submitted', 'awaiting_guarantors', 'pending_approval', 'approved', "
            "'rejected', 'withdrawn', 'disbursed')",
            name="status",
        ),
        CheckConstraint("channel IN ('ussd', 'sms', 'staff')", name="channel"),
        CheckConstraint("disburse_to IN ('savings', 'mpesa', 'bank')", name="disburse_to"),
        CheckConstraint("amount_cents > 0 AND term >= 1", name="amount_term"),
        CheckConstraint(
            "required_cover_cents >= 0 AND own_cover_cents >= 0 AND guarantor_cover_cents >= 0",
            name="cover",
        ),
        CheckConstraint("top_up_payoff_cents >= 0 AND top_up_commission_cents >= 0", name="top_up"),
        UniqueConstraint("member_id", "idempotency_key", name="uq_loan_applications_key"),
        Index("ix_loan_applications_member_status", "member_id", "status"),
        Index("ix_loan_applications_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)  # L + 7: read on a phone
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    product_version_id: Mapped[int] = mapped_column(ForeignKey("loan_product_versions.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    term: Mapped[int] = mapped_column(Integer)  # instalments
    status: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(8))
    # Where the loan goes (migration 0018): the member's savings, or savings then M-Pesa.
    disburse_to: Mapped[str] = mapped_column(String(8), default="savings")
    idempotency_key: Mapped[str] = mapped_column(String(80))
    # The appraisal when applied (and, for staff, the reasons an approval found later).
    limit_cents: Mapped[int] = mapped_column(BigInteger)
    reasons: Mapped[str] = mapped_column(String(200), default="")  # space-separated Reason codes
    # Security (SASRA reg. 32): the product's cover of the principal, the borrower's own free
    # deposits counted towards it when applying, and what guarantors must pledge.
    required_cover_cents: Mapped[int] = mapped_column(BigInteger)
    own_cover_cents: Mapped[int] = mapped_column(BigInteger)
    guarantor_cover_cents: Mapped[int] = mapped_column(BigInteger)
    # The schedule preview shown before the PIN (dated from the application day).
    instalment_cents: Mapped[int] = mapped_column(BigInteger)
    total_repayable_cents: Mapped[int] = mapped_column(BigInteger)
    deducted_fee_cents: Mapped[int] = mapped_column(BigInteger)
    scheduled_fee_cents: Mapped[int] = mapped_column(BigInteger)
    apr: Mapped[Decimal] = mapped_column(ExactDecimal(8, 4))  # a fraction: 0.1268 is 12.68%
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    decision_note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A top-up (migration 0019): the active loan it clears first, and what the member was
    # shown when applying: that loan's payoff and the product's commission on it. No
    # foreign key: ``loans`` already refers to this table, and a cycle between the two
    # would leave them with no creation order; the loan's own column has one.
    top_up_of_loan_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    top_up_payoff_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    top_up_commission_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Loan(Base):
    """A disbursed loan: its own ledger account (what the member owes) and its schedule."""

    __tablename__ = "loans"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'closed', 'written_off')", name="status"),
        CheckConstraint("principal_cents > 0 AND term >= 1", name="principal_term"),
        CheckConstraint("top_up_payoff_cents >= 0 AND top_up_commission_cents >= 0", name="top_up"),
        Index("ix_loans_member_status", "member_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)  # the application's
    application_id: Mapped[int] = mapped_column(ForeignKey("loan_applications.id"), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    product_version_id: Mapped[int] = mapped_column(ForeignKey("loan_product_versions.id"))
    principal_cents: Mapped[int] = mapped_column(BigInteger)
    term: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    disbursement_entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    deducted_fee_cents: Mapped[int] = mapped_column(BigInteger)
    disbursed_on: Mapped[date] = mapped_column(Date)  # the Nairobi business date
    status: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A top-up (migration 0019): the loan it cleared at disbursement (unique: one top-up per
    # loan), the payoff it paid and the commission charged on it, as computed that day.
    top_up_of_loan_id: Mapped[int | None] = mapped_column(
        ForeignKey("loans.id"), unique=True, default=None
    )
    top_up_payoff_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    top_up_commission_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Rescheduled at least once (migration 0024): reported apart, never upgraded by close
    # of day (docs/loans/write-off-and-rescheduling.md).
    restructured: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class LoanInstalment(Base):
    """One row of a loan's schedule, fixed at disbursement; ``paid_*`` grow with repayments."""

    __tablename__ = "loan_instalments"
    __table_args__ = (
        UniqueConstraint("loan_id", "number", name="uq_loan_instalments_number"),
        CheckConstraint(
            "number >= 1 AND principal_cents >= 0 AND interest_cents >= 0 AND fee_cents >= 0",
            name="amounts",
        ),
        CheckConstraint(
            "paid_principal_cents BETWEEN 0 AND principal_cents AND "
            "paid_interest_cents BETWEEN 0 AND interest_cents AND "
            "paid_fee_cents BETWEEN 0 AND fee_cents",
            name="paid",
        ),
        CheckConstraint(
            "waived_interest_cents >= 0 AND "
            "paid_interest_cents + waived_interest_cents <= interest_cents",
            name="waived",
        ),
        Index("ix_loan_instalments_due_on", "due_on"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    number: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)
    principal_cents: Mapped[int] = mapped_column(BigInteger)
    interest_cents: Mapped[int] = mapped_column(BigInteger)
    fee_cents: Mapped[int] = mapped_column(BigInteger)
    paid_principal_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_interest_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_fee_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Interest not charged when the loan was paid off early (migration 0016): the
    # interest of instalments not yet due on the payoff day (docs/loans/repayment.md).
    waived_interest_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Where the interest period starts when not at the previous due date (migration 0024):
    # the first instalment of a rescheduled loan's new schedule starts on its day.
    starts_on: Mapped[date | None] = mapped_column(Date, default=None)

    @property
    def due_cents(self) -> int:
        return self.principal_cents + self.interest_cents + self.fee_cents

    @property
    def paid_cents(self) -> int:
        return self.paid_principal_cents + self.paid_interest_cents + self.paid_fee_cents


class LoanGuarantee(Base):
    """A guarantor's pledge for an application (and then its loan): while accepted, a ledger
    hold on the guarantor's deposits account."""

    __tablename__ = "loan_guarantees"
    __table_args__ = (
        CheckConstraint(
            "status IN ('requested', 'accepted', 'declined', 'withdrawn', 'released', 'called')",
            name="status",
        ),
        CheckConstraint("amount_cents > 0", name="amount"),
        CheckConstraint("status <> 'accepted' OR hold_id IS NOT NULL", name="hold"),
        UniqueConstraint(
            "application_id", "guarantor_id", name="uq_loan_guarantees_application_guarantor"
        ),
        Index("ix_loan_guarantees_guarantor_status", "guarantor_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("loan_applications.id"), index=True)
    loan_id: Mapped[int | None] = mapped_column(ForeignKey("loans.id"), default=None, index=True)
    guarantor_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12))
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), default=None)
    code: Mapped[str] = mapped_column(String(8), unique=True)  # ACCEPT <code> / DECLINE <code>
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


# =========================================================================================
# Repayments (issue 12, part 8; migration 0016): one row per repayment, written by
# core/loans/repayments.py in the repayment's unit of work.
# =========================================================================================


class LoanRepayment(Base):
    """One repayment: how it was split, what went to savings, the loan's balance after.

    ``idempotency_key`` is the ledger entry's (``mpesa:receipt:<receipt>`` for M-Pesa):
    the same key again returns this row and writes nothing. A repayment to a closed loan
    (all of it to savings) has no repayment entry, only ``savings_entry_id``."""

    __tablename__ = "loan_repayments"
    __table_args__ = (
        CheckConstraint(
            "source IN ('mpesa', 'savings', 'cash', 'top_up', 'recovery', 'checkoff')",
            name="source",
        ),
        CheckConstraint(
            "amount_cents > 0 AND penalty_cents >= 0 AND fee_cents >= 0 AND "
            "interest_cents >= 0 AND principal_cents >= 0 AND waived_interest_cents >= 0 AND "
            "to_savings_cents >= 0 AND balance_after_cents >= 0 AND recovery_cents >= 0",
            name="amounts",
        ),
        CheckConstraint(
            "penalty_cents + fee_cents + interest_cents + principal_cents + recovery_cents "
            "+ to_savings_cents = amount_cents",
            name="parts",
        ),
        Index("ix_loan_repayments_loan_id", "loan_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    business_key: Mapped[str] = mapped_column(String(120))
    source: Mapped[str] = mapped_column(String(8))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    penalty_cents: Mapped[int] = mapped_column(BigInteger)
    fee_cents: Mapped[int] = mapped_column(BigInteger)
    interest_cents: Mapped[int] = mapped_column(BigInteger)
    principal_cents: Mapped[int] = mapped_column(BigInteger)
    waived_interest_cents: Mapped[int] = mapped_column(BigInteger)
    to_savings_cents: Mapped[int] = mapped_column(BigInteger)
    # Paid on a written-off loan, to recoveries income (migration 0024).
    recovery_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    balance_after_cents: Mapped[int] = mapped_column(BigInteger)  # the payoff amount after
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    savings_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    receipt: Mapped[str | None] = mapped_column(String(20), default=None)
    closed_loan: Mapped[bool] = mapped_column(Boolean)  # this repayment closed the loan
    value_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# ---------------------------------------------------------------------------------------
# Write-off and rescheduling (issue 13, part 8; migration 0024;
# docs/loans/write-off-and-rescheduling.md).


class LoanWriteOff(Base):
    """A loan written off against its provision: what the entry took off the books and
    what has been recovered since (recoveries income)."""

    __tablename__ = "loan_write_offs"
    __table_args__ = (
        CheckConstraint(
            "principal_cents >= 0 AND interest_cents >= 0 AND provision_cents >= 0 "
            "AND recovered_cents >= 0 AND recovered_cents <= principal_cents + interest_cents",
            name="amounts",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), unique=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id"))
    principal_cents: Mapped[int] = mapped_column(BigInteger)  # the loan account's balance
    interest_cents: Mapped[int] = mapped_column(BigInteger)  # accrued, not paid
    provision_cents: Mapped[int] = mapped_column(BigInteger)  # the loan's provision used
    category: Mapped[str] = mapped_column(String(12))
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    written_off_on: Mapped[date] = mapped_column(Date)
    recovered_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @property
    def recoverable_cents(self) -> int:
        """What is still to recover of what was written off."""
        return self.principal_cents + self.interest_cents - self.recovered_cents


class LoanReschedule(Base):
    """One rescheduling: the new schedule's principal, term and instalment, and what was
    capitalised from the superseded instalments."""

    __tablename__ = "loan_reschedules"
    __table_args__ = (
        CheckConstraint(
            "principal_cents > 0 AND term >= 1 AND instalment_cents > 0 AND "
            "capitalised_interest_cents >= 0 AND capitalised_fee_cents >= 0 AND "
            "carried_fee_cents >= 0",
            name="amounts",
        ),
        Index("ix_loan_reschedules_loan_id", "loan_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    approval_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id"), unique=True)
    rescheduled_on: Mapped[date] = mapped_column(Date)
    principal_cents: Mapped[int] = mapped_column(BigInteger)
    capitalised_interest_cents: Mapped[int] = mapped_column(BigInteger)
    capitalised_fee_cents: Mapped[int] = mapped_column(BigInteger)
    carried_fee_cents: Mapped[int] = mapped_column(BigInteger)  # fees not yet due, re-spread
    term: Mapped[int] = mapped_column(Integer)
    asked_term: Mapped[int | None] = mapped_column(Integer, default=None)
    asked_instalment_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    instalment_cents: Mapped[int] = mapped_column(BigInteger)  # the new first instalment
    first_due_on: Mapped[date] = mapped_column(Date)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoanSupersededInstalment(Base):
    """An instalment as it stood when a rescheduling superseded it (history)."""

    __tablename__ = "loan_superseded_instalments"
    __table_args__ = (
        UniqueConstraint("reschedule_id", "number", name="uq_loan_superseded_instalments"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reschedule_id: Mapped[int] = mapped_column(ForeignKey("loan_reschedules.id"))
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    number: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)
    principal_cents: Mapped[int] = mapped_column(BigInteger)
    interest_cents: Mapped[int] = mapped_column(BigInteger)
    fee_cents: Mapped[int] = mapped_column(BigInteger)
    paid_principal_cents: Mapped[int] = mapped_column(BigInteger)
    paid_interest_cents: Mapped[int] = mapped_column(BigInteger)
    paid_fee_cents: Mapped[int] = mapped_column(BigInteger)
    waived_interest_cents: Mapped[int] = mapped_column(BigInteger)
