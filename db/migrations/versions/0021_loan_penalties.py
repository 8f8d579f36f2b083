"""Close of day: penalties on arrears, the Reg. 31 cap and a penalty receivable account
(issue 13, part 4; docs/loans/close-of-day.md).

* ``loan_day_states`` gains each loan's penalty figures: the date it is penalised through
  (``penalised_through``; set to ``accrued_through`` for the loans already closed, so no
  date closed before penalties existed is charged one), the exact sum in units of
  1/365,000,000 cent (``penalty_units``, the rounding remainder carried), the cents
  charged, paid and waived; and Reg. 31's: since when the loan is delinquent, the
  principal outstanding then, interest and penalties charged since, and the interest the
  cap stopped.
* The chart gains 1210 penalty receivable (an asset): Dr penalty receivable / Cr penalty
  income each night, settled by the repayment that pays the penalty.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

CENTS = (
    "penalty_accrued_cents",
    "penalty_paid_cents",
    "penalty_waived_cents",
    "delinquent_principal_cents",
    "charged_since_delinquent_cents",
    "interest_capped_cents",
)
ACCOUNT = ("1210", "Penalty receivable", "asset", "D", False)


def upgrade() -> None:
    with op.batch_alter_table("loan_day_states") as batch:
        batch.add_column(sa.Column("penalised_through", sa.Date(), nullable=True))
        batch.add_column(
            sa.Column("penalty_units", sa.Numeric(38, 0), nullable=False, server_default="0")
        )
        for name in CENTS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("delinquent_since", sa.Date(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_loan_day_states_penalty"),
            "penalty_units >= 0 AND penalty_paid_cents >= 0 AND penalty_waived_cents >= 0 "
            "AND penalty_paid_cents + penalty_waived_cents <= penalty_accrued_cents "
            "AND delinquent_principal_cents >= 0 AND charged_since_delinquent_cents >= 0 "
            "AND interest_capped_cents >= 0",
        )
    op.execute("UPDATE loan_day_states SET penalised_through = accrued_through")
    code, name, type_, side, hot = ACCOUNT
    accounts = sa.table(
        "accounts",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("type", sa.String),
        sa.column("normal_side", sa.String),
        sa.column("purpose", sa.String),
        sa.column("no_overdraft", sa.Boolean),
        sa.column("is_hot", sa.Boolean),
        sa.column("balance_cents", sa.BigInteger),
        sa.column("held_cents", sa.BigInteger),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        accounts,
        [
            {
                "code": code, "name": name, "type": type_, "normal_side": side,
                "purpose": "system", "no_overdraft": False, "is_hot": hot,
                "balance_cents": 0, "held_cents": 0, "created_at": datetime.now(UTC),
            }
        ],
    )  # fmt: skip


def downgrade() -> None:
    op.execute(f"DELETE FROM accounts WHERE code = '{ACCOUNT[0]}'")
    with op.batch_alter_table("loan_day_states") as batch:
        batch.drop_constraint(op.f("ck_loan_day_states_penalty"), type_="check")
        for name in ("penalised_through", "penalty_units", *CENTS, "delinquent_since"):
            batch.drop_column(name)
