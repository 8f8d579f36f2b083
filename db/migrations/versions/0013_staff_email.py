"""Staff e-mail addresses, where alerts about work waiting for them go.

``staff_users.email``: optional. A member of staff with one gets an e-mail when a
maker-checker request waits for a permission they hold, and, holding ``ledger:adjust``,
when an M-Pesa payout failed or waits for staff (``core.staff.alerts``). Set by an
administrator: ``PUT /api/v1/staff/{id}/email``.

Revision ID: 0013
Revises: 0012 (see ``down_revision``)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
# Written in parallel with 0012 (journal entries' value date, issue 11): until that branch
# is merged this revision follows 0011; merged, it follows 0012 (one head, 0013).
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("email")
