"""Member exit (issue 14, part 3; docs/members/exit.md).

* ``member_exits``: one row per member who gave notice to leave (unique per member: an
  exit is final): the reason, the channel it came from (staff or USSD), who recorded it,
  the notice period the by-laws gave (``notice_days``) and the day it ends (``due_on``),
  its state (``notice`` -> ``blocked`` / ``awaiting_approval`` -> ``done``), the
  maker-checker request of its run, and once done what was offset against loans and
  refunded (``refund_cents``, of it ``shares_cents``) with the refund's entry.
* ``accounts.closed_at``: when a member account was closed (the exit run closes the
  member's savings, deposits and share capital at zero).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
STATUSES = "status IN ('notice', 'blocked', 'awaiting_approval', 'done')"


def upgrade() -> None:
    op.create_table(
        "member_exits",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("requested_by", ID, nullable=True),
        sa.Column("notice_days", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("blocked_reason", sa.String(length=40), nullable=True),
        sa.Column("approval_id", ID, nullable=True),
        sa.Column("loans_offset_cents", sa.BigInteger(), nullable=False),
        sa.Column("refund_cents", sa.BigInteger(), nullable=False),
        sa.Column("shares_cents", sa.BigInteger(), nullable=False),
        sa.Column("refund_entry_id", ID, nullable=True),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.CheckConstraint(STATUSES, name=op.f("ck_member_exits_status")),
        sa.CheckConstraint("channel IN ('staff', 'ussd')", name=op.f("ck_member_exits_channel")),
        sa.CheckConstraint(
            "notice_days >= 0 AND loans_offset_cents >= 0 AND refund_cents >= 0 "
            "AND shares_cents >= 0",
            name=op.f("ck_member_exits_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_exits_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["staff_users.id"],
            name=op.f("fk_member_exits_requested_by_staff_users"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_member_exits_approval_id_approval_requests"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["refund_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_member_exits_refund_entry_id_journal_entries"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_exits")),
        sa.UniqueConstraint("member_id", name=op.f("uq_member_exits_member_id")),
    )
    op.create_index("ix_member_exits_status_due_on", "member_exits", ["status", "due_on"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("closed_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("closed_at")
    op.drop_index("ix_member_exits_status_due_on", table_name="member_exits")
    op.drop_table("member_exits")
