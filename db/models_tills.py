"""Teller till days (issue 14, part 3; migration 0027; docs/savings/tills-and-dormancy.md),
written by ``core.savings.tills``.

``till_days``: one row per teller per day at the counter: the opening float the teller
took, and once counted the cash in and out the ledger shows for the till (its entries
between opening and the count), what it should hold (``expected_cents``), what the teller
counted and the difference, posted to cash over and short (account 5800) with the
teller's explanation, on a supervisor's approval when it is not zero. A teller has at
most one till day that is not closed.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class TillDay(Base):
    """A teller's till from the opening float to the count and its approval."""

    __tablename__ = "till_days"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'counted', 'closed')", name="status"),
        CheckConstraint("opening_float_cents >= 0", name="float_not_negative"),
        CheckConstraint("counted_cents IS NULL OR counted_cents >= 0", name="counted_not_negative"),
        Index(
            "uq_till_days_one_open_per_staff",
            "staff_id",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
            sqlite_where=text("status <> 'closed'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    branch: Mapped[str | None] = mapped_column(String(24), default=None)
    business_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="open")
    opening_float_cents: Mapped[int] = mapped_column(BigInteger)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The last posting id at opening: the sums scan the bank's postings above it only
    # (ix_postings_account_id_id), not the account's whole history.
    posting_floor_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set by the count (and again by a recount after a rejected request).
    counted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cash_in_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cash_out_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    expected_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    counted_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    difference_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    explanation: Mapped[str] = mapped_column(String(200), default="")
    approval_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    entry_reference: Mapped[str | None] = mapped_column(String(40), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
