"""Savings products and interest (issue 14, part 1; docs/savings/products.md).

* ``savings_products`` / ``savings_product_versions``: a product and its immutable
  versions (maker-checker, like loan products). Three default products are seeded, one
  for each account every member already has (``default_for``: savings, deposits,
  shares), at rate 0: nothing changes until a SACCO sets a rate.
* ``withholding_tax_rates``: the dated table of withholding tax rates by kind, seeded
  with 15% on interest on deposits (Income Tax Act (Cap. 470), Third Schedule, Head B).
* ``savings_accrual_runs``: one row per business date accrued (the run's idempotency).
* ``savings_accruals``: each interest-bearing account's accrual state: whole cents
  accrued and not yet posted, the sub-cent remainder carried, the daily balances summed
  for the average daily balance method.
* ``savings_interest_postings``: each posting of interest to a member's account (gross,
  tax, net; unique per account and date).
* ``ix_journal_entries_value_date``: the accrual finds entries dated after the day it
  closes (their postings are taken off today's balance).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
RATE = sa.Numeric(9, 4).with_variant(sa.String(24), "sqlite")

# code, name, kind, the member account it is the default product of
DEFAULT_PRODUCTS = (
    ("SAV", "Ordinary savings", "ordinary_savings", "savings"),
    ("DEP", "Member deposits", "deposits", "deposits"),
    ("SHR", "Share capital", "share_capital", "shares"),
)
WHT_SEED = (
    "interest",
    date(2000, 1, 1),
    "15.0000",
    "Income Tax Act (Cap. 470), Third Schedule, Head B",
)


def _cents(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "savings_products",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(8), nullable=False, unique=True),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("default_for", sa.String(24), nullable=True, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "savings_product_versions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column(
            "product_id", ID, sa.ForeignKey("savings_products.id"), nullable=False, index=True
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("rate_percent", RATE, nullable=False),
        sa.Column("balance_method", sa.String(24), nullable=False),
        sa.Column("day_count", sa.String(16), nullable=False),
        _cents("min_balance_to_earn_cents"),
        sa.Column("posting_frequency", sa.String(12), nullable=False),
        _cents("min_balance_cents"),
        _cents("withdrawal_fee_cents"),
        _cents("daily_withdrawal_limit_cents", nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("approval_id", ID, sa.ForeignKey("approval_requests.id"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("product_id", "version", name="uq_savings_product_versions_version"),
        sa.CheckConstraint(
            "kind IN ('ordinary_savings', 'deposits', 'share_capital', 'fixed_deposit')",
            name="ck_savings_product_versions_kind",
        ),
        sa.CheckConstraint(
            "balance_method IN ('daily_balance', 'average_daily_balance')",
            name="ck_savings_product_versions_balance_method",
        ),
        sa.CheckConstraint(
            "posting_frequency IN ('monthly', 'quarterly', 'annually')",
            name="ck_savings_product_versions_posting_frequency",
        ),
        sa.CheckConstraint(
            "min_balance_to_earn_cents >= 0 AND min_balance_cents >= 0 AND "
            "withdrawal_fee_cents >= 0 AND (daily_withdrawal_limit_cents IS NULL OR "
            "daily_withdrawal_limit_cents > 0)",
            name="ck_savings_product_versions_amounts",
        ),
    )
    op.create_table(
        "withholding_tax_rates",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("rate_percent", RATE, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.UniqueConstraint("kind", "effective_from", name="uq_withholding_tax_rates_kind_from"),
    )
    op.create_table(
        "savings_accrual_runs",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("business_date", sa.Date(), nullable=False, unique=True),
        sa.Column("accounts", sa.Integer(), nullable=False),
        _cents("accrued_cents"),
        sa.Column("posted_accounts", sa.Integer(), nullable=False),
        _cents("posted_gross_cents"),
        _cents("posted_tax_cents"),
        _cents("forfeited_cents"),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "savings_accruals",
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column(
            "product_id", ID, sa.ForeignKey("savings_products.id"), nullable=False, index=True
        ),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("accrued_through", sa.Date(), nullable=False),
        _cents("remainder_units"),
        _cents("accrued_cents"),
        _cents("balance_days_cents"),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "remainder_units >= 0 AND accrued_cents >= 0 AND balance_days_cents >= 0 AND days >= 0",
            name="ck_savings_accruals_amounts",
        ),
    )
    op.create_table(
        "savings_interest_postings",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("product_id", ID, sa.ForeignKey("savings_products.id"), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        _cents("gross_cents"),
        _cents("tax_cents"),
        _cents("net_cents"),
        sa.Column("tax_rate_percent", RATE, nullable=False),
        sa.Column("entry_id", ID, sa.ForeignKey("journal_entries.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint(
            "account_id", "business_date", name="uq_savings_interest_postings_account_date"
        ),
        sa.CheckConstraint(
            "gross_cents > 0 AND tax_cents >= 0 AND net_cents >= 0 AND "
            "tax_cents + net_cents = gross_cents",
            name="ck_savings_interest_postings_parts",
        ),
    )
    op.create_index("ix_journal_entries_value_date", "journal_entries", ["value_date"])
    now = datetime.now(UTC)
    products = sa.table(
        "savings_products",
        sa.column("id", ID),
        sa.column("code", sa.String()),
        sa.column("current_version", sa.Integer()),
        sa.column("default_for", sa.String()),
        sa.column("created_at", TS),
        sa.column("updated_at", TS),
    )
    versions = sa.table(
        "savings_product_versions",
        *(
            sa.column(n)
            for n in (
                "product_id",
                "version",
                "name",
                "kind",
                "rate_percent",
                "balance_method",
                "day_count",
                "min_balance_to_earn_cents",
                "posting_frequency",
                "min_balance_cents",
                "withdrawal_fee_cents",
                "daily_withdrawal_limit_cents",
                "active",
                "created_at",
            )
        ),  # fmt: skip
    )
    conn = op.get_bind()
    for code, name, kind, purpose in DEFAULT_PRODUCTS:
        conn.execute(
            products.insert().values(
                code=code, current_version=1, default_for=purpose, created_at=now, updated_at=now
            )
        )
        product_id = conn.execute(
            sa.select(products.c.id).where(products.c.code == code)
        ).scalar_one()
        conn.execute(
            versions.insert().values(
                product_id=product_id,
                version=1,
                name=name,
                kind=kind,
                rate_percent="0.0000",
                balance_method="daily_balance",
                day_count="actual/365",
                min_balance_to_earn_cents=0,
                posting_frequency="annually" if kind != "ordinary_savings" else "monthly",
                min_balance_cents=0,
                withdrawal_fee_cents=0,
                daily_withdrawal_limit_cents=None,
                active=True,
                created_at=now,
            )  # fmt: skip
        )
    kind, start, rate, source = WHT_SEED
    conn.execute(
        sa.text(
            "INSERT INTO withholding_tax_rates (kind, effective_from, rate_percent, source) "
            "VALUES (:kind, :start, :rate, :source)"
        ).bindparams(kind=kind, start=start, rate=rate, source=source)
    )


def downgrade() -> None:
    op.drop_index("ix_journal_entries_value_date", table_name="journal_entries")
    for table in (
        "savings_interest_postings",
        "savings_accruals",
        "savings_accrual_runs",
        "withholding_tax_rates",
        "savings_product_versions",
        "savings_products",
    ):
        op.drop_table(table)
