"""Insiders: staff and board members flagged on the member record (issue 16, part 2;
docs/reports/portfolio.md, "Insider loans").

``members.insider``: ``staff``, ``board`` or NULL (not an insider). Set by staff through
``PUT /api/v1/members/{id}/insider`` (audited) and read by the insider-loans report.

Revision ID: 0041
Revises: 0034
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("insider", sa.String(8), nullable=True))
        batch.create_check_constraint(op.f("ck_members_insider"), "insider IN ('staff', 'board')")


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint(op.f("ck_members_insider"), type_="check")
        batch.drop_column("insider")
