"""Walk-in registration and change of phone (issue 14, part 3).

``members.date_of_birth_ciphertext`` and ``members.registration_key`` (the staff till's
Idempotency-Key, unique); ``member_next_of_kin`` and ``member_beneficiaries`` (personal
data as PII-vault tokens); ``member_phone_changes`` (one row per approved change, the
numbers as tokens, read by the SIM-swap guard for the time).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _member_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["member_id"], ["members.id"], name=op.f(f"fk_{table}_member_id_members")
    )


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("date_of_birth_ciphertext", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("registration_key", sa.String(120), nullable=True))
        batch.create_unique_constraint(op.f("uq_members_registration_key"), ["registration_key"])
    op.create_table(
        "member_next_of_kin",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("name_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("relationship", sa.String(24), nullable=False),
        sa.Column("phone_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        _member_fk("member_next_of_kin"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_next_of_kin")),
        sa.UniqueConstraint("member_id", name=op.f("uq_member_next_of_kin_member_id")),
    )
    op.create_table(
        "member_beneficiaries",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("name_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("relationship", sa.String(24), nullable=False),
        sa.Column("id_kind", sa.String(20), nullable=False),
        sa.Column("id_number_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("share_percent", sa.Numeric(5, 2), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "share_percent > 0 AND share_percent <= 100",
            name=op.f("ck_member_beneficiaries_share"),
        ),
        sa.CheckConstraint(
            "id_kind IN ('national_id', 'birth_certificate')",
            name=op.f("ck_member_beneficiaries_id_kind"),
        ),
        _member_fk("member_beneficiaries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_beneficiaries")),
        sa.UniqueConstraint(
            "member_id", "position", name=op.f("uq_member_beneficiaries_member_id")
        ),
    )
    op.create_index(
        op.f("ix_member_beneficiaries_member_id"), "member_beneficiaries", ["member_id"]
    )
    op.create_table(
        "member_phone_changes",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("approval_id", ID, nullable=False),
        sa.Column("old_msisdn_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("new_msisdn_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        _member_fk("member_phone_changes"),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_member_phone_changes_approval_id_approval_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_phone_changes")),
        sa.UniqueConstraint("approval_id", name=op.f("uq_member_phone_changes_approval_id")),
    )
    op.create_index(
        op.f("ix_member_phone_changes_member_id"), "member_phone_changes", ["member_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_member_phone_changes_member_id"), table_name="member_phone_changes")
    op.drop_table("member_phone_changes")
    op.drop_index(op.f("ix_member_beneficiaries_member_id"), table_name="member_beneficiaries")
    op.drop_table("member_beneficiaries")
    op.drop_table("member_next_of_kin")
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint(op.f("uq_members_registration_key"), type_="unique")
        batch.drop_column("registration_key")
        batch.drop_column("date_of_birth_ciphertext")
