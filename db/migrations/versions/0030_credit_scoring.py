"""Credit scoring (issue 15, part 1): points scorecards as versioned data, every score kept.

* ``scorecards``: one row per table version (never edited: a fit writes a new version),
  with its scaling (points = offset + factor × ln(odds), factor = PDO / ln 2) and, for a
  fitted table, its held-out Gini and KS.
* ``scorecard_bins``: each feature's bins (lower bound inclusive, upper exclusive, NULL
  open) and their points.
* ``credit_scores``: every score computed, with its inputs (JSON), the table version, the
  score and its top three reasons, so it replays to the same number.
* ``loan_product_versions.min_score``: when set, the appraisal refuses below it.

Seeded: the expert table, version 1 (docs/loans/scoring.md): base score 600 at odds of
50 good to 1 bad, 20 points to double the odds.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-02
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The expert table, version 1: (feature, [(lower, upper, points), ...]), bounds in the
# feature's own unit (months, counts, cents, days); lower inclusive, upper exclusive.
KES = 100  # cents
EXPERT_BINS: list[tuple[str, list[tuple[int | None, int | None, int]]]] = [
    ("membership_months", [(None, 3, 45), (3, 6, 50), (6, 12, 57), (12, 24, 65), (24, None, 75)]),
    ("deposit_months_12", [(None, 3, 40), (3, 6, 48), (6, 9, 57), (9, 12, 66), (12, None, 75)]),
    (
        "deposit_balance_cents",
        [
            (None, 5_000 * KES, 45),
            (5_000 * KES, 20_000 * KES, 52),
            (20_000 * KES, 100_000 * KES, 62),
            (100_000 * KES, None, 72),
        ],
    ),
    ("deposit_trend_cents", [(None, 0, 40), (0, 1_000 * KES, 50), (1_000 * KES, None, 62)]),
    ("max_days_past_due", [(None, 1, 70), (1, 31, 55), (31, 91, 30), (91, None, 5)]),
    ("loans_repaid", [(None, 1, 45), (1, 2, 55), (2, 4, 62), (4, None, 70)]),
    ("guarantees_outstanding", [(None, 1, 58), (1, 3, 55), (3, None, 45)]),
    ("mpesa_inflows_count", [(None, 1, 45), (1, 6, 52), (6, 24, 60), (24, None, 68)]),
    (
        "mpesa_inflows_cents",
        [(None, 10_000 * KES, 48), (10_000 * KES, 100_000 * KES, 56), (100_000 * KES, None, 64)],
    ),
]
BASE_SCORE, BASE_ODDS, PDO = 600, 50, 20
SEEDED_AT = datetime(2026, 12, 2, tzinfo=UTC)


def upgrade() -> None:
    scorecards = op.create_table(
        "scorecards",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Integer(), nullable=False, unique=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("pdo", sa.Numeric(12, 4), nullable=False),
        sa.Column("base_score", sa.Integer(), nullable=False),
        sa.Column("base_odds", sa.Numeric(12, 4), nullable=False),
        sa.Column("factor", sa.Numeric(18, 8), nullable=False),
        sa.Column("offset", sa.Numeric(18, 8), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),  # JSON: gini, ks, counts (fitted)
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('expert', 'fitted')", name="source"),
        sa.CheckConstraint("pdo > 0 AND base_odds > 0", name="scaling"),
    )
    bins = op.create_table(
        "scorecard_bins",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "scorecard_version", sa.Integer(), sa.ForeignKey("scorecards.version"), nullable=False
        ),
        sa.Column("feature", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("lower", sa.BigInteger(), nullable=True),
        sa.Column("upper", sa.BigInteger(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.UniqueConstraint(
            "scorecard_version", "feature", "position", name="uq_scorecard_bins_pos"
        ),
        sa.CheckConstraint("lower IS NULL OR upper IS NULL OR lower < upper", name="bounds"),
    )
    op.create_table(
        "credit_scores",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("member_id", BigId, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("scorecard_version", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),  # JSON: feature -> integer
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.String(200), nullable=False),  # up to three features, spaced
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["scorecard_version"], ["scorecards.version"], name="fk_credit_scores_version"
        ),
    )
    op.create_index("ix_credit_scores_member_id_id", "credit_scores", ["member_id", "id"])
    with op.batch_alter_table("loan_product_versions") as batch:
        batch.add_column(sa.Column("min_score", sa.Integer(), nullable=True))

    factor = PDO / math.log(2)
    offset = BASE_SCORE - factor * math.log(BASE_ODDS)
    op.bulk_insert(
        scorecards,
        [{
            "version": 1, "source": "expert",
            "note": "expert table shipped as the default (docs/loans/scoring.md)",
            "pdo": PDO, "base_score": BASE_SCORE, "base_odds": BASE_ODDS,
            "factor": round(factor, 8), "offset": round(offset, 8), "metrics": "{}",
            "created_at": SEEDED_AT,
        }],
    )  # fmt: skip
    op.bulk_insert(
        bins,
        [
            {"scorecard_version": 1, "feature": feature, "position": i, "lower": lo, "upper": hi,
             "points": points}
            for feature, rows in EXPERT_BINS
            for i, (lo, hi, points) in enumerate(rows)
        ],
    )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("loan_product_versions") as batch:
        batch.drop_column("min_score")
    op.drop_index("ix_credit_scores_member_id_id", table_name="credit_scores")
    op.drop_table("credit_scores")
    op.drop_table("scorecard_bins")
    op.drop_table("scorecards")
