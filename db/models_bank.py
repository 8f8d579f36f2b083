"""Bank transfers (issue 15, part 4; migration 0039; docs/integrations/banks.md), written by
``core.payments.bank``.

* ``member_bank_accounts``: where a member's loan may be paid by bank: the bank's code,
  the account number encrypted with the PII keys (its last four digits in clear for
  screens), the account holder's name.
* ``bank_transfers``: money out by bank transfer: requested -> sending -> sent ->
  succeeded | failed; ``unknown`` when the bank's answer never came; ``review`` when only
  staff can say (maker-checker ``bank_transfer.resolve``). ``reference`` is ours (the
  bank's "transaction reference", unique, made and stored before the bank is called);
  ``bank_reference`` is the bank's, unique: a callback settles a transfer once.
* ``bank_callbacks``: every callback stored raw before it is read.
* ``bank_sweeps``: the M-Pesa collections float moved to the bank account.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime, utcnow


class MemberBankAccount(Base):
    __tablename__ = "member_bank_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    bank_code: Mapped[str] = mapped_column(String(8))
    account_number_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    account_last4: Mapped[str] = mapped_column(String(4))
    account_name: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BankTransfer(Base):
    __tablename__ = "bank_transfers"
    __table_args__ = (
        CheckConstraint(
            "status IN ('requested', 'sending', 'sent', 'succeeded', 'failed', 'unknown', "
            "'review')",
            name="status",
        ),
        CheckConstraint("transfer_type IN ('internal', 'rtgs', 'pesalink')", name="type"),
        CheckConstraint("amount_cents > 0", name="amount"),
        Index("ix_bank_transfers_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    purpose: Mapped[str] = mapped_column(String(16), default="loan")
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    transfer_type: Mapped[str] = mapped_column(String(10))
    bank_code: Mapped[str] = mapped_column(String(8))
    account_number_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    account_last4: Mapped[str] = mapped_column(String(4))
    account_name: Mapped[str] = mapped_column(String(80))
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id"))
    status: Mapped[str] = mapped_column(String(10), default="requested")
    bank_reference: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    # The synchronous answer's ``retrievalRefNumber``: not the callback's ``ftReference``.
    retrieval_reference: Mapped[str | None] = mapped_column(String(64), default=None)
    result_code: Mapped[str | None] = mapped_column(String(16), default=None)
    result_desc: Mapped[str | None] = mapped_column(String(200), default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class BankCallback(Base):
    __tablename__ = "bank_callbacks"
    __table_args__ = (
        CheckConstraint(
            "status IN ('received', 'processed', 'malformed', 'unmatched', 'error')",
            name="status",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    headers: Mapped[str] = mapped_column(Text, default="{}")
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10), default="received")
    bank_reference: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    transaction_reference: Mapped[str | None] = mapped_column(String(20), default=None)
    outcome: Mapped[str | None] = mapped_column(String(40), default=None)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class BankSweep(Base):
    __tablename__ = "bank_sweeps"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    approval_id: Mapped[int | None] = mapped_column(Integer, default=None)
    made_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
