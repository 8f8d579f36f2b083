"""ussd session-end events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ussd_session_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("session_id", sa.String(length=100), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=True),
        sa.Column("service_code", sa.String(length=40), nullable=False),
        sa.Column("network_code", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("hops_count", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("cost", sa.String(length=20), nullable=False),
        sa.Column("error_message", sa.String(length=200), nullable=False),
        sa.Column("gateway_date", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('Success', 'Incomplete', 'Failed', 'Other')",
            name=op.f("ck_ussd_session_events_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ussd_session_events")),
        sa.UniqueConstraint("session_id", name=op.f("uq_ussd_session_events_session_id")),
    )
    with op.batch_alter_table("ussd_session_events", schema=None) as batch_op:
        batch_op.create_index("ix_ussd_session_events_msisdn_id", ["msisdn", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ussd_session_events", schema=None) as batch_op:
        batch_op.drop_index("ix_ussd_session_events_msisdn_id")
    op.drop_table("ussd_session_events")
