"""Teller tills and dormancy (issue 14, part 3; docs/savings/tills-and-dormancy.md).

* account ``5800`` Cash over and short (expense): what a till's count differs from what
  its entries say it should hold;
* ``till_days``: a teller's till from the opening float to the count (at most one not
  closed per teller);
* ``accounts.dormant_since``: a member's savings marked dormant by ``mark-dormant``;
  ``accounts.reactivated_at``: when staff last reactivated it (dormancy counts from then).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
OVER_SHORT = ("5800", "Cash over and short", "expense", "D", False)


def upgrade() -> None:
    code, name, type_, side, hot = OVER_SHORT
    op.execute(
        sa.text(
            "INSERT INTO accounts (code, name, type, normal_side, purpose, no_overdraft, "
            "is_hot, balance_cents, held_cents, created_at) VALUES (:code, :name, :type, "
            ":side, 'system', :no, :hot, 0, 0, :now)"
        ).bindparams(
            code=code, name=name, type=type_, side=side, no=False, hot=hot, now=datetime.now(UTC)
        )
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("dormant_since", TS, nullable=True))
        batch.add_column(sa.Column("reactivated_at", TS, nullable=True))
    op.create_table(
        "till_days",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("staff_id", ID, nullable=False),
        sa.Column("branch", sa.String(24), nullable=True),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("opening_float_cents", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("posting_floor_id", sa.BigInteger(), nullable=False),
        sa.Column("counted_at", TS, nullable=True),
        sa.Column("cash_in_cents", sa.BigInteger(), nullable=True),
        sa.Column("cash_out_cents", sa.BigInteger(), nullable=True),
        sa.Column("expected_cents", sa.BigInteger(), nullable=True),
        sa.Column("counted_cents", sa.BigInteger(), nullable=True),
        sa.Column("difference_cents", sa.BigInteger(), nullable=True),
        sa.Column("explanation", sa.String(200), nullable=False),
        sa.Column("approval_id", ID, nullable=True),
        sa.Column("entry_reference", sa.String(40), nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'counted', 'closed')", name=op.f("ck_till_days_status")
        ),
        sa.CheckConstraint(
            "opening_float_cents >= 0", name=op.f("ck_till_days_float_not_negative")
        ),
        sa.CheckConstraint(
            "counted_cents IS NULL OR counted_cents >= 0",
            name=op.f("ck_till_days_counted_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff_users.id"], name=op.f("fk_till_days_staff_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_till_days_approval_id_approval_requests"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_till_days")),
    )
    op.create_index(op.f("ix_till_days_staff_id"), "till_days", ["staff_id"])
    op.create_index(
        "uq_till_days_one_open_per_staff",
        "till_days",
        ["staff_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'closed'"),
        sqlite_where=sa.text("status <> 'closed'"),
    )


def downgrade() -> None:
    bind = op.get_bind()
    done = bind.scalar(
        sa.text(
            "SELECT (SELECT count(*) FROM till_days) + (SELECT count(*) FROM postings p "
            "JOIN accounts a ON a.id = p.account_id WHERE a.code = :code)"
        ).bindparams(code=OVER_SHORT[0])
    )
    if done:  # the books would lose how tills were counted
        raise RuntimeError("tills were opened: not downgrading past 0027")
    op.drop_index("uq_till_days_one_open_per_staff", table_name="till_days")
    op.drop_index("ix_till_days_staff_id", table_name="till_days")
    op.drop_table("till_days")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("reactivated_at")
        batch.drop_column("dormant_since")
    op.execute(sa.text("DELETE FROM accounts WHERE code = :code").bindparams(code=OVER_SHORT[0]))
