"""More than one savings account per member (issue 14, part 1; docs/savings/products.md).

* ``accounts.savings_product_id``: the savings product a member's further account (a
  holiday or school-fees account, purpose ``product_savings``) is held under; NULL for
  every other account (a member's three first accounts belong to the default product of
  their purpose). One account per member and product: ``uq_accounts_member_product``.
* ``mpesa_b2c_payouts.account_id``: the savings account an M-Pesa withdrawal is paid
  from when it is a further one; NULL: the member's main savings (every earlier payout).

Revision ID: 0032
Revises: 0034
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0034"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("savings_product_id", BigId, nullable=True))
        batch_op.create_foreign_key(
            "fk_accounts_savings_product_id_savings_products",
            "savings_products",
            ["savings_product_id"],
            ["id"],
        )
        batch_op.create_unique_constraint(
            "uq_accounts_member_product", ["member_id", "savings_product_id"]
        )

    with op.batch_alter_table("mpesa_b2c_payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", BigId, nullable=True))
        batch_op.create_foreign_key(
            "fk_mpesa_b2c_payouts_account_id_accounts", "accounts", ["account_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("mpesa_b2c_payouts", schema=None) as batch_op:
        batch_op.drop_constraint("fk_mpesa_b2c_payouts_account_id_accounts", type_="foreignkey")
        batch_op.drop_column("account_id")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_accounts_member_product", type_="unique")
        batch_op.drop_constraint(
            "fk_accounts_savings_product_id_savings_products", type_="foreignkey"
        )
        batch_op.drop_column("savings_product_id")
