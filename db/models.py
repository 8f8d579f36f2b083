"""SQLAlchemy 2 typed models. Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime, utcnow


class Account(Base):
    """A ledger account. ``balance_cents`` is on the account's normal side.

    ``normal_side`` is ``D`` (assets, expenses) or ``C`` (liabilities, equity,
    income, contra-assets). A posting's amount is signed debit-positive; it
    changes the balance by ``+amount`` on a ``D`` account and ``-amount`` on a
    ``C`` account. ``no_overdraft`` forbids ``balance - held < 0``.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("held_cents >= 0", name="held_not_negative"),
        CheckConstraint(
            "(NOT no_overdraft) OR (balance_cents - held_cents >= 0)", name="no_overdraft"
        ),
        CheckConstraint("normal_side IN ('D', 'C')", name="normal_side"),
        CheckConstraint(
            "type IN ('asset', 'liability', 'equity', 'income', 'expense')", name="type"
        ),
        # One further savings account per member and product (migration 0032).
        UniqueConstraint("member_id", "savings_product_id", name="uq_accounts_member_product"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    type: Mapped[str] = mapped_column(String(16))
    normal_side: Mapped[str] = mapped_column(String(1))
    purpose: Mapped[str] = mapped_column(String(24), default="system")
    no_overdraft: Mapped[bool] = mapped_column(Boolean, default=False)
    is_hot: Mapped[bool] = mapped_column(Boolean, default=False)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id"), index=True, default=None
    )
    balance_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    held_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # A shard of a hot system account (migration 0040; core.ledger.shards): postings to
    # the parent go to one of its shards, and the parent's balance is its own plus theirs.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), index=True, default=None
    )
    # A member's savings with no member-initiated activity for DORMANCY_MONTHS (migration
    # 0027; core.savings.dormancy): withdrawals wait for staff to reactivate it.
    dormant_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A member account closed by the member's exit (migration 0028), at zero.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A member's further savings account (purpose ``product_savings``, migration 0032;
    # core.savings.member_accounts): the product it is held under. NULL: the default
    # product of the account's purpose, or no product (system and loan accounts).
    savings_product_id: Mapped[int | None] = mapped_column(
        ForeignKey("savings_products.id"), default=None
    )
    # No default here or on the entries, holds, outbox rows and webhook endpoints below:
    # core stamps them with the injected clock (``deps.now()``), never the wall clock.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JournalEntry(Base):
    """One balanced movement of money: immutable once written.

    ``created_at`` is when it was written; ``value_date`` (migration 0012) the business
    day the money counts from: the Nairobi date of ``created_at`` unless the use case
    gave another (interest and loan schedules will).
    """

    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    memo: Mapped[str] = mapped_column(String(160), default="")
    reverses_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("journal_entries.id"), unique=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    value_date: Mapped[date] = mapped_column(Date)


class Posting(Base):
    """One leg of an entry: ``amount_cents`` debit-positive, credit-negative, never zero.

    ``balance_after_cents`` is the account's normal-side balance right after
    this posting, so a statement with running balance is one index scan.
    """

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount_cents <> 0", name="nonzero"),
        Index("ix_postings_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    balance_after_cents: Mapped[int] = mapped_column(BigInteger)


class Hold(Base):
    """Money reserved on an account until posted (fully or partly) or released."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="positive"),
        CheckConstraint("status IN ('pending', 'posted', 'released')", name="status"),
        CheckConstraint("posted_cents >= 0 AND posted_cents <= amount_cents", name="posted_within"),
        Index("ix_holds_account_id_status", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    posted_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    reason: Mapped[str] = mapped_column(String(160), default="")
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending_kyc', 'active', 'suspended', 'exited', 'deceased')", name="status"
        ),
        CheckConstraint("language IN ('en', 'sw')", name="language"),
        CheckConstraint("pin_failed_count >= 0", name="pin_failed_count"),
        CheckConstraint("insider IN ('staff', 'board')", name="insider"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_number: Mapped[str | None] = mapped_column(String(12), unique=True, default=None)
    full_name: Mapped[str] = mapped_column(String(120))
    msisdn: Mapped[str] = mapped_column(String(16), unique=True)
    # Fernet token of the national ID (MultiFernet: any configured key decrypts,
    # the first encrypts) and its keyed blind index for exact-match search.
    national_id_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    national_id_index: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending_kyc")
    language: Mapped[str] = mapped_column(String(2), default="en")
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    consent_version: Mapped[str] = mapped_column(String(16))
    pin_hash: Mapped[str | None] = mapped_column(Text, default=None)
    pin_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    pin_failed_count: Mapped[int] = mapped_column(Integer, default=0)
    pin_lockouts: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    pin_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Back office (migration 0005): the branch that serves the member (None = head
    # office), the last KYC rejection reason, and a staff PIN reset's one-time code.
    branch: Mapped[str | None] = mapped_column(String(24), default=None)
    kyc_rejection_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    pin_reset_hash: Mapped[str | None] = mapped_column(Text, default=None)
    pin_reset_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    pin_reset_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Walk-in registration (migration 0026): the date of birth as a PII-vault token, and
    # the registering till's Idempotency-Key (scoped to the staff member), unique.
    date_of_birth_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    registration_key: Mapped[str | None] = mapped_column(String(120), unique=True, default=None)
    # An insider (migration 0041): ``staff`` or ``board``, else None; loans to insiders are
    # reported apart (core.reports.portfolio, docs/reports/portfolio.md).
    insider: Mapped[str | None] = mapped_column(String(8), default=None)
    # The registered e-mail for statements (migration 0043), a PII-vault token; None: none.
    email_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class OutboxMessage(Base):
    """A message the business decided to send, written in the same transaction as
    the change that caused it. ``business_key`` makes the same event queue once."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'email', 'webhook')", name="channel"),
        CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'cancelled')",
            name="status",
        ),
        Index("ix_outbox_messages_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_messages_recipient_id", "recipient", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    business_key: Mapped[str] = mapped_column(String(160), unique=True)
    channel: Mapped[str] = mapped_column(String(8), default="sms")
    category: Mapped[str] = mapped_column(String(16), default="transactional")
    recipient: Mapped[str] = mapped_column(String(320))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2), default="en")
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    cost_cents: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Added by 0004: SMS parts of the body, e-mail subject, webhook endpoint, final
    # delivery status/reason from the gateway's report.
    parts: Mapped[int | None] = mapped_column(Integer, default=None)
    subject: Mapped[str | None] = mapped_column(String(200), default=None)
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoints.id"), default=None
    )
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class OutboxAttempt(Base):
    """One try at delivering an outbox message (any channel): the delivery log.

    Opened when a worker claims the message, closed with the outcome. An attempt
    left ``sending`` was abandoned by a dead worker (the sweeper marks it).
    """

    __tablename__ = "outbox_attempts"
    __table_args__ = (
        CheckConstraint(
            "status IN ('sending', 'accepted', 'retry', 'failed', 'abandoned')", name="status"
        ),
        Index("ix_outbox_attempts_message_id_attempt", "message_id", "attempt"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox_messages.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="sending")
    provider_message_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    detail: Mapped[str | None] = mapped_column(String(200), default=None)
    cost_cents: Mapped[int | None] = mapped_column(Integer, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class SmsDeliveryReport(Base):
    """Every delivery report as received; ``applied_at`` once matched to its message,
    ``unmatched_at`` once the sweeper stopped looking for it (0025)."""

    __tablename__ = "sms_delivery_reports"
    __table_args__ = (Index("ix_sms_delivery_reports_waiting", "applied_at", "unmatched_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_message_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    retry_count: Mapped[int | None] = mapped_column(Integer, default=None)
    network_code: Mapped[str | None] = mapped_column(String(8), default=None)
    phone_number: Mapped[str | None] = mapped_column(String(20), default=None)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_messages.id"), default=None)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    unmatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class SmsInbound(Base):
    """Every inbound SMS once: the gateway's ``id`` is unique (it retries for ~10 min)."""

    __tablename__ = "sms_inbound"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway_id: Mapped[str] = mapped_column(String(64), unique=True)
    sender: Mapped[str] = mapped_column(String(20))
    to: Mapped[str] = mapped_column(String(20), default="")
    text: Mapped[str] = mapped_column(String(1000), default="")
    link_id: Mapped[str | None] = mapped_column(String(64), default=None)
    network_code: Mapped[str | None] = mapped_column(String(8), default=None)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    command: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SmsOptOut(Base):
    """A number that sent STOP: no promotional SMS until START (transactional still go)."""

    __tablename__ = "sms_opt_outs"

    msisdn: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookEndpoint(Base):
    """A partner's URL, the secret its events are signed with, and the events it wants.

    The signing secret is stored encrypted with the PII keys (``secret_ciphertext``).
    ``secret`` is the plaintext of endpoints registered before migration 0008, kept
    only until ``manage.py rotate-pii-keys`` encrypts it and clears it.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str | None] = mapped_column(String(100), default=None)  # legacy plaintext
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    events: Mapped[str] = mapped_column(String(500), default="*")  # comma-separated, or *
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UssdSessionEvent(Base):
    """The gateway's end-of-session notification, one row per USSD session.

    Kept for support and for offering "continue where you left off". The
    gateway's ``input`` and ``lastAppResponse`` are not stored: the first holds
    every PIN typed in the session, the second balances.
    """

    __tablename__ = "ussd_session_events"
    __table_args__ = (
        CheckConstraint("status IN ('Success', 'Incomplete', 'Failed', 'Other')", name="status"),
        Index("ix_ussd_session_events_msisdn_id", "msisdn", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(100), unique=True)
    msisdn: Mapped[str | None] = mapped_column(String(16), default=None)
    service_code: Mapped[str] = mapped_column(String(40), default="")
    network_code: Mapped[str] = mapped_column(String(10), default="")
    status: Mapped[str] = mapped_column(String(12))
    hops_count: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cost: Mapped[str] = mapped_column(String(20), default="")
    error_message: Mapped[str] = mapped_column(String(200), default="")
    gateway_date: Mapped[str] = mapped_column(String(40), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


# ------------------------------------------------------------ staff back office


class StaffUser(Base):
    """A member of staff who uses the back-office API. ``branch`` None = every branch."""

    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint(
            "role IN ('admin', 'manager', 'loan_officer', 'teller', 'auditor')", name="role"
        ),
        CheckConstraint("failed_logins >= 0", name="failed_logins"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    branch: Mapped[str | None] = mapped_column(String(24), default=None)
    password_hash: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # TOTP secret encrypted with the PII keys; the last accepted 30-second step.
    totp_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set when someone else chose the password (an account created by an admin).
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The maker-checker request this account waits for (migration 0011): set, the account
    # stays disabled and cannot be enabled; the approval clears it. An id, not a foreign
    # key: approval_requests already points here (maker_id), and a cycle of foreign keys
    # would leave the tables with no creation order.
    pending_approval_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Where alerts about work waiting for this person go (migration 0013); None: no e-mail.
    email: Mapped[str | None] = mapped_column(String(254), default=None)


class StaffRecoveryCode(Base):
    """One-time MFA recovery code, stored as SHA-256 (the codes are random, high entropy)."""

    __tablename__ = "staff_recovery_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class StaffSession(Base):
    """A login: the family of its refresh tokens, its stage and its limits.

    ``stage``: ``mfa_pending`` (password ok, TOTP still due), ``mfa_enrol``
    (password ok, must enrol TOTP first) or ``active``. Revocation lives here,
    in the database, so it survives a Redis restart.
    """

    __tablename__ = "staff_sessions"
    __table_args__ = (
        CheckConstraint("stage IN ('mfa_pending', 'mfa_enrol', 'active')", name="stage"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    stage: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    address: Mapped[str] = mapped_column(String(64), default="")


class RefreshToken(Base):
    """A refresh token (SHA-256 of it). Used once; a second use revokes its session."""

    __tablename__ = "staff_refresh_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("staff_sessions.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ApiClient(Base):
    """A partner system: an API key (SHA-256 of its secret part) scoped to permissions."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    permissions: Mapped[str] = mapped_column(Text)  # space-separated permission names
    branch: Mapped[str | None] = mapped_column(String(24), default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # As for staff accounts: the key works only once this request is approved (0011).
    pending_approval_id: Mapped[int | None] = mapped_column(BigInteger, default=None)


class AuditEvent(Base):
    """One audited action or sensitive read, chained to the previous row by SHA-256."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_type", "target_id", "id"),
        Index("ix_audit_log_actor", "actor_type", "actor_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    actor_name: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    before: Mapped[str | None] = mapped_column(Text, default=None)  # canonical JSON
    after: Mapped[str | None] = mapped_column(Text, default=None)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """Single row (id 1) locked by every append: it serialises the chain."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class ApprovalRequest(Base):
    """A sensitive action asked by one member of staff (maker), decided by another (checker)."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'rejected', 'failed')", name="status"),
        Index("ix_approval_requests_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON
    amount_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), default=None)
    branch: Mapped[str | None] = mapped_column(String(24), default=None)
    checker_permission: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    maker_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    maker_note: Mapped[str] = mapped_column(String(200), default="")
    checker_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    decision_note: Mapped[str] = mapped_column(String(200), default="")
    result: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class MemberDocument(Base):
    """A KYC document: the file is encrypted with the PII keys under the documents path."""

    __tablename__ = "member_documents"
    __table_args__ = (
        CheckConstraint("kind IN ('id_front', 'id_back', 'photo', 'signed_form')", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_name: Mapped[str] = mapped_column(String(80), unique=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
