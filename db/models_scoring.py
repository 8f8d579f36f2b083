"""Credit scoring (issue 15, part 1; migration 0030; docs/loans/scoring.md).

Scorecards are versioned data: a version and its bins are written once and never edited
(a fit writes a new version). Every score computed is kept with its inputs and version.
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
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class Scorecard(Base):
    """One version of the points table and its scaling."""

    __tablename__ = "scorecards"
    __table_args__ = (
        CheckConstraint("source IN ('expert', 'fitted')", name="source"),
        CheckConstraint("pdo > 0 AND base_odds > 0", name="scaling"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    source: Mapped[str] = mapped_column(String(8))  # expert | fitted
    note: Mapped[str] = mapped_column(String(200))
    pdo: Mapped[Decimal] = mapped_column(Numeric(12, 4))  # points to double the odds
    base_score: Mapped[int] = mapped_column(Integer)  # the score at base_odds
    base_odds: Mapped[Decimal] = mapped_column(Numeric(12, 4))  # good : bad
    factor: Mapped[Decimal] = mapped_column(Numeric(18, 8))  # pdo / ln 2
    offset: Mapped[Decimal] = mapped_column(Numeric(18, 8))  # base_score - factor ln(base_odds)
    metrics: Mapped[str] = mapped_column(Text)  # JSON: held-out gini and ks, counts
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ScorecardBin(Base):
    """A feature's bin: ``lower`` <= value < ``upper`` (None: open) scores ``points``."""

    __tablename__ = "scorecard_bins"
    __table_args__ = (
        UniqueConstraint("scorecard_version", "feature", "position", name="uq_scorecard_bins_pos"),
        CheckConstraint("lower IS NULL OR upper IS NULL OR lower < upper", name="bounds"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scorecard_version: Mapped[int] = mapped_column(ForeignKey("scorecards.version"))
    feature: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    lower: Mapped[int | None] = mapped_column(BigInteger, default=None)
    upper: Mapped[int | None] = mapped_column(BigInteger, default=None)
    points: Mapped[int] = mapped_column(Integer)


class CreditScore(Base):
    """A score as computed: its inputs (JSON), the table version, the score, the reasons."""

    __tablename__ = "credit_scores"
    __table_args__ = (Index("ix_credit_scores_member_id_id", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    scorecard_version: Mapped[int] = mapped_column(
        ForeignKey("scorecards.version", name="fk_credit_scores_version")
    )
    business_date: Mapped[date] = mapped_column(Date)
    inputs: Mapped[str] = mapped_column(Text)  # JSON: feature -> integer
    score: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[str] = mapped_column(String(200))  # up to three features, spaced
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Migration 0034: the bureau's part in this score. ``bureau_status``: "" (the product
    # asked no bureau, or none configured), ``answered``, ``not_found``, ``unavailable``
    # (scored on the SACCO's own record), ``no_consent``, ``not_asked`` (a preview with no
    # fresh answer kept).
    bureau_status: Mapped[str] = mapped_column(String(16), default="")
    bureau_report_id: Mapped[int | None] = mapped_column(
        ForeignKey("bureau_reports.id", name="fk_credit_scores_bureau_report"), default=None
    )


class BureauConsent(Base):
    """A member's consent to a credit-bureau enquiry (migration 0034): given on USSD with
    the PIN, or by staff with the signed form's reference; valid until ``expires_at`` unless
    revoked."""

    __tablename__ = "bureau_consents"
    __table_args__ = (
        CheckConstraint("channel IN ('ussd', 'staff')", name="channel"),
        CheckConstraint("channel <> 'staff' OR form_reference <> ''", name="staff_form"),
        Index("ix_bureau_consents_member_id_id", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(8))
    form_reference: Mapped[str] = mapped_column(String(64), default="")
    given_by_staff_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    given_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_by: Mapped[str] = mapped_column(String(80), default="")


class BureauReport(Base):
    """One bureau enquiry and its answer, kept as evidence and reused until ``expires_at``
    (the cache). ``status``: ``answered``, ``not_found`` or ``unavailable`` (never reused)."""

    __tablename__ = "bureau_reports"
    __table_args__ = (
        CheckConstraint("status IN ('answered', 'not_found', 'unavailable')", name="status"),
        Index("ix_bureau_reports_member_id_id", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    consent_id: Mapped[int] = mapped_column(ForeignKey("bureau_consents.id"))
    bureau: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(40), unique=True)  # ours, in the call
    reason: Mapped[str] = mapped_column(String(16))
    loan_amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12))
    delinquency: Mapped[str] = mapped_column(String(12), default="")
    bureau_score: Mapped[int | None] = mapped_column(Integer, default=None)
    accounts: Mapped[int] = mapped_column(Integer, default=0)
    worst_days_past_due: Mapped[int] = mapped_column(Integer, default=0)
    listings: Mapped[int] = mapped_column(Integer, default=0)
    bureau_ref: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(String(200), default="")
    raw_answer: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(80))  # "staff:7", "member:12", "system"
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
