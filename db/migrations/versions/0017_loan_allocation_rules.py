"""Loan products: the repayment allocation order and the early-payoff interest rule
(issue 12, part 8).

``loan_product_versions.allocation_order`` (how a repayment is split over what is owed:
``penalties_fees_interest_principal``, ``oldest_instalment_first`` or
``interest_principal_penalties_fees``) and ``loan_product_versions.early_payoff_interest``
(what a loan paid off early pays of the interest of instalments not yet due: ``waive``,
``charge_current_period`` or ``charge_all``); docs/loans/repayment.md. The server defaults
are the behaviour before this revision, so every existing version, and every loan made
under one, repays exactly as before. Adding a column with a constant default rewrites no
row, so the versions' immutability trigger (0014) is not fired.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ORDERS = ("penalties_fees_interest_principal", "oldest_instalment_first",
          "interest_principal_penalties_fees")  # fmt: skip
RULES = ("waive", "charge_current_period", "charge_all")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("loan_product_versions") as batch:
        batch.add_column(
            sa.Column(
                "allocation_order",
                sa.String(length=40),
                nullable=False,
                server_default=ORDERS[0],
            )
        )
        batch.add_column(
            sa.Column(
                "early_payoff_interest",
                sa.String(length=24),
                nullable=False,
                server_default=RULES[0],
            )
        )
        batch.create_check_constraint(
            op.f("ck_loan_product_versions_allocation_order"), _in("allocation_order", ORDERS)
        )
        batch.create_check_constraint(
            op.f("ck_loan_product_versions_early_payoff_interest"),
            _in("early_payoff_interest", RULES),
        )


def downgrade() -> None:
    with op.batch_alter_table("loan_product_versions") as batch:
        batch.drop_constraint(op.f("ck_loan_product_versions_early_payoff_interest"), "check")
        batch.drop_constraint(op.f("ck_loan_product_versions_allocation_order"), "check")
        batch.drop_column("early_payoff_interest")
        batch.drop_column("allocation_order")
