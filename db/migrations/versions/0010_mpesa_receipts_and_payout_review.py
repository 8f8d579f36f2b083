"""One receipt, one credit; payouts that only staff can settle.

* ``mpesa_receipts``: the M-Pesa receipts that brought money in, whatever path brought
  them (STK callback or paybill confirmation); the primary key is the receipt, so a
  second path carrying the same receipt credits nothing (``core.mpesa``). Filled here
  from the receipts already recorded, STK first (a paybill twin of a credited STK push
  was not credited).
* ``mpesa_suspense_items.stk_request_id`` / ``c2b_payment_id``: a paybill payment and
  an STK push settled without a receipt that may be one payment are parked and linked;
  an item can end ``duplicate`` (the parking entry reversed).
* ``mpesa_b2c_payouts.status`` ``review``: a payout that may have reached Daraja and
  that no answer settles waits for staff (maker-checker ``payout.resolve``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PAYOUT_OLD = "status IN ('requested', 'sending', 'sent', 'succeeded', 'failed', 'unknown')"
PAYOUT_NEW = (
    "status IN ('requested', 'sending', 'sent', 'succeeded', 'failed', 'unknown', 'review')"
)
ITEM_OLD = "status IN ('open', 'assigned')"
ITEM_NEW = "status IN ('open', 'assigned', 'duplicate')"


def upgrade() -> None:
    op.create_table(
        "mpesa_receipts",
        sa.Column("receipt", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("stk_request_id", BIG, nullable=True),
        sa.Column("c2b_payment_id", BIG, nullable=True),
        sa.Column("entry_id", BIG, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('stk', 'c2b')", name=op.f("ck_mpesa_receipts_source")),
        sa.ForeignKeyConstraint(
            ["stk_request_id"],
            ["mpesa_stk_requests.id"],
            name=op.f("fk_mpesa_receipts_stk_request_id_mpesa_stk_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["c2b_payment_id"],
            ["mpesa_c2b_payments.id"],
            name=op.f("fk_mpesa_receipts_c2b_payment_id_mpesa_c2b_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_mpesa_receipts_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("receipt", name=op.f("pk_mpesa_receipts")),
    )
    op.execute(
        "INSERT INTO mpesa_receipts (receipt, source, stk_request_id, entry_id, created_at) "
        "SELECT receipt, 'stk', id, entry_id, COALESCE(settled_at, created_at) "
        "FROM mpesa_stk_requests WHERE receipt IS NOT NULL"
    )
    op.execute(
        "INSERT INTO mpesa_receipts (receipt, source, c2b_payment_id, entry_id, created_at) "
        "SELECT trans_id, 'c2b', id, entry_id, created_at FROM mpesa_c2b_payments c "
        "WHERE NOT EXISTS (SELECT 1 FROM mpesa_receipts r WHERE r.receipt = c.trans_id)"
    )
    with op.batch_alter_table("mpesa_suspense_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stk_request_id", BIG, nullable=True))
        batch_op.add_column(sa.Column("c2b_payment_id", BIG, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_mpesa_suspense_items_stk_request_id_mpesa_stk_requests"),
            "mpesa_stk_requests",
            ["stk_request_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_mpesa_suspense_items_c2b_payment_id_mpesa_c2b_payments"),
            "mpesa_c2b_payments",
            ["c2b_payment_id"],
            ["id"],
        )
        batch_op.create_index(
            batch_op.f("ix_mpesa_suspense_items_stk_request_id"), ["stk_request_id"]
        )
        batch_op.drop_constraint(batch_op.f("ck_mpesa_suspense_items_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_mpesa_suspense_items_status"), ITEM_NEW)
    with op.batch_alter_table("mpesa_b2c_payouts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_mpesa_b2c_payouts_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_mpesa_b2c_payouts_status"), PAYOUT_NEW)


def downgrade() -> None:
    # Refuses (a CHECK violation) while a payout waits for review or an item is marked
    # duplicate: settle those first, nothing is silently rewritten.
    with op.batch_alter_table("mpesa_b2c_payouts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_mpesa_b2c_payouts_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_mpesa_b2c_payouts_status"), PAYOUT_OLD)
    with op.batch_alter_table("mpesa_suspense_items", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_mpesa_suspense_items_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_mpesa_suspense_items_status"), ITEM_OLD)
        batch_op.drop_index(batch_op.f("ix_mpesa_suspense_items_stk_request_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_mpesa_suspense_items_c2b_payment_id_mpesa_c2b_payments"),
            type_="foreignkey",
        )
        batch_op.drop_constraint(
            batch_op.f("fk_mpesa_suspense_items_stk_request_id_mpesa_stk_requests"),
            type_="foreignkey",
        )
        batch_op.drop_column("c2b_payment_id")
        batch_op.drop_column("stk_request_id")
    op.drop_table("mpesa_receipts")
