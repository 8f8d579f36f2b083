"""Close of day's notices and credit-bureau marks (issue 13, parts 6 and 9; migration 0022;
docs/loans/close-of-day.md). Written by ``core.loans.notices`` (set-based SQL), read by the
staff API's loan detail."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class LoanNotice(Base):
    """A notice sent once per loan, kind, instalment (0: the loan) and recipient."""

    __tablename__ = "loan_notices"
    __table_args__ = (
        UniqueConstraint(
            "loan_id", "kind", "instalment_number", "member_id", name="uq_loan_notices_once"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))  # borrower or guarantor
    kind: Mapped[str] = mapped_column(String(16))  # core.loans.vocabulary.NoticeKind
    instalment_number: Mapped[int] = mapped_column(Integer)
    business_date: Mapped[date] = mapped_column(Date)  # the run's date
    outbox_key: Mapped[str] = mapped_column(String(80))  # the SMS's business key


class LoanBureauMark(Base):
    """Whether a loan would be listed with a credit bureau as negative information."""

    __tablename__ = "loan_bureau_marks"

    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), primary_key=True)
    notice_on: Mapped[date | None] = mapped_column(Date, default=None)  # pre-listing notice
    listable: Mapped[bool] = mapped_column(Boolean, default=False)
    listable_since: Mapped[date | None] = mapped_column(Date, default=None)
    arrears_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    marked_on: Mapped[date] = mapped_column(Date)  # the run's date these figures are as of
