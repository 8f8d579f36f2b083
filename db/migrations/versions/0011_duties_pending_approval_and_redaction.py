"""Separation of duties: accounts and keys waiting for approval; redacted one-time codes.

``staff_users.pending_approval_id`` and ``api_clients.pending_approval_id``: the
maker-checker request (``staff.create`` / ``apiclient.create``) a new account or
partner key waits for. While set, the account or key is disabled and cannot be
enabled; approving the request clears it (``core.staff``). Plain ids, not foreign
keys: ``approval_requests.maker_id`` already points at ``staff_users``.

Also redacts the body of PIN-reset SMS already sent or given up, so the codes leave
the database (and the backups made from now on): ``core.notifications.SECRET_TEMPLATES``
does it for every new one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SECRET_TEMPLATES = ("pin_reset_code",)  # as in core.notifications, at the time of writing
REDACTED_BODY = "[redacted: this message carried a one-time code]"


def upgrade() -> None:
    for table in ("staff_users", "api_clients"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "pending_approval_id",
                    sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                    nullable=True,
                )
            )
    outbox = sa.table(
        "outbox_messages", sa.column("template", sa.String), sa.column("status", sa.String),
        sa.column("body", sa.Text),
    )  # fmt: skip
    op.execute(
        outbox.update()
        .where(
            outbox.c.template.in_(SECRET_TEMPLATES),
            outbox.c.status.in_(("sent", "delivered", "failed", "cancelled")),
        )
        .values(body=REDACTED_BODY)
    )


def downgrade() -> None:
    # The redacted codes stay redacted (they are gone, and were only ever one-time codes).
    for table in ("api_clients", "staff_users"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("pending_approval_id")
