"""Loan repayments (issue 12, part 8): ``loan_repayments`` and the interest an early payoff
does not charge.

``loan_repayments`` holds one row per repayment (M-Pesa paybill or STK, the member's
savings, teller cash): its idempotency key (the ledger entry's, unique), how it was split
(penalty, fee, interest, principal), the interest waived by an early payoff, what went to
savings beyond what was owed, the loan's payoff balance after it, its entries and the
M-Pesa receipt. ``loan_instalments.waived_interest_cents`` is the interest of instalments
not yet due when the loan was paid off (docs/loans/repayment.md); the instalment's paid
and waived interest never exceed its interest.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{table}.id"], name=op.f(f"fk_loan_repayments_{column}_{table}")
    )


def upgrade() -> None:
    with op.batch_alter_table("loan_instalments") as batch:
        batch.add_column(
            sa.Column("waived_interest_cents", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_check_constraint(
            op.f("ck_loan_instalments_waived"),
            "waived_interest_cents >= 0 AND "
            "paid_interest_cents + waived_interest_cents <= interest_cents",
        )
    op.create_table(
        "loan_repayments",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("business_key", sa.String(length=120), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("penalty_cents", sa.BigInteger(), nullable=False),
        sa.Column("fee_cents", sa.BigInteger(), nullable=False),
        sa.Column("interest_cents", sa.BigInteger(), nullable=False),
        sa.Column("principal_cents", sa.BigInteger(), nullable=False),
        sa.Column("waived_interest_cents", sa.BigInteger(), nullable=False),
        sa.Column("to_savings_cents", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_cents", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", ID, nullable=True),
        sa.Column("savings_entry_id", ID, nullable=True),
        sa.Column("receipt", sa.String(length=20), nullable=True),
        sa.Column("closed_loan", sa.Boolean(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "source IN ('mpesa', 'savings', 'cash')", name=op.f("ck_loan_repayments_source")
        ),
        sa.CheckConstraint(
            "amount_cents > 0 AND penalty_cents >= 0 AND fee_cents >= 0 AND "
            "interest_cents >= 0 AND principal_cents >= 0 AND waived_interest_cents >= 0 AND "
            "to_savings_cents >= 0 AND balance_after_cents >= 0",
            name=op.f("ck_loan_repayments_amounts"),
        ),
        sa.CheckConstraint(
            "penalty_cents + fee_cents + interest_cents + principal_cents + to_savings_cents "
            "= amount_cents",
            name=op.f("ck_loan_repayments_parts"),
        ),
        _fk("loan_id", "loans"),
        _fk("entry_id", "journal_entries"),
        _fk("savings_entry_id", "journal_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_repayments")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_loan_repayments_idempotency_key")),
    )
    op.create_index("ix_loan_repayments_loan_id", "loan_repayments", ["loan_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_loan_repayments_loan_id", table_name="loan_repayments")
    op.drop_table("loan_repayments")
    with op.batch_alter_table("loan_instalments") as batch:
        batch.drop_constraint(op.f("ck_loan_instalments_waived"), type_="check")
        batch.drop_column("waived_interest_cents")
