"""Delivery reports that never find their message are set aside (issue 17).

``sms_delivery_reports.unmatched_at``: when the sweeper gave up matching a report to an
outbox message (its id was never ours, or never recorded). Reports waiting for their
message are those with neither ``applied_at`` nor ``unmatched_at``; the index on the two
and the id keeps the sweeper's oldest-first scan to those, so old strangers no longer
fill its batch and starve newer reports.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_delivery_reports") as batch:
        batch.add_column(sa.Column("unmatched_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_index("ix_sms_delivery_reports_unapplied", table_name="sms_delivery_reports")
    op.create_index(
        "ix_sms_delivery_reports_waiting",
        "sms_delivery_reports",
        ["applied_at", "unmatched_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_sms_delivery_reports_waiting", table_name="sms_delivery_reports")
    op.create_index(
        "ix_sms_delivery_reports_unapplied", "sms_delivery_reports", ["applied_at", "id"]
    )
    with op.batch_alter_table("sms_delivery_reports") as batch:
        batch.drop_column("unmatched_at")
