"""Employer check-off (issue 15, part 3; docs/integrations/check-off.md; migration 0038):
employers, the members they pay for, members' standing instructions, the expected
deductions per employer and month, and the remittances received with their lines."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class Employer(Base):
    """A partner employer that deducts from its staff's pay and remits to the SACCO."""

    __tablename__ = "employers"
    __table_args__ = (CheckConstraint("pay_day BETWEEN 1 AND 31", name="pay_day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    bank_account: Mapped[str] = mapped_column(String(40))  # where its remittances come from
    contact_email: Mapped[str] = mapped_column(String(254))
    pay_day: Mapped[int] = mapped_column(Integer, default=31)  # 31: the month's last day
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EmployerMember(Base):
    """A member on an employer's payroll (one employer per member at a time)."""

    __tablename__ = "employer_members"
    __table_args__ = (
        UniqueConstraint("employer_id", "payroll_number", name="uq_employer_members_payroll"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employers.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    payroll_number: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StandingInstruction(Base):
    """What a member's monthly deduction pays: a loan (its instalment due, or a fixed
    amount), deposits, shares or savings (a fixed amount). Paid in the order of
    ``core.checkoff.plans.ORDER``, whatever order they were given in."""

    __tablename__ = "standing_instructions"
    __table_args__ = (
        CheckConstraint("target IN ('loan', 'deposits', 'shares', 'savings')", name="target"),
        CheckConstraint(
            "(amount_cents IS NULL AND target = 'loan') OR amount_cents > 0", name="amount"
        ),
        CheckConstraint("(target = 'loan') = (loan_id IS NOT NULL)", name="loan"),
        Index("ix_standing_instructions_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    target: Mapped[str] = mapped_column(String(10))
    loan_id: Mapped[int | None] = mapped_column(ForeignKey("loans.id"), default=None)
    amount_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)  # None: due
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CheckoffSchedule(Base):
    """The deductions expected from an employer for one month, generated from the loan
    schedules and the standing instructions (regenerated until a remittance posts)."""

    __tablename__ = "checkoff_schedules"
    __table_args__ = (UniqueConstraint("employer_id", "period", name="uq_checkoff_schedules"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employers.id"))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    deduction_on: Mapped[date] = mapped_column(Date)  # the payday
    due_on: Mapped[date] = mapped_column(Date)  # the payday + 7 days
    total_cents: Mapped[int] = mapped_column(BigInteger)
    members: Mapped[int] = mapped_column(Integer)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CheckoffScheduleLine(Base):
    """One member's part of a schedule: one row per instruction, in paying order."""

    __tablename__ = "checkoff_schedule_lines"
    __table_args__ = (Index("ix_checkoff_schedule_lines_schedule_id", "schedule_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("checkoff_schedules.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    payroll_number: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(10))
    loan_id: Mapped[int | None] = mapped_column(ForeignKey("loans.id"), default=None)
    amount_cents: Mapped[int] = mapped_column(BigInteger)


class CheckoffRemittance(Base):
    """An employer's remittance file and the bank transfer that brought its total."""

    __tablename__ = "checkoff_remittances"
    __table_args__ = (
        CheckConstraint("status IN ('pending_approval', 'posted', 'rejected')", name="status"),
        Index("ix_checkoff_remittances_employer_id", "employer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employers.id"))
    period: Mapped[str] = mapped_column(String(7))
    checksum: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the file
    filename: Mapped[str] = mapped_column(String(200))
    bank_reference: Mapped[str] = mapped_column(String(64))
    received_on: Mapped[date] = mapped_column(Date)  # the day the transfer reached the bank
    total_cents: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(Integer)
    matched_cents: Mapped[int] = mapped_column(BigInteger)
    unmatched_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    receipt_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class CheckoffLine(Base):
    """One line of a remittance file: who it named, how much, whom it matched and what
    the money paid (``allocation``: ``[{"target", "loan_id", "cents", "entry"}]``)."""

    __tablename__ = "checkoff_lines"
    __table_args__ = (
        UniqueConstraint("remittance_id", "line_no", name="uq_checkoff_lines_line"),
        CheckConstraint("amount_cents > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    remittance_id: Mapped[int] = mapped_column(ForeignKey("checkoff_remittances.id"))
    line_no: Mapped[int] = mapped_column(Integer)  # in the file, the header being line 1
    payroll_number: Mapped[str | None] = mapped_column(String(32), default=None)
    national_id_index: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str] = mapped_column(String(120), default="")
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    allocation: Mapped[list[dict[str, object]] | None] = mapped_column(JSON, default=None)
