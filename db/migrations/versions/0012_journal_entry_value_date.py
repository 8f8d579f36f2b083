"""Journal entries carry a value date.

``journal_entries.value_date`` (DATE, not null): the business day an entry's money
counts from. The ledger sets it to the Africa/Nairobi date of the entry's time
unless the use case gives one (loans and interest will). Existing entries get the
Nairobi date of their ``created_at``.

On PostgreSQL entries are immutable (trigger ``journal_entries_immutable``, 0001):
the trigger is switched off for the backfill only, inside this migration's
transaction, and switched on again before it commits.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NAIROBI = ZoneInfo("Africa/Nairobi")  # as core.kernel.calendar, at the time of writing
BATCH = 1000


def _backfill_sqlite(bind: sa.engine.Connection) -> None:
    """SQLite keeps ``created_at`` as naive UTC text: convert row by row with zoneinfo."""
    entries = sa.table(
        "journal_entries",
        sa.column("id", sa.Integer),
        sa.column("created_at", sa.DateTime()),
        sa.column("value_date", sa.Date()),
    )
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(entries.c.id, entries.c.created_at)
            .where(entries.c.id > last_id)
            .order_by(entries.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for entry_id, created_at in rows:
            moment: datetime = created_at
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            bind.execute(
                entries.update()
                .where(entries.c.id == entry_id)
                .values(value_date=moment.astimezone(NAIROBI).date())
            )
        last_id = rows[-1][0]


def upgrade() -> None:
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value_date", sa.Date(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE journal_entries DISABLE TRIGGER journal_entries_immutable")
        op.execute(
            "UPDATE journal_entries "
            "SET value_date = (created_at AT TIME ZONE 'Africa/Nairobi')::date"
        )
        op.execute("ALTER TABLE journal_entries ENABLE TRIGGER journal_entries_immutable")
    else:
        _backfill_sqlite(bind)
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.alter_column("value_date", existing_type=sa.Date(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.drop_column("value_date")
