"""Death of a member and M-Pesa exit refunds (issue 14, part 3; docs/members/death.md,
docs/members/exit.md).

* ``members.status`` may be ``deceased``: a death approved by a manager stops the
  member's channels at once.
* ``member_exits.refund_method`` (``branch`` or ``mpesa``) and ``refund_payout_id``: an exit
  refund paid by M-Pesa B2C to the member's registered phone.
* ``member_beneficiaries.msisdn_ciphertext``: a beneficiary's phone (optional, encrypted
  like the other personal data of the nomination), for an M-Pesa payment of their share.
* ``member_deaths``: one per member: the date, the certificate, the maker-checker request,
  what the loans took and what the estate was.
* ``estate_payables``: each beneficiary's share (or the whole estate held for the legal
  representative) in a payable account of its own until it is paid out.

Revision ID: 0033
Revises: 0043
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0043"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
MEMBER_STATUS_BEFORE = "status IN ('pending_kyc', 'active', 'suspended', 'exited')"
MEMBER_STATUS_AFTER = "status IN ('pending_kyc', 'active', 'suspended', 'exited', 'deceased')"


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint(op.f("ck_members_status"), type_="check")
        batch.create_check_constraint(op.f("ck_members_status"), MEMBER_STATUS_AFTER)
    with op.batch_alter_table("member_exits") as batch:
        batch.add_column(
            sa.Column("refund_method", sa.String(8), nullable=False, server_default="branch")
        )
        batch.add_column(sa.Column("refund_payout_id", ID, nullable=True))
        batch.create_check_constraint(
            op.f("ck_member_exits_refund_method"), "refund_method IN ('branch', 'mpesa')"
        )
        batch.create_foreign_key(
            op.f("fk_member_exits_refund_payout_id_mpesa_b2c_payouts"),
            "mpesa_b2c_payouts", ["refund_payout_id"], ["id"],
        )  # fmt: skip
    with op.batch_alter_table("member_beneficiaries") as batch:
        batch.add_column(sa.Column("msisdn_ciphertext", sa.LargeBinary(), nullable=True))
    op.create_table(
        "member_deaths",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("died_on", sa.Date(), nullable=False),
        sa.Column("certificate_ref", sa.String(length=40), nullable=False),
        sa.Column("document_ref", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=False),
        sa.Column("blocked_reason", sa.String(length=40), nullable=True),
        sa.Column("approval_id", ID, nullable=True),
        sa.Column("loans_offset_cents", sa.BigInteger(), nullable=False),
        sa.Column("estate_cents", sa.BigInteger(), nullable=False),
        sa.Column("recorded_by", ID, nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("settled_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('awaiting_approval', 'rejected', 'settled', 'blocked')",
            name=op.f("ck_member_deaths_status"),
        ),
        sa.CheckConstraint(
            "loans_offset_cents >= 0 AND estate_cents >= 0", name=op.f("ck_member_deaths_amounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_deaths_member_id_members")
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_member_deaths_approval_id_approval_requests"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["recorded_by"],
            ["staff_users.id"],
            name=op.f("fk_member_deaths_recorded_by_staff_users"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_deaths")),
        sa.UniqueConstraint("member_id", name=op.f("uq_member_deaths_member_id")),
    )
    op.create_table(
        "estate_payables",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("death_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("beneficiary_id", ID, nullable=True),
        sa.Column("payee", sa.String(length=24), nullable=False),
        sa.Column("share_percent", sa.Numeric(5, 2), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("paid_reference", sa.String(length=40), nullable=True),
        sa.Column("payout_id", ID, nullable=True),
        sa.Column("paid_entry_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("paid_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'paying', 'paid')", name=op.f("ck_estate_payables_status")
        ),  # fmt: skip
        sa.CheckConstraint(
            "payee IN ('beneficiary', 'legal_representative')",
            name=op.f("ck_estate_payables_payee"),
        ),  # fmt: skip
        sa.CheckConstraint(
            "method IS NULL OR method IN ('cash', 'bank', 'mpesa')",
            name=op.f("ck_estate_payables_method"),
        ),  # fmt: skip
        sa.CheckConstraint("amount_cents >= 0", name=op.f("ck_estate_payables_amount")),
        sa.ForeignKeyConstraint(
            ["death_id"],
            ["member_deaths.id"],
            name=op.f("fk_estate_payables_death_id_member_deaths"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_estate_payables_member_id_members")
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_estate_payables_account_id_accounts")
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["member_beneficiaries.id"],
            name=op.f("fk_estate_payables_beneficiary_id_member_beneficiaries"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["mpesa_b2c_payouts.id"],
            name=op.f("fk_estate_payables_payout_id_mpesa_b2c_payouts"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["paid_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_estate_payables_paid_entry_id_journal_entries"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estate_payables")),
        sa.UniqueConstraint("account_id", name=op.f("uq_estate_payables_account_id")),
    )
    op.create_index("ix_estate_payables_death_id", "estate_payables", ["death_id"])


def downgrade() -> None:
    op.drop_index("ix_estate_payables_death_id", table_name="estate_payables")
    op.drop_table("estate_payables")
    op.drop_table("member_deaths")
    with op.batch_alter_table("member_beneficiaries") as batch:
        batch.drop_column("msisdn_ciphertext")
    with op.batch_alter_table("member_exits") as batch:
        batch.drop_constraint(
            op.f("fk_member_exits_refund_payout_id_mpesa_b2c_payouts"), type_="foreignkey"
        )
        batch.drop_constraint(op.f("ck_member_exits_refund_method"), type_="check")
        batch.drop_column("refund_payout_id")
        batch.drop_column("refund_method")
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint(op.f("ck_members_status"), type_="check")
        batch.create_check_constraint(op.f("ck_members_status"), MEMBER_STATUS_BEFORE)
