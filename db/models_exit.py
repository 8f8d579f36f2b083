"""Member exit (issue 14, part 3; migration 0028; docs/members/exit.md), written by
``core.members.exit``.

``member_exits``: one row per member who gave notice to leave (an exit is final, so one
per member), from the notice to the exit run that offsets loans, refunds the rest and
closes the accounts.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class MemberExit(Base):
    """A member's notice to leave and, once run, what the exit paid."""

    __tablename__ = "member_exits"
    __table_args__ = (
        CheckConstraint(
            "status IN ('notice', 'blocked', 'awaiting_approval', 'done')", name="status"
        ),
        CheckConstraint("channel IN ('staff', 'ussd')", name="channel"),
        CheckConstraint(
            "notice_days >= 0 AND loans_offset_cents >= 0 AND refund_cents >= 0 "
            "AND shares_cents >= 0",
            name="amounts",
        ),
        CheckConstraint("refund_method IN ('branch', 'mpesa')", name="refund_method"),
        Index("ix_member_exits_status_due_on", "status", "due_on"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(8))  # staff or ussd
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    notice_days: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)  # the first day the exit may run
    status: Mapped[str] = mapped_column(String(20))
    blocked_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    loans_offset_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_cents: Mapped[int] = mapped_column(BigInteger, default=0)  # all paid out
    shares_cents: Mapped[int] = mapped_column(BigInteger, default=0)  # of it, share capital
    refund_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    # How the refund is paid (migration 0033): at the branch (cash or bank transfer against
    # the reference) or by M-Pesa B2C to the member's registered phone (the payout below).
    refund_method: Mapped[str] = mapped_column(String(8), default="branch", server_default="branch")
    refund_payout_id: Mapped[int | None] = mapped_column(
        ForeignKey("mpesa_b2c_payouts.id"), default=None
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class MemberDeath(Base):
    """A member's death as staff recorded it (migration 0033; ``core.members.death``): the
    date, the certificate, the manager's approval, what the loans took and the estate."""

    __tablename__ = "member_deaths"
    __table_args__ = (
        CheckConstraint(
            "status IN ('awaiting_approval', 'rejected', 'settled', 'blocked')", name="status"
        ),
        CheckConstraint("loans_offset_cents >= 0 AND estate_cents >= 0", name="amounts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    died_on: Mapped[date] = mapped_column(Date)
    certificate_ref: Mapped[str] = mapped_column(String(40))  # the death certificate's number
    document_ref: Mapped[str | None] = mapped_column(String(200), default=None)  # its scan
    status: Mapped[str] = mapped_column(String(20))
    previous_status: Mapped[str] = mapped_column(String(16))  # the member's, before the death
    blocked_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    loans_offset_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    estate_cents: Mapped[int] = mapped_column(BigInteger, default=0)  # shared out
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class EstatePayable(Base):
    """One payee's part of a deceased member's estate, in a payable account of its own
    (a liability) until paid: a beneficiary's share, or the whole estate held for the
    legal representative when there is no nomination."""

    __tablename__ = "estate_payables"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'paying', 'paid')", name="status"),
        CheckConstraint("payee IN ('beneficiary', 'legal_representative')", name="payee"),
        CheckConstraint("method IS NULL OR method IN ('cash', 'bank', 'mpesa')", name="method"),
        CheckConstraint("amount_cents >= 0", name="amount"),
        Index("ix_estate_payables_death_id", "death_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    death_id: Mapped[int] = mapped_column(ForeignKey("member_deaths.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    beneficiary_id: Mapped[int | None] = mapped_column(
        ForeignKey("member_beneficiaries.id"), default=None
    )
    payee: Mapped[str] = mapped_column(String(24))
    share_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2), default=None)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="open")
    method: Mapped[str | None] = mapped_column(String(8), default=None)
    paid_reference: Mapped[str | None] = mapped_column(String(40), default=None)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("mpesa_b2c_payouts.id"), default=None)
    paid_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
