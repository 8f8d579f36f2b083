"""Loan products and their immutable versions (issue 12, part 1).

``loan_products`` (a code and its current version), ``loan_product_versions`` (one row per
approved definition: rate and its period, method, frequency, term and amount ranges,
deposit multiplier, eligibility, penalty, grace, guarantor policy, rounding, auto-approval
ceiling, channels, active) and ``loan_product_fees`` (a version's fees, optionally by term).
Rates, percents and multipliers are NUMERIC on PostgreSQL and text on SQLite (exact on
both: ``db.models_loans.ExactDecimal``). On PostgreSQL versions and fees are immutable
(triggers calling ``ledger_refuse_change``, 0001): a change is a new version.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RATE = sa.Numeric(8, 4).with_variant(sa.String(10), "sqlite")
SHARE = sa.Numeric(6, 2).with_variant(sa.String(8), "sqlite")
TS = sa.DateTime(timezone=True)
IMMUTABLE = ("loan_product_versions", "loan_product_fees")


def upgrade() -> None:
    op.create_table(
        "loan_products",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("current_version >= 1", name=op.f("ck_loan_products_version")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_products")),
        sa.UniqueConstraint("code", name=op.f("uq_loan_products_code")),
    )
    op.create_table(
        "loan_product_versions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("rate_percent", RATE, nullable=False),
        sa.Column("rate_period", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("frequency", sa.String(length=8), nullable=False),
        sa.Column("min_term", sa.Integer(), nullable=False),
        sa.Column("max_term", sa.Integer(), nullable=False),
        sa.Column("min_amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("max_amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("deposit_multiplier", SHARE, nullable=False),
        sa.Column("min_membership_months", sa.Integer(), nullable=False),
        sa.Column("min_deposits_cents", sa.BigInteger(), nullable=False),
        sa.Column("penalty_rate_percent", RATE, nullable=False),
        sa.Column("penalty_rate_period", sa.String(length=8), nullable=False),
        sa.Column("grace_instalments", sa.Integer(), nullable=False),
        sa.Column("penalty_grace_days", sa.Integer(), nullable=False),
        sa.Column("guarantor_policy", sa.String(length=10), nullable=False),
        sa.Column("guarantor_cover_percent", SHARE, nullable=True),
        sa.Column("max_guarantees_per_guarantor", sa.Integer(), nullable=False),
        sa.Column("self_guarantee_allowed", sa.Boolean(), nullable=False),
        sa.Column("pledge_release", sa.String(length=16), nullable=False),
        sa.Column("rounding", sa.String(length=8), nullable=False),
        sa.Column("auto_approve_ceiling_cents", sa.BigInteger(), nullable=False),
        sa.Column("channels", sa.String(length=24), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("approval_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_loan_product_versions_version")),
        sa.CheckConstraint(
            "min_term >= 1 AND max_term >= min_term", name=op.f("ck_loan_product_versions_term")
        ),
        sa.CheckConstraint(
            "min_amount_cents > 0 AND max_amount_cents >= min_amount_cents",
            name=op.f("ck_loan_product_versions_amount"),
        ),
        sa.CheckConstraint(
            "min_membership_months >= 0 AND min_deposits_cents >= 0 AND "
            "grace_instalments >= 0 AND penalty_grace_days >= 0 AND "
            "auto_approve_ceiling_cents >= 0 AND max_guarantees_per_guarantor >= 1",
            name=op.f("ck_loan_product_versions_not_negative"),
        ),
        sa.CheckConstraint(
            "rate_period IN ('annual', 'monthly')", name=op.f("ck_loan_product_versions_rate_period")
        ),
        sa.CheckConstraint(
            "penalty_rate_period IN ('annual', 'monthly')",
            name=op.f("ck_loan_product_versions_penalty_period"),
        ),
        sa.CheckConstraint(
            "method IN ('reducing_equal_instalments', 'reducing_equal_principal', 'flat')",
            name=op.f("ck_loan_product_versions_method"),
        ),
        sa.CheckConstraint(
            "frequency IN ('monthly', 'weekly')", name=op.f("ck_loan_product_versions_frequency")
        ),
        sa.CheckConstraint(
            "rounding IN ('cent', 'shilling')", name=op.f("ck_loan_product_versions_rounding")
        ),
        sa.CheckConstraint(
            "guarantor_policy IN ('none', 'required')",
            name=op.f("ck_loan_product_versions_guarantor_policy"),
        ),
        sa.CheckConstraint(
            "pledge_release IN ('pro_rata', 'at_own_deposits')",
            name=op.f("ck_loan_product_versions_pledge_release"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["loan_products.id"],
            name=op.f("fk_loan_product_versions_product_id_loan_products"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["approval_id"], ["approval_requests.id"],
            name=op.f("fk_loan_product_versions_approval_id_approval_requests"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_product_versions")),
        sa.UniqueConstraint("product_id", "version", name="uq_loan_product_versions_version"),
    )
    with op.batch_alter_table("loan_product_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loan_product_versions_product_id"), ["product_id"], unique=False
        )
    op.create_table(
        "loan_product_fees",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("version_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("percent", RATE, nullable=True),
        sa.Column("fixed_cents", sa.BigInteger(), nullable=True),
        sa.Column("timing", sa.String(length=28), nullable=False),
        sa.Column("min_term", sa.Integer(), nullable=True),
        sa.Column("max_term", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('processing', 'insurance', 'top_up_commission')",
            name=op.f("ck_loan_product_fees_kind"),
        ),
        sa.CheckConstraint(
            "timing IN ('deducted_at_disbursement', 'added_to_schedule')",
            name=op.f("ck_loan_product_fees_timing"),
        ),
        sa.CheckConstraint(
            "fixed_cents IS NULL OR fixed_cents >= 0", name=op.f("ck_loan_product_fees_fixed")
        ),
        sa.CheckConstraint(
            "min_term IS NULL OR max_term IS NULL OR max_term >= min_term",
            name=op.f("ck_loan_product_fees_term"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["loan_product_versions.id"],
            name=op.f("fk_loan_product_fees_version_id_loan_product_versions"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_product_fees")),
    )
    with op.batch_alter_table("loan_product_fees", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loan_product_fees_version_id"), ["version_id"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        for table in IMMUTABLE:
            op.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in IMMUTABLE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
    with op.batch_alter_table("loan_product_fees", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loan_product_fees_version_id"))
    op.drop_table("loan_product_fees")
    with op.batch_alter_table("loan_product_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loan_product_versions_product_id"))
    op.drop_table("loan_product_versions")
    op.drop_table("loan_products")
