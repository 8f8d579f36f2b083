"""Default recovery of defaulted loans (issue 13, part 7; docs/loans/recovery.md).

* ``loan_recoveries``: one row per approved recovery, unique per maker-checker request
  (``approval_id``): what came from the borrower's own free deposits, from guarantors,
  and the payoff left after; the deposits step's entry.
* ``loan_recovery_shares``: one row per guarantee called (unique per guarantee): the
  pledge, what it still held, the guarantor's share, the entry that took it and, when the
  share was turned into a recovery loan to the guarantor, that loan.
* ``loan_guarantees.status`` gains ``called``: the pledge was taken to repay the loan.
* ``loan_repayments.source`` gains ``recovery``: each step of a recovery is recorded as a
  repayment whose entry is the step's.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
SOURCES_BEFORE = "source IN ('mpesa', 'savings', 'cash', 'top_up')"
SOURCES_AFTER = "source IN ('mpesa', 'savings', 'cash', 'top_up', 'recovery')"
GUARANTEES_BEFORE = "status IN ('requested', 'accepted', 'declined', 'withdrawn', 'released')"
GUARANTEES_AFTER = (
    "status IN ('requested', 'accepted', 'declined', 'withdrawn', 'released', 'called')"
)


def _cents(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "loan_recoveries",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("approval_id", ID, nullable=False),
        _cents("payoff_cents"),
        _cents("from_deposits_cents"),
        _cents("from_guarantors_cents"),
        _cents("balance_after_cents"),
        sa.Column("closed_loan", sa.Boolean(), nullable=False),
        sa.Column("deposits_entry_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "payoff_cents > 0 AND from_deposits_cents >= 0 AND from_guarantors_cents >= 0 "
            "AND balance_after_cents >= 0 AND "
            "from_deposits_cents + from_guarantors_cents + balance_after_cents = payoff_cents",
            name=op.f("ck_loan_recoveries_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_recoveries_loan_id_loans")
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_loan_recoveries_approval_id_approval_requests"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["deposits_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_loan_recoveries_deposits_entry_id_journal_entries"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_recoveries")),
        sa.UniqueConstraint("approval_id", name=op.f("uq_loan_recoveries_approval_id")),
    )
    op.create_index(op.f("ix_loan_recoveries_loan_id"), "loan_recoveries", ["loan_id"])
    op.create_table(
        "loan_recovery_shares",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("recovery_id", ID, nullable=False),
        sa.Column("guarantee_id", ID, nullable=False),
        sa.Column("guarantor_id", ID, nullable=False),
        _cents("pledge_cents"),
        _cents("held_cents"),
        _cents("share_cents"),
        sa.Column("entry_id", ID, nullable=False),
        sa.Column("recovery_loan_id", ID, nullable=True),
        sa.CheckConstraint(
            "share_cents > 0 AND share_cents <= held_cents AND held_cents <= pledge_cents",
            name=op.f("ck_loan_recovery_shares_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["recovery_id"],
            ["loan_recoveries.id"],
            name=op.f("fk_loan_recovery_shares_recovery_id_loan_recoveries"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["guarantee_id"],
            ["loan_guarantees.id"],
            name=op.f("fk_loan_recovery_shares_guarantee_id_loan_guarantees"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["guarantor_id"],
            ["members.id"],
            name=op.f("fk_loan_recovery_shares_guarantor_id_members"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_loan_recovery_shares_entry_id_journal_entries"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["recovery_loan_id"],
            ["loans.id"],
            name=op.f("fk_loan_recovery_shares_recovery_loan_id_loans"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_recovery_shares")),
        sa.UniqueConstraint("guarantee_id", name="uq_loan_recovery_shares_guarantee_id"),
    )
    op.create_index(
        op.f("ix_loan_recovery_shares_recovery_id"), "loan_recovery_shares", ["recovery_id"]
    )
    with op.batch_alter_table("loan_guarantees") as batch:
        batch.drop_constraint(op.f("ck_loan_guarantees_status"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_guarantees_status"), GUARANTEES_AFTER)
    with op.batch_alter_table("loan_repayments") as batch:
        batch.drop_constraint(op.f("ck_loan_repayments_source"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_repayments_source"), SOURCES_AFTER)


def downgrade() -> None:
    done = op.get_bind().scalar(sa.text("SELECT count(*) FROM loan_recoveries"))
    if done:  # the loans recovered would lose the record of how they were paid
        raise RuntimeError(f"{done} loan recoveries were made: not downgrading past 0023")
    with op.batch_alter_table("loan_repayments") as batch:
        batch.drop_constraint(op.f("ck_loan_repayments_source"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_repayments_source"), SOURCES_BEFORE)
    with op.batch_alter_table("loan_guarantees") as batch:
        batch.drop_constraint(op.f("ck_loan_guarantees_status"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_guarantees_status"), GUARANTEES_BEFORE)
    op.drop_index(op.f("ix_loan_recovery_shares_recovery_id"), table_name="loan_recovery_shares")
    op.drop_table("loan_recovery_shares")
    op.drop_index(op.f("ix_loan_recoveries_loan_id"), table_name="loan_recoveries")
    op.drop_table("loan_recoveries")
