"""A member's nominations and phone history (issue 14, part 3; migration 0026;
docs/api/endpoints.md, "Members"), written by ``core.members.nominations`` and
``core.members.phone_change``.

Personal data of people who are not members (names, phones, ID or birth-certificate
numbers) is stored as Fernet tokens from the PII vault, like ``members.national_id``;
nothing here is searched, so there is no blind index. ``member_phone_changes`` keeps the
old and new numbers the same way (the audit log never holds personal data): what the
SIM-swap guard reads is the member and the time.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class MemberNextOfKin(Base):
    """Whom to call about a member (one per member)."""

    __tablename__ = "member_next_of_kin"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    name_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    relationship: Mapped[str] = mapped_column(String(24))
    phone_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MemberBeneficiary(Base):
    """One nominee of a member's nomination; the shares of a member's rows sum to 100."""

    __tablename__ = "member_beneficiaries"
    __table_args__ = (
        CheckConstraint("share_percent > 0 AND share_percent <= 100", name="share"),
        CheckConstraint("id_kind IN ('national_id', 'birth_certificate')", name="id_kind"),
        UniqueConstraint("member_id", "position", name="uq_member_beneficiaries_member_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    name_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    relationship: Mapped[str] = mapped_column(String(24))
    id_kind: Mapped[str] = mapped_column(String(20))
    id_number_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    share_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    # The beneficiary's phone, for an M-Pesa payment of their share on the member's death
    # (migration 0033; optional: without it the share is paid at the branch).
    msisdn_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MemberPhoneChange(Base):
    """An approved change of a member's phone number (maker-checker ``member.phone_change``)."""

    __tablename__ = "member_phone_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id"), unique=True)
    old_msisdn_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    new_msisdn_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
