"""Credit reference bureaus (issue 15, part 2): consents, reports, the bureau's bins.

* ``bureau_consents``: a member's consent to a bureau enquiry (USSD with the PIN, or staff
  with the signed form's reference), its expiry and revocation.
* ``bureau_reports``: every enquiry and its answer (the raw answer kept as evidence),
  reused until ``expires_at`` (the cache's time to live); an unavailable bureau is a row
  too, never reused.
* ``credit_scores.bureau_status`` and ``bureau_report_id``: the bureau's part in a score.
* a new scorecard version (2 on a fresh database: the newest + 1): the newest table's
  scaling and bins as they are, plus the bureau's two features, ``bureau_worst_dpd`` and
  ``bureau_listings``. A version is never edited (version 1 stays as migration 0030 wrote
  it), so every score kept before this migration replays to its number under its own
  version. The bureau's features are optional (``core.scoring.scorecard.OPTIONAL_PREFIX``):
  a score without a bureau answer takes no points and no reason from them, so a member's
  own-record score is the same number under both versions (docs/loans/scoring.md).

Revision ID: 0034
Revises: 0037
Create Date: 2026-12-09
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0037"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# (feature, [(lower, upper, points), ...]); days past due -1: the bureau holds no account.
SEEDED_AT = datetime(2026, 12, 9, tzinfo=UTC)
NOTE = "the expert table with the credit bureau's optional features (docs/loans/scoring.md)"
BUREAU_BINS: list[tuple[str, list[tuple[int | None, int | None, int]]]] = [
    ("bureau_worst_dpd", [(None, 0, 0), (0, 1, 15), (1, 31, 0), (31, 91, -40), (91, None, -80)]),
    ("bureau_listings", [(None, 1, 0), (1, None, -60)]),
]


def upgrade() -> None:
    op.create_table(
        "bureau_consents",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("member_id", BigId, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("form_reference", sa.String(64), nullable=False, server_default=""),
        sa.Column("given_by_staff_id", sa.BigInteger(), nullable=True),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(80), nullable=False, server_default=""),
        sa.CheckConstraint("channel IN ('ussd', 'staff')", name="channel"),
        sa.CheckConstraint("channel <> 'staff' OR form_reference <> ''", name="staff_form"),
    )
    op.create_index("ix_bureau_consents_member_id_id", "bureau_consents", ["member_id", "id"])
    op.create_table(
        "bureau_reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("member_id", BigId, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("consent_id", BigId, sa.ForeignKey("bureau_consents.id"), nullable=False),
        sa.Column("bureau", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(40), nullable=False, unique=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("loan_amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("delinquency", sa.String(12), nullable=False, server_default=""),
        sa.Column("bureau_score", sa.Integer(), nullable=True),
        sa.Column("accounts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("worst_days_past_due", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("listings", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("bureau_ref", sa.String(64), nullable=False, server_default=""),
        sa.Column("error", sa.String(200), nullable=False, server_default=""),
        sa.Column("raw_answer", sa.Text(), nullable=False, server_default=""),
        sa.Column("requested_by", sa.String(80), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('answered', 'not_found', 'unavailable')", name="status"),
    )
    op.create_index("ix_bureau_reports_member_id_id", "bureau_reports", ["member_id", "id"])
    with op.batch_alter_table("credit_scores") as batch:
        batch.add_column(
            sa.Column("bureau_status", sa.String(16), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("bureau_report_id", BigId, nullable=True))
        batch.create_foreign_key(
            "fk_credit_scores_bureau_report", "bureau_reports", ["bureau_report_id"], ["id"]
        )
    cards = sa.table(
        "scorecards",
        sa.column("version", sa.Integer()),
        sa.column("source", sa.String()),
        sa.column("note", sa.String()),
        sa.column("pdo", sa.Numeric()),
        sa.column("base_score", sa.Integer()),
        sa.column("base_odds", sa.Numeric()),
        sa.column("factor", sa.Numeric()),
        sa.column("offset", sa.Numeric()),
        sa.column("metrics", sa.Text()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    bins = sa.table(
        "scorecard_bins",
        sa.column("scorecard_version", sa.Integer()),
        sa.column("feature", sa.String()),
        sa.column("position", sa.Integer()),
        sa.column("lower", sa.BigInteger()),
        sa.column("upper", sa.BigInteger()),
        sa.column("points", sa.Integer()),
    )
    bind = op.get_bind()
    newest = bind.execute(sa.select(sa.func.max(cards.c.version))).scalar()
    if newest is None:  # no table to extend (0030 always seeds version 1)
        return
    version = int(newest) + 1
    # A new version: the newest one's scaling and bins copied, never edited in place.
    bind.execute(
        sa.insert(cards).from_select(
            ["version", "source", "note", "pdo", "base_score", "base_odds", "factor", "offset",
             "metrics", "created_at"],
            sa.select(
                sa.literal(version), sa.literal("expert"), sa.literal(NOTE), cards.c.pdo,
                cards.c.base_score, cards.c.base_odds, cards.c.factor, cards.c.offset,
                sa.literal("{}"), sa.literal(SEEDED_AT, sa.DateTime(timezone=True)),
            ).where(cards.c.version == newest),
        )
    )  # fmt: skip
    bind.execute(
        sa.insert(bins).from_select(
            ["scorecard_version", "feature", "position", "lower", "upper", "points"],
            sa.select(
                sa.literal(version), bins.c.feature, bins.c.position, bins.c.lower,
                bins.c.upper, bins.c.points,
            ).where(bins.c.scorecard_version == newest),
        )
    )  # fmt: skip
    op.bulk_insert(
        bins,
        [
            {"scorecard_version": version, "feature": feature, "position": i, "lower": lo,
             "upper": hi, "points": points}
            for feature, rows in BUREAU_BINS
            for i, (lo, hi, points) in enumerate(rows)
        ],
    )  # fmt: skip


def downgrade() -> None:
    # The versions this migration wrote (those with the bureau's bins); a score kept under
    # one of them stops the downgrade (its foreign key), as it should.
    bind = op.get_bind()
    versions = [
        int(v)
        for v in bind.execute(
            sa.text(
                "SELECT DISTINCT scorecard_version FROM scorecard_bins"
                " WHERE feature IN ('bureau_worst_dpd', 'bureau_listings')"
            )
        ).scalars()
    ]
    for version in versions:
        bind.execute(
            sa.text("DELETE FROM scorecard_bins WHERE scorecard_version = :v"), {"v": version}
        )
        bind.execute(sa.text("DELETE FROM scorecards WHERE version = :v"), {"v": version})
    with op.batch_alter_table("credit_scores") as batch:
        batch.drop_constraint("fk_credit_scores_bureau_report", type_="foreignkey")
        batch.drop_column("bureau_report_id")
        batch.drop_column("bureau_status")
    op.drop_index("ix_bureau_reports_member_id_id", table_name="bureau_reports")
    op.drop_table("bureau_reports")
    op.drop_index("ix_bureau_consents_member_id_id", table_name="bureau_consents")
    op.drop_table("bureau_consents")
