"""Where a loan is disbursed (issue 12, part 7): ``loan_applications.disburse_to``.

``savings`` (the loan's entry credits the member's savings; every application before this
revision) or ``mpesa`` (the same entry, then a B2C payout of what reached savings, held
and sent through the withdrawal machinery; docs/loans/book.md). Chosen when applying and
changeable by the loan officer who recommends the application.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loan_applications") as batch:
        batch.add_column(
            sa.Column("disburse_to", sa.String(length=8), nullable=False, server_default="savings")
        )
        batch.create_check_constraint(
            op.f("ck_loan_applications_disburse_to"), "disburse_to IN ('savings', 'mpesa')"
        )


def downgrade() -> None:
    with op.batch_alter_table("loan_applications") as batch:
        batch.drop_constraint(op.f("ck_loan_applications_disburse_to"), type_="check")
        batch.drop_column("disburse_to")
