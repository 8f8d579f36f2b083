"""Hot system accounts split into shards (issue 18, aim 2; docs/ledger/shards.md).

* ``accounts.parent_id``: a shard names the account it is part of.
* Eight shards for each sharded account (``core.ledger.chart.SHARDED_ACCOUNTS``: the two
  M-Pesa floats, suspense, fee income), ``1010-01`` … ``1010-08``, same type, normal
  side and purpose as the parent, hot, at zero. The parents keep their balances and their
  postings: nothing written before is moved or rewritten. More shards are added later by
  ``manage.py ledger-shards --count N`` (never fewer: a shard with postings stays).

The codes and names are written out here, not imported: a migration is frozen in time.

Revision ID: 0040
Revises: 0038
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0038"
branch_labels = None
depends_on = None

SHARDS = 8
SHARDED = ("1010", "1020", "2200", "4100")


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_accounts_parent_id_accounts"), "accounts", ["parent_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_accounts_parent_id"), ["parent_id"], unique=False)

    bind = op.get_bind()
    parents = bind.execute(
        sa.text(
            "SELECT id, code, name, type, normal_side, purpose FROM accounts"
            " WHERE code IN :codes ORDER BY code"
        ).bindparams(sa.bindparam("codes", expanding=True)),
        {"codes": list(SHARDED)},
    ).all()
    now = datetime.now(UTC)
    accounts = sa.table(
        "accounts",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("type", sa.String),
        sa.column("normal_side", sa.String),
        sa.column("purpose", sa.String),
        sa.column("no_overdraft", sa.Boolean),
        sa.column("is_hot", sa.Boolean),
        sa.column("balance_cents", sa.BigInteger),
        sa.column("held_cents", sa.BigInteger),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("parent_id", sa.BigInteger),
    )
    rows = [
        {
            "code": f"{p.code}-{n:02d}",
            "name": f"{p.name}, shard {n:02d}",
            "type": p.type,
            "normal_side": p.normal_side,
            "purpose": p.purpose,
            "no_overdraft": False,
            "is_hot": True,
            "balance_cents": 0,
            "held_cents": 0,
            "created_at": now,
            "parent_id": p.id,
        }
        for p in parents
        for n in range(1, SHARDS + 1)
    ]
    if rows:
        op.bulk_insert(accounts, rows)


def downgrade() -> None:
    bind = op.get_bind()
    used = bind.execute(
        sa.text(
            "SELECT count(*) FROM postings p JOIN accounts a ON a.id = p.account_id"
            " WHERE a.parent_id IS NOT NULL"
        )
    ).scalar()
    if used:
        raise RuntimeError("shards hold postings: the ledger cannot be un-sharded by a downgrade")
    op.execute("DELETE FROM accounts WHERE parent_id IS NOT NULL")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_parent_id"))
        batch_op.drop_constraint(batch_op.f("fk_accounts_parent_id_accounts"), type_="foreignkey")
        batch_op.drop_column("parent_id")
