"""SIM-swap events reviewed by staff: who reviewed and what they found, and clearances.

``sim_swap_events.reviewed_at`` existed; ``reviewed_by_id`` (the member of staff)
and ``review_note`` join it, filled by ``core.sim_swap_events.review_event``.
``cleared_at`` and ``cleared_by_request_id`` record a maker-checker clearance (the
member showed their ID after this swap): ``core.mpesa.guard_sim_swap`` then lets
withdrawals through for this phone unless the SIM is swapped again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sim_swap_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reviewed_by_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                sa.ForeignKey("staff_users.id", name="fk_sim_swap_events_reviewed_by_id"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("review_note", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "cleared_by_request_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                sa.ForeignKey(
                    "approval_requests.id", name="fk_sim_swap_events_cleared_by_request_id"
                ),
                nullable=True,
            )
        )
        batch_op.create_index("ix_sim_swap_events_reviewed_at", ["reviewed_at"])


def downgrade() -> None:
    with op.batch_alter_table("sim_swap_events", schema=None) as batch_op:
        batch_op.drop_index("ix_sim_swap_events_reviewed_at")
        batch_op.drop_column("cleared_by_request_id")
        batch_op.drop_column("cleared_at")
        batch_op.drop_column("review_note")
        batch_op.drop_column("reviewed_by_id")
