"""Member exit (issue 14, part 3; migration 0028; docs/members/exit.md), written by
``core.members.exit``.

``member_exits``: one row per member who gave notice to leave (an exit is final, so one
per member), from the notice to the exit run that offsets loans, refunds the rest and
closes the accounts.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String
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
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
