"""Credit-bureau data submissions (issue 15, part 2; docs/integrations/crb-submission.md).

* ``crb_submissions``: every submission file produced (monthly or on demand), with the
  month it reports, the close-of-day date its figures are as of, the layout version, its
  counts and balance total, its bytes and their SHA-256.

Revision ID: 0037
Revises: 0031
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0031"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crb_submissions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("layout_version", sa.String(16), nullable=False),
        sa.Column("file_name", sa.String(80), nullable=False),
        sa.Column("consumers", sa.Integer(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("guarantors", sa.Integer(), nullable=False),
        sa.Column("negative_accounts", sa.Integer(), nullable=False),
        sa.Column("withheld", sa.Integer(), nullable=False),
        sa.Column("balance_cents", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), sa.ForeignKey("staff_users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_crb_submissions_month", "crb_submissions", ["month"])


def downgrade() -> None:
    op.drop_index("ix_crb_submissions_month", table_name="crb_submissions")
    op.drop_table("crb_submissions")
