"""Loan write-off, recovery after write-off and rescheduling (issue 13, part 8;
docs/loans/write-off-and-rescheduling.md).

* account ``4300`` Recoveries on written-off loans (income, hot): what a member pays on a
  loan after it was written off;
* ``loan_write_offs``: one row per written-off loan (unique), the figures the write-off
  entry took off the books and the running total recovered since;
* ``loan_repayments.recovery_cents``: the part of a payment that went to recoveries (the
  parts still add up to the amount);
* ``loans.restructured``: rescheduled at least once (reported apart; close of day never
  upgrades its category);
* ``loan_reschedules`` and ``loan_superseded_instalments``: each rescheduling and the
  instalments it superseded, as they stood (kept for history);
* ``loan_instalments.starts_on``: where an instalment's interest period starts when it is
  not the previous due date (the first instalment of a new schedule starts on the day of
  the rescheduling).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
RECOVERIES = ("4300", "Recoveries on written-off loans", "income", "C", True)
AMOUNTS_BEFORE = (
    "amount_cents > 0 AND penalty_cents >= 0 AND fee_cents >= 0 AND "
    "interest_cents >= 0 AND principal_cents >= 0 AND waived_interest_cents >= 0 AND "
    "to_savings_cents >= 0 AND balance_after_cents >= 0"
)
PARTS_BEFORE = (
    "penalty_cents + fee_cents + interest_cents + principal_cents + to_savings_cents = amount_cents"
)
AMOUNTS_AFTER = AMOUNTS_BEFORE + " AND recovery_cents >= 0"
PARTS_AFTER = (
    "penalty_cents + fee_cents + interest_cents + principal_cents + recovery_cents "
    "+ to_savings_cents = amount_cents"
)


def _cents(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    code, name, type_, side, hot = RECOVERIES
    op.execute(
        sa.text(
            "INSERT INTO accounts (code, name, type, normal_side, purpose, no_overdraft, "
            "is_hot, balance_cents, held_cents, created_at) VALUES (:code, :name, :type, "
            ":side, 'system', :no, :hot, 0, 0, :now)"
        ).bindparams(
            code=code, name=name, type=type_, side=side, no=False, hot=hot, now=datetime.now(UTC)
        )
    )
    with op.batch_alter_table("loans") as batch:
        batch.add_column(
            sa.Column("restructured", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("loan_instalments") as batch:
        batch.add_column(sa.Column("starts_on", sa.Date(), nullable=True))
    with op.batch_alter_table("loan_repayments") as batch:
        batch.add_column(
            sa.Column("recovery_cents", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.drop_constraint(op.f("ck_loan_repayments_amounts"), type_="check")
        batch.drop_constraint(op.f("ck_loan_repayments_parts"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_repayments_amounts"), AMOUNTS_AFTER)
        batch.create_check_constraint(op.f("ck_loan_repayments_parts"), PARTS_AFTER)
    op.create_table(
        "loan_write_offs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("approval_id", ID, nullable=False),
        _cents("principal_cents"),
        _cents("interest_cents"),
        _cents("provision_cents"),
        sa.Column("category", sa.String(length=12), nullable=False),
        sa.Column("entry_id", ID, nullable=False),
        sa.Column("written_off_on", sa.Date(), nullable=False),
        _cents("recovered_cents"),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "principal_cents >= 0 AND interest_cents >= 0 AND provision_cents >= 0 "
            "AND recovered_cents >= 0 AND recovered_cents <= principal_cents + interest_cents",
            name=op.f("ck_loan_write_offs_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_write_offs_loan_id_loans")
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_loan_write_offs_approval_id_approval_requests"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_loan_write_offs_entry_id_journal_entries"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_write_offs")),
        sa.UniqueConstraint("loan_id", name=op.f("uq_loan_write_offs_loan_id")),
    )
    op.create_table(
        "loan_reschedules",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("approval_id", ID, nullable=False),
        sa.Column("rescheduled_on", sa.Date(), nullable=False),
        _cents("principal_cents"),  # the new schedule's principal
        _cents("capitalised_interest_cents"),
        _cents("capitalised_fee_cents"),
        _cents("carried_fee_cents"),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("asked_term", sa.Integer(), nullable=True),
        sa.Column("asked_instalment_cents", sa.BigInteger(), nullable=True),
        _cents("instalment_cents"),
        sa.Column("first_due_on", sa.Date(), nullable=False),
        sa.Column("entry_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "principal_cents > 0 AND term >= 1 AND instalment_cents > 0 AND "
            "capitalised_interest_cents >= 0 AND capitalised_fee_cents >= 0 AND "
            "carried_fee_cents >= 0",
            name=op.f("ck_loan_reschedules_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_reschedules_loan_id_loans")
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_loan_reschedules_approval_id_approval_requests"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_loan_reschedules_entry_id_journal_entries"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_reschedules")),
        sa.UniqueConstraint("approval_id", name=op.f("uq_loan_reschedules_approval_id")),
    )
    op.create_index("ix_loan_reschedules_loan_id", "loan_reschedules", ["loan_id", "id"])
    op.create_table(
        "loan_superseded_instalments",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("reschedule_id", ID, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        _cents("principal_cents"),
        _cents("interest_cents"),
        _cents("fee_cents"),
        _cents("paid_principal_cents"),
        _cents("paid_interest_cents"),
        _cents("paid_fee_cents"),
        _cents("waived_interest_cents"),
        sa.ForeignKeyConstraint(
            ["reschedule_id"],
            ["loan_reschedules.id"],
            name=op.f("fk_loan_superseded_instalments_reschedule_id_loan_reschedules"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_superseded_instalments_loan_id_loans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_superseded_instalments")),
        sa.UniqueConstraint("reschedule_id", "number", name="uq_loan_superseded_instalments"),
    )


def downgrade() -> None:
    bind = op.get_bind()
    done = bind.scalar(
        sa.text(
            "SELECT (SELECT count(*) FROM loan_write_offs) + (SELECT count(*) FROM "
            "loan_reschedules) + (SELECT count(*) FROM postings p JOIN accounts a ON "
            "a.id = p.account_id WHERE a.code = :code)"
        ).bindparams(code=RECOVERIES[0])
    )
    if done:  # the books would lose how a loan was written off, recovered or rescheduled
        raise RuntimeError("loans were written off or rescheduled: not downgrading past 0024")
    op.drop_table("loan_superseded_instalments")
    op.drop_index("ix_loan_reschedules_loan_id", table_name="loan_reschedules")
    op.drop_table("loan_reschedules")
    op.drop_table("loan_write_offs")
    with op.batch_alter_table("loan_repayments") as batch:
        batch.drop_constraint(op.f("ck_loan_repayments_parts"), type_="check")
        batch.drop_constraint(op.f("ck_loan_repayments_amounts"), type_="check")
        batch.drop_column("recovery_cents")
        batch.create_check_constraint(op.f("ck_loan_repayments_amounts"), AMOUNTS_BEFORE)
        batch.create_check_constraint(op.f("ck_loan_repayments_parts"), PARTS_BEFORE)
    with op.batch_alter_table("loan_instalments") as batch:
        batch.drop_column("starts_on")
    with op.batch_alter_table("loans") as batch:
        batch.drop_column("restructured")
    op.execute(sa.text("DELETE FROM accounts WHERE code = :code").bindparams(code=RECOVERIES[0]))
