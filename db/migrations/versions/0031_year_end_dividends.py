"""Year end: dividends on shares and rebates on deposits (issue 14, part 2;
docs/savings/year-end.md).

* ``year_end_runs``: the board's proposed rates for a financial year (methods, rates, the
  withholding tax rates in force), the totals, the state; ``posted_year`` is unique, so a
  year is posted at most once.
* ``year_end_lines``: each member's dividend and rebate (gross, tax, net) frozen at
  submission and posted as frozen.
* ``member_payout_choices``: each member's standing choice for the net (savings, M-Pesa,
  shares or deposits; no row: savings).
* ``withholding_tax_rates``: 5% on dividends from 2000-01-01 (Income Tax Act (Cap. 470),
  Third Schedule, Head B: dividends paid to residents; docs/savings/year-end.md flags the
  10% reading for the SACCO's tax adviser).

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
RATE = sa.Numeric(9, 4).with_variant(sa.String(24), "sqlite")
DIVIDEND_WHT = (
    "dividend",
    date(2000, 1, 1),
    "5.0000",
    "Income Tax Act (Cap. 470), Third Schedule, Head B: dividends to residents",
)


def _cents(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def upgrade() -> None:
    op.create_table(
        "year_end_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("financial_year", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("dividend_method", sa.String(24), nullable=False),
        sa.Column("dividend_rate_percent", RATE, nullable=False),
        sa.Column("rebate_method", sa.String(24), nullable=False),
        sa.Column("rebate_rate_percent", RATE, nullable=False),
        sa.Column("dividend_tax_percent", RATE, nullable=False),
        sa.Column("rebate_tax_percent", RATE, nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        _cents("dividend_gross_cents"),
        _cents("dividend_tax_cents"),
        _cents("rebate_gross_cents"),
        _cents("rebate_tax_cents"),
        _cents("net_cents"),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("approval_id", ID, nullable=True),
        sa.Column("posted_year", sa.Integer(), nullable=True),
        sa.Column("posted_on", sa.Date(), nullable=True),
        sa.Column("declare_entry_id", ID, nullable=True),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("posted_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'pending_approval', 'posted', 'rejected')",
            name=op.f("ck_year_end_runs_status"),
        ),
        sa.CheckConstraint(
            "dividend_method IN ('closing_balance', 'days_held')",
            name=op.f("ck_year_end_runs_dividend_method"),
        ),
        sa.CheckConstraint(
            "rebate_method IN ('monthly_pro_rata', 'average_monthly_balance')",
            name=op.f("ck_year_end_runs_rebate_method"),
        ),
        _fk("year_end_runs", "approval_id", "approval_requests"),
        _fk("year_end_runs", "declare_entry_id", "journal_entries"),
        _fk("year_end_runs", "created_by", "staff_users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_year_end_runs")),
        sa.UniqueConstraint("posted_year", name=op.f("uq_year_end_runs_posted_year")),
    )
    op.create_index("ix_year_end_runs_financial_year", "year_end_runs", ["financial_year"])
    op.create_table(
        "year_end_lines",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        _cents("shares_basis_cents"),
        _cents("deposits_basis_cents"),
        _cents("dividend_gross_cents"),
        _cents("dividend_tax_cents"),
        _cents("rebate_gross_cents"),
        _cents("rebate_tax_cents"),
        _cents("net_cents"),
        sa.Column("destination", sa.String(12), nullable=False),
        sa.Column("credit_entry_id", ID, nullable=True),
        sa.CheckConstraint(
            "dividend_gross_cents >= dividend_tax_cents AND dividend_tax_cents >= 0 AND "
            "rebate_gross_cents >= rebate_tax_cents AND rebate_tax_cents >= 0 AND "
            "net_cents = dividend_gross_cents - dividend_tax_cents + rebate_gross_cents "
            "- rebate_tax_cents",
            name=op.f("ck_year_end_lines_parts"),
        ),
        _fk("year_end_lines", "run_id", "year_end_runs"),
        _fk("year_end_lines", "member_id", "members"),
        _fk("year_end_lines", "credit_entry_id", "journal_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_year_end_lines")),
        sa.UniqueConstraint("run_id", "member_id", name="uq_year_end_lines_run_member"),
    )
    op.create_index("ix_year_end_lines_run_id", "year_end_lines", ["run_id"])
    op.create_table(
        "member_payout_choices",
        sa.Column("member_id", ID, nullable=False),
        sa.Column("destination", sa.String(12), nullable=False),
        sa.Column("updated_by", ID, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "destination IN ('savings', 'mpesa', 'shares', 'deposits')",
            name=op.f("ck_member_payout_choices_destination"),
        ),
        _fk("member_payout_choices", "member_id", "members"),
        _fk("member_payout_choices", "updated_by", "staff_users"),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_payout_choices")),
    )
    kind, start, rate, source = DIVIDEND_WHT
    op.get_bind().execute(
        sa.text(
            "INSERT INTO withholding_tax_rates (kind, effective_from, rate_percent, source) "
            "VALUES (:kind, :start, :rate, :source)"
        ).bindparams(kind=kind, start=start, rate=rate, source=source)
    )


def downgrade() -> None:
    op.get_bind().execute(sa.text("DELETE FROM withholding_tax_rates WHERE kind = 'dividend'"))
    op.drop_table("member_payout_choices")
    op.drop_index("ix_year_end_lines_run_id", table_name="year_end_lines")
    op.drop_table("year_end_lines")
    op.drop_index("ix_year_end_runs_financial_year", table_name="year_end_runs")
    op.drop_table("year_end_runs")
