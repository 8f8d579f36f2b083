"""A member's registered e-mail (issue 16, part 3; docs/reports/members.md).

``members.email_ciphertext``: the address as a PII-vault token (like the national ID),
where member statements are e-mailed. NULL: none registered.

Revision ID: 0043
Revises: 0044
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0043"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("email_ciphertext", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("email_ciphertext")
