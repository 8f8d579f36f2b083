"""Close of day for the loan book (issue 13, parts 1-5): runs and their steps, each loan's
day figures, its category history and the SASRA band table.

* ``close_day_runs``: one row per business date closed (unique), ``running`` until its
  last step is done; ``close_day_steps`` one row per step finished, with its figures
  (JSON text), so a run that stopped between steps resumes at the next one.
* ``loan_day_states``: one row per loan, what the run knows of it: the interest accrued
  and recognised to date (``accrued_interest_cents``) and the date it is accrued through
  (``accrued_through``); days past due, missed instalments and arrears; its SASRA category,
  exposure and provision and the date they are as of (``classified_on``). Every step works
  only on loans whose date is before the run's, which makes a step idempotent.
* ``loan_category_changes``: a row each time a loan's category changes (Form 4, PAR).
* ``loan_risk_bands``: the classification as versioned data (docs/loans/close-of-day.md
  cites the sources): a loan is in the worst band whose ``min_days`` or ``min_missed`` it
  reaches; version 1 seeds the issue's defaults (SASRA Regulations 2010, regs. 40-44).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-12
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
PERCENT = sa.Numeric(6, 2)

CATEGORIES = "('performing', 'watch', 'substandard', 'doubtful', 'loss')"
# version, effective from, category, rank, min days past due, min missed, provision %
BANDS_V1 = [
    (1, date(2010, 1, 1), "performing", 0, 0, 0, Decimal("1.00")),
    (1, date(2010, 1, 1), "watch", 1, 1, 1, Decimal("5.00")),
    (1, date(2010, 1, 1), "substandard", 2, 31, 2, Decimal("25.00")),
    (1, date(2010, 1, 1), "doubtful", 3, 181, 7, Decimal("50.00")),
    (1, date(2010, 1, 1), "loss", 4, 361, 13, Decimal("100.00")),
]


def upgrade() -> None:
    op.create_table(
        "close_day_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("band_version", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('running', 'done')", name=op.f("ck_close_day_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_close_day_runs")),
        sa.UniqueConstraint("business_date", name=op.f("uq_close_day_runs_business_date")),
    )
    op.create_table(
        "close_day_steps",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("loans", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["close_day_runs.id"], name=op.f("fk_close_day_steps_run_id_close_day_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_close_day_steps")),
        sa.UniqueConstraint("run_id", "step", name="uq_close_day_steps_run_step"),
    )
    op.create_table(
        "loan_day_states",
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("accrued_through", sa.Date(), nullable=True),
        sa.Column("accrued_interest_cents", sa.BigInteger(), nullable=False),
        sa.Column("classified_on", sa.Date(), nullable=True),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("missed_instalments", sa.Integer(), nullable=False),
        sa.Column("arrears_cents", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=12), nullable=True),
        sa.Column("exposure_cents", sa.BigInteger(), nullable=False),
        sa.Column("provision_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "accrued_interest_cents >= 0 AND days_past_due >= 0 AND missed_instalments >= 0 "
            "AND arrears_cents >= 0 AND exposure_cents >= 0 AND provision_cents >= 0",
            name=op.f("ck_loan_day_states_not_negative"),
        ),
        sa.CheckConstraint(
            f"category IS NULL OR category IN {CATEGORIES}",
            name=op.f("ck_loan_day_states_category"),
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_day_states_loan_id_loans")
        ),
        sa.PrimaryKeyConstraint("loan_id", name=op.f("pk_loan_day_states")),
    )
    op.create_table(
        "loan_category_changes",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("category_from", sa.String(length=12), nullable=True),
        sa.Column("category_to", sa.String(length=12), nullable=False),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("missed_instalments", sa.Integer(), nullable=False),
        sa.Column("exposure_cents", sa.BigInteger(), nullable=False),
        sa.Column("band_version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            f"category_to IN {CATEGORIES}", name=op.f("ck_loan_category_changes_category")
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_category_changes_loan_id_loans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_category_changes")),
        sa.UniqueConstraint("loan_id", "business_date", name="uq_loan_category_changes_day"),
    )
    op.create_index(
        "ix_loan_category_changes_date", "loan_category_changes", ["business_date", "loan_id"]
    )
    bands = op.create_table(
        "loan_risk_bands",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("category", sa.String(length=12), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("min_days", sa.Integer(), nullable=False),
        sa.Column("min_missed", sa.Integer(), nullable=False),
        sa.Column("provision_percent", PERCENT, nullable=False),
        sa.CheckConstraint(f"category IN {CATEGORIES}", name=op.f("ck_loan_risk_bands_category")),
        sa.CheckConstraint(
            "rank >= 0 AND min_days >= 0 AND min_missed >= 0 AND "
            "provision_percent BETWEEN 0 AND 100",
            name=op.f("ck_loan_risk_bands_range"),
        ),
        sa.PrimaryKeyConstraint("version", "category", name=op.f("pk_loan_risk_bands")),
        sa.UniqueConstraint("version", "rank", name="uq_loan_risk_bands_rank"),
    )
    op.bulk_insert(
        bands,
        [
            {
                "version": v, "effective_from": eff, "category": cat, "rank": rank,
                "min_days": days, "min_missed": missed, "provision_percent": pct,
            }
            for v, eff, cat, rank, days, missed, pct in BANDS_V1
        ],
    )  # fmt: skip
    # Loans made before close of day existed: their interest paid so far went straight to
    # income, so it counts as recognised already (never accrued a second time).
    op.execute(
        "INSERT INTO loan_day_states (loan_id, accrued_interest_cents, days_past_due, "
        "missed_instalments, arrears_cents, exposure_cents, provision_cents) "
        "SELECT loan_id, SUM(paid_interest_cents), 0, 0, 0, 0, 0 FROM loan_instalments "
        "GROUP BY loan_id"
    )


def downgrade() -> None:
    op.drop_table("loan_risk_bands")
    op.drop_index("ix_loan_category_changes_date", table_name="loan_category_changes")
    op.drop_table("loan_category_changes")
    op.drop_table("loan_day_states")
    op.drop_table("close_day_steps")
    op.drop_table("close_day_runs")
