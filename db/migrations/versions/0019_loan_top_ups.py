"""Loan top-ups (issue 12, part 7): a new loan that clears an active one first.

* ``loan_product_versions.top_up_min_instalments_paid``: whether a product offers top-ups
  and when (``NULL``: never, the default for every product made before; ``N``: once the old
  loan has ``N`` instalments paid in full). Versions stay immutable: adding a column
  updates no row, so the immutability trigger is not involved.
* ``loan_applications.top_up_of_loan_id``, ``top_up_payoff_cents``,
  ``top_up_commission_cents``: the loan an application clears and what the member was shown
  when applying (the payoff and the product's commission on it). No foreign key there:
  ``loans`` refers to ``loan_applications``, and a cycle would leave the two tables with no
  order to create or empty them in; the loan's column below has one.
* ``loans.top_up_of_loan_id`` (unique: a loan is cleared by one top-up at most, whatever
  code runs), ``top_up_payoff_cents``, ``top_up_commission_cents``: what the disbursement
  actually cleared and charged (recomputed that day).
* ``loan_repayments.source`` gains ``top_up``: the old loan's settlement is recorded as a
  repayment whose entry is the top-up's disbursement entry.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SOURCES_BEFORE = "source IN ('mpesa', 'savings', 'cash')"
SOURCES_AFTER = "source IN ('mpesa', 'savings', 'cash', 'top_up')"


def _cents(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    with op.batch_alter_table("loan_product_versions") as batch:
        batch.add_column(sa.Column("top_up_min_instalments_paid", sa.Integer(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_loan_product_versions_top_up"),
            "top_up_min_instalments_paid IS NULL OR top_up_min_instalments_paid >= 0",
        )
    with op.batch_alter_table("loan_applications") as batch:
        # No foreign key: loans refers to loan_applications already (see the model).
        batch.add_column(sa.Column("top_up_of_loan_id", sa.BigInteger(), nullable=True))
        batch.add_column(_cents("top_up_payoff_cents"))
        batch.add_column(_cents("top_up_commission_cents"))
        batch.create_check_constraint(
            op.f("ck_loan_applications_top_up"),
            "top_up_payoff_cents >= 0 AND top_up_commission_cents >= 0",
        )
    with op.batch_alter_table("loans") as batch:
        batch.add_column(sa.Column("top_up_of_loan_id", ID, nullable=True))
        batch.add_column(_cents("top_up_payoff_cents"))
        batch.add_column(_cents("top_up_commission_cents"))
        batch.create_foreign_key(
            op.f("fk_loans_top_up_of_loan_id_loans"), "loans", ["top_up_of_loan_id"], ["id"]
        )
        batch.create_unique_constraint(op.f("uq_loans_top_up_of_loan_id"), ["top_up_of_loan_id"])
        batch.create_check_constraint(
            op.f("ck_loans_top_up"), "top_up_payoff_cents >= 0 AND top_up_commission_cents >= 0"
        )
    with op.batch_alter_table("loan_repayments") as batch:
        batch.drop_constraint(op.f("ck_loan_repayments_source"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_repayments_source"), SOURCES_AFTER)


def downgrade() -> None:
    cleared = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM loan_repayments WHERE source = 'top_up'")
    )
    if cleared:  # a loan settled by a top-up would lose the record of how it was paid
        raise RuntimeError(f"{cleared} loans were cleared by top-ups: not downgrading past 0019")
    with op.batch_alter_table("loan_repayments") as batch:
        batch.drop_constraint(op.f("ck_loan_repayments_source"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_repayments_source"), SOURCES_BEFORE)
    with op.batch_alter_table("loans") as batch:
        batch.drop_constraint(op.f("ck_loans_top_up"), type_="check")
        batch.drop_constraint(op.f("uq_loans_top_up_of_loan_id"), type_="unique")
        batch.drop_constraint(op.f("fk_loans_top_up_of_loan_id_loans"), type_="foreignkey")
        batch.drop_column("top_up_commission_cents")
        batch.drop_column("top_up_payoff_cents")
        batch.drop_column("top_up_of_loan_id")
    with op.batch_alter_table("loan_applications") as batch:
        batch.drop_constraint(op.f("ck_loan_applications_top_up"), type_="check")
        batch.drop_column("top_up_commission_cents")
        batch.drop_column("top_up_payoff_cents")
        batch.drop_column("top_up_of_loan_id")
    with op.batch_alter_table("loan_product_versions") as batch:
        batch.drop_constraint(op.f("ck_loan_product_versions_top_up"), type_="check")
        batch.drop_column("top_up_min_instalments_paid")
