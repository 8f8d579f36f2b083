"""Webhook signing secrets encrypted with the PII keys: webhook_endpoints.secret_ciphertext

``secret`` becomes nullable: it keeps the plaintext only for endpoints registered before
this revision. A migration holds no keys, so it encrypts nothing; ``manage.py
rotate-pii-keys`` encrypts those secrets and clears the plaintext.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite changes a column's nullability by copying the table.
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=True))
        batch_op.alter_column("secret", existing_type=sa.String(length=100), nullable=True)


def downgrade() -> None:
    # Without the keys the ciphertext cannot go back into ``secret``; refuse rather than
    # drop secrets or leave endpoints signing with an empty one.
    endpoints = sa.table("webhook_endpoints", sa.column("secret", sa.String(100)))
    encrypted_only = op.get_bind().scalar(
        sa.select(sa.func.count()).select_from(endpoints).where(endpoints.c.secret.is_(None))
    )
    if encrypted_only:
        raise RuntimeError(
            f"{encrypted_only} webhook endpoint(s) hold only an encrypted signing secret, "
            "which revision 0007 cannot store: delete them (and register them again after "
            "the downgrade) before downgrading below 0008"
        )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=100), nullable=False)
        batch_op.drop_column("secret_ciphertext")
