"""Credit-bureau data submissions (issue 15, part 2; migration 0037;
docs/integrations/crb-submission.md): every file produced, kept with its bytes and their
SHA-256 so a run can be shown and downloaded again. Written by
``core.loans.crb.submission``."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class CrbSubmission(Base):
    """One submission file: the month it reports, the close-of-day date its figures are as
    of, the layout version, what it holds and its checksum."""

    __tablename__ = "crb_submissions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM
    as_of: Mapped[date] = mapped_column(Date)  # the close of day the figures come from
    layout_version: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(80))
    consumers: Mapped[int] = mapped_column(Integer)
    accounts: Mapped[int] = mapped_column(Integer)
    guarantors: Mapped[int] = mapped_column(Integer)
    negative_accounts: Mapped[int] = mapped_column(Integer)
    withheld: Mapped[int] = mapped_column(Integer)  # written off but never listable
    balance_cents: Mapped[int] = mapped_column(BigInteger)  # Σ current balances (trailer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    actor_type: Mapped[str] = mapped_column(String(16))  # staff, or system for the command
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
