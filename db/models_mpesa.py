"""M-Pesa tables (migration 0006): raw callbacks, STK requests, C2B payments, B2C payouts,
suspense items, SIM-swap checks and events; the receipts that brought money in (0010). The ledger stays the source of truth for
money; these rows say which outside event produced which journal entry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
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


class MpesaCallback(Base):
    """Every callback body and its headers, stored before anything else happens."""

    __tablename__ = "mpesa_callbacks"
    __table_args__ = (
        CheckConstraint(
            "status IN ('received', 'processed', 'malformed', 'unmatched', 'error')",
            name="status",
        ),
        Index("ix_mpesa_callbacks_kind_ref", "kind", "ref"),
        Index("ix_mpesa_callbacks_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))
    ref: Mapped[str | None] = mapped_column(String(100), default=None)
    headers: Mapped[str] = mapped_column(Text, default="{}")
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(12), default="received")
    detail: Mapped[str | None] = mapped_column(String(300), default=None)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class StkRequest(Base):
    """A deposit by STK push: queued -> sending -> pending -> succeeded | failed (| unknown)."""

    __tablename__ = "mpesa_stk_requests"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'sending', 'pending', 'succeeded', 'failed', 'unknown')",
            name="status",
        ),
        CheckConstraint("amount_cents > 0", name="positive"),
        Index("ix_mpesa_stk_requests_status_created_at", "status", "created_at"),
        Index("ix_mpesa_stk_requests_msisdn_created_at", "msisdn", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    target: Mapped[str] = mapped_column(String(12))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    msisdn: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    checkout_request_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    merchant_request_id: Mapped[str | None] = mapped_column(String(100), default=None)
    result_code: Mapped[int | None] = mapped_column(Integer, default=None)
    result_desc: Mapped[str | None] = mapped_column(String(200), default=None)
    receipt: Mapped[str | None] = mapped_column(String(20), unique=True, default=None)
    paid_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class C2BPayment(Base):
    """A paybill payment (C2B confirmation), keyed by M-Pesa's TransID."""

    __tablename__ = "mpesa_c2b_payments"
    __table_args__ = (
        CheckConstraint("status IN ('credited', 'suspense', 'duplicate_of_stk')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    trans_id: Mapped[str] = mapped_column(String(20), unique=True)
    trans_time: Mapped[datetime] = mapped_column(UTCDateTime())
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    bill_ref: Mapped[str] = mapped_column(String(40), default="")
    shortcode: Mapped[str] = mapped_column(String(12), default="")
    msisdn_masked: Mapped[str] = mapped_column(String(80), default="")
    payer_name: Mapped[str] = mapped_column(String(120), default="")
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    target: Mapped[str | None] = mapped_column(String(12), default=None)
    status: Mapped[str] = mapped_column(String(16))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MpesaReceipt(Base):
    """One row per M-Pesa receipt that brought money into the ledger, whatever path
    brought it (STK callback or paybill confirmation): the receipt is the key of the
    credit. The first path to insert it credits (or parks); another path carrying the
    same receipt waits on the insert (the primary key's lock) and then credits nothing.
    ``entry_id`` is the entry that holds the money now."""

    __tablename__ = "mpesa_receipts"
    __table_args__ = (CheckConstraint("source IN ('stk', 'c2b')", name="source"),)

    receipt: Mapped[str] = mapped_column(String(20), primary_key=True)
    source: Mapped[str] = mapped_column(String(8))
    stk_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("mpesa_stk_requests.id"), default=None
    )
    c2b_payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("mpesa_c2b_payments.id"), default=None
    )
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class B2CPayout(Base):
    """Money out by B2C: requested -> sending -> sent -> succeeded | failed; unknown until
    a result, a status query or the statement says; ``review`` when only staff can say
    (maker-checker ``payout.resolve``). ``originator_conversation_id`` is ours, made and
    stored before Daraja is called. Daraja is not known for certain to refuse a repeated
    id, so a payout that may have reached it is never sent again by itself."""

    __tablename__ = "mpesa_b2c_payouts"
    __table_args__ = (
        CheckConstraint(
            "status IN ('requested', 'sending', 'sent', 'succeeded', 'failed', 'unknown', "
            "'review')",
            name="status",
        ),
        CheckConstraint("amount_cents > 0 AND fee_cents >= 0", name="amounts"),
        Index("ix_mpesa_b2c_payouts_status_created_at", "status", "created_at"),
        Index("ix_mpesa_b2c_payouts_member_id_created_at", "member_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    originator_conversation_id: Mapped[str] = mapped_column(String(64), unique=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    purpose: Mapped[str] = mapped_column(String(16), default="withdrawal")
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    msisdn: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    fee_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id"))
    # The savings account paid from when not the member's main savings (a further savings
    # account, migration 0032); NULL: the main savings.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), default=None)
    status: Mapped[str] = mapped_column(String(10), default="requested")
    conversation_id: Mapped[str | None] = mapped_column(String(64), default=None)
    status_query_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    receipt: Mapped[str | None] = mapped_column(String(20), unique=True, default=None)
    result_code: Mapped[int | None] = mapped_column(Integer, default=None)
    result_desc: Mapped[str | None] = mapped_column(String(200), default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    queried_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class SuspenseItem(Base):
    """Money parked in suspense (2200) with what staff need to reassign it.

    ``reason`` ``possible_duplicate``: a paybill payment and an STK push settled without
    a receipt that may be one payment (same member, amount and time); both are linked
    (``stk_request_id``, ``c2b_payment_id``). ``assigned``: moved to a member
    (``assigned_entry_id``); ``duplicate``: it was the same payment, the parking entry is
    reversed (``assigned_entry_id`` is the reversal)."""

    __tablename__ = "mpesa_suspense_items"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'assigned', 'duplicate')", name="status"),
        Index("ix_mpesa_suspense_items_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(12))  # c2b | stk
    source_ref: Mapped[str] = mapped_column(String(100), unique=True)  # TransID / receipt
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    bill_ref: Mapped[str] = mapped_column(String(40), default="")
    payer_name: Mapped[str] = mapped_column(String(120), default="")
    msisdn_masked: Mapped[str] = mapped_column(String(80), default="")
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="open")
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    assigned_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    assigned_target: Mapped[str | None] = mapped_column(String(12), default=None)
    assigned_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), default=None
    )
    assigned_by: Mapped[str | None] = mapped_column(String(80), default=None)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    note: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stk_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("mpesa_stk_requests.id"), default=None, index=True
    )
    c2b_payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("mpesa_c2b_payments.id"), default=None
    )


class SimSwapCheck(Base):
    """The last good SIM-swap verdict per number: a short cache (failed checks are not kept)."""

    __tablename__ = "sim_swap_checks"

    msisdn: Mapped[str] = mapped_column(String(16), primary_key=True)
    swapped: Mapped[bool] = mapped_column(Boolean)
    last_swap_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SimSwapEvent(Base):
    """A withdrawal the SIM-swap guard refused (or let through on a failed check): for staff."""

    __tablename__ = "sim_swap_events"
    __table_args__ = (
        CheckConstraint("outcome IN ('recent_swap', 'check_failed')", name="outcome"),
        CheckConstraint("decision IN ('refused', 'allowed')", name="decision"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    msisdn: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(10))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    last_swap_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    error: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    reviewed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", name="fk_sim_swap_events_reviewed_by_id"), default=None
    )
    review_note: Mapped[str | None] = mapped_column(String(200), default=None)
    # A maker-checker clearance: staff saw the member's ID after this swap.
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cleared_by_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id", name="fk_sim_swap_events_cleared_by_request_id"),
        default=None,
    )
