"""Fixed deposits (issue 14, part 1; docs/savings/fixed-deposits.md).

* ``savings_product_versions``: a fixed-deposit product's term in months
  (``fd_term_months``), when interest is paid (``fd_interest_at``: maturity or
  monthly), what breaking it early costs (``fd_penalty``: forfeit_interest or rate, and
  ``fd_penalty_rate_percent`` of the principal); NULL for every other kind.
* ``fixed_deposits``: one term of a member's fixed deposit, its terms locked at opening
  (principal, rate, term, interest mode, penalty, rollover instruction), the dates, what
  interest was paid and through when; a rollover starts a new row on the same ledger
  account (``rolled_from_id``).

Revision ID: 0044
Revises: 0041
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0044"
down_revision = "0041"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Rate = sa.Numeric(9, 4)


def upgrade() -> None:
    with op.batch_alter_table("savings_product_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fd_term_months", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("fd_interest_at", sa.String(12), nullable=True))
        batch_op.add_column(sa.Column("fd_penalty", sa.String(20), nullable=True))
        batch_op.add_column(sa.Column("fd_penalty_rate_percent", Rate, nullable=True))

    op.create_table(
        "fixed_deposits",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("reference", sa.String(32), nullable=False, unique=True),
        sa.Column("member_id", BigId, sa.ForeignKey("members.id"), nullable=False, index=True),
        sa.Column("product_id", BigId, sa.ForeignKey("savings_products.id"), nullable=False),
        sa.Column("product_version", sa.Integer(), nullable=False),
        sa.Column("account_id", BigId, sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column(
            "rolled_from_id", BigId, sa.ForeignKey("fixed_deposits.id"), nullable=True, unique=True
        ),  # fmt: skip
        sa.Column("principal_cents", sa.BigInteger(), nullable=False),
        sa.Column("rate_percent", Rate, nullable=False),
        sa.Column("term_months", sa.Integer(), nullable=False),
        sa.Column("interest_at", sa.String(12), nullable=False),
        sa.Column("penalty", sa.String(20), nullable=False),
        sa.Column("penalty_rate_percent", Rate, nullable=False),
        sa.Column("rollover", sa.String(24), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("maturity_date", sa.Date(), nullable=False, index=True),
        sa.Column("interest_paid_cents", sa.BigInteger(), nullable=False),
        sa.Column("interest_paid_through", sa.Date(), nullable=False),
        sa.Column("tax_cents", sa.BigInteger(), nullable=False),
        sa.Column("penalty_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("opened_by", BigId, sa.ForeignKey("staff_users.id"), nullable=True),
        sa.Column("closed_by", BigId, sa.ForeignKey("staff_users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("fixed_deposits")
    with op.batch_alter_table("savings_product_versions", schema=None) as batch_op:
        batch_op.drop_column("fd_penalty_rate_percent")
        batch_op.drop_column("fd_penalty")
        batch_op.drop_column("fd_interest_at")
        batch_op.drop_column("fd_term_months")
