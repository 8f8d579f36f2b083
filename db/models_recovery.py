"""Default recovery of defaulted loans (issue 13, part 7; migration 0023;
docs/loans/recovery.md), written by ``core.loans.recovery`` in the approval's unit of work.

``loan_recoveries``: one row per approved recovery (unique per maker-checker request, so an
approval executed again finds it and writes nothing), with what came from the borrower's
own deposits and from guarantors and the loan's payoff after. ``loan_recovery_shares``:
one row per guarantee called, with the pledge, what was held, the guarantor's share and
the entry that took it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class LoanRecovery(Base):
    """One recovery of a defaulted loan, as approved and done."""

    __tablename__ = "loan_recoveries"
    __table_args__ = (
        CheckConstraint(
            "payoff_cents > 0 AND from_deposits_cents >= 0 AND from_guarantors_cents >= 0 "
            "AND balance_after_cents >= 0 AND "
            "from_deposits_cents + from_guarantors_cents + balance_after_cents = payoff_cents",
            name="amounts",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), index=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id"), unique=True)
    payoff_cents: Mapped[int] = mapped_column(BigInteger)  # what would close the loan then
    from_deposits_cents: Mapped[int] = mapped_column(BigInteger)
    from_guarantors_cents: Mapped[int] = mapped_column(BigInteger)
    balance_after_cents: Mapped[int] = mapped_column(BigInteger)  # the payoff after
    closed_loan: Mapped[bool] = mapped_column(Boolean)
    deposits_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoanRecoveryShare(Base):
    """A guarantee called by a recovery: its share of what the borrower could not pay."""

    __tablename__ = "loan_recovery_shares"
    __table_args__ = (
        CheckConstraint(
            "share_cents > 0 AND share_cents <= held_cents AND held_cents <= pledge_cents",
            name="amounts",
        ),
        UniqueConstraint("guarantee_id", name="uq_loan_recovery_shares_guarantee_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    recovery_id: Mapped[int] = mapped_column(ForeignKey("loan_recoveries.id"), index=True)
    guarantee_id: Mapped[int] = mapped_column(ForeignKey("loan_guarantees.id"))
    guarantor_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    pledge_cents: Mapped[int] = mapped_column(BigInteger)  # what the guarantor pledged
    held_cents: Mapped[int] = mapped_column(BigInteger)  # what the pledge still held
    share_cents: Mapped[int] = mapped_column(BigInteger)  # taken from their deposits
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    # The share turned into a loan to the guarantor (their deposits untouched), or None.
    recovery_loan_id: Mapped[int | None] = mapped_column(ForeignKey("loans.id"), default=None)
