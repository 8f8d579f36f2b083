"""Bank transfers (issue 15, part 4; docs/integrations/banks.md).

* ``member_bank_accounts``: a member's bank account for loan payouts (number encrypted).
* ``bank_transfers``: money out by bank transfer, two-phase like B2C (a hold on savings).
* ``bank_callbacks``: the bank's callbacks, stored raw before they are read.
* ``bank_sweeps``: the M-Pesa collections float swept to the bank account.
* ``loan_applications.disburse_to`` may now be ``bank``.

The bank asset account (1000 "Bank") is already in the chart (migration 0001).

Revision ID: 0039
Revises: 0032
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0039"
down_revision = "0032"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def upgrade() -> None:
    op.create_table(
        "member_bank_accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("bank_code", sa.String(8), nullable=False),
        sa.Column("account_number_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("account_last4", sa.String(4), nullable=False),
        sa.Column("account_name", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        _fk("member_bank_accounts", "member_id", "members"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_bank_accounts")),
        sa.UniqueConstraint("member_id", name=op.f("uq_member_bank_accounts_member_id")),
    )
    op.create_table(
        "bank_transfers",
        sa.Column("id", ID, nullable=False),
        sa.Column("reference", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(120), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("transfer_type", sa.String(10), nullable=False),
        sa.Column("bank_code", sa.String(8), nullable=False),
        sa.Column("account_number_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("account_last4", sa.String(4), nullable=False),
        sa.Column("account_name", sa.String(80), nullable=False),
        sa.Column("hold_id", ID, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("bank_reference", sa.String(64), nullable=True),
        sa.Column("retrieval_reference", sa.String(64), nullable=True),
        sa.Column("result_code", sa.String(16), nullable=True),
        sa.Column("result_desc", sa.String(200), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("entry_id", ID, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("settled_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('requested', 'sending', 'sent', 'succeeded', 'failed', 'unknown', "
            "'review')",
            name=op.f("ck_bank_transfers_status"),
        ),
        sa.CheckConstraint(
            "transfer_type IN ('internal', 'rtgs', 'pesalink')", name=op.f("ck_bank_transfers_type")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_bank_transfers_amount")),
        _fk("bank_transfers", "member_id", "members"),
        _fk("bank_transfers", "hold_id", "holds"),
        _fk("bank_transfers", "entry_id", "journal_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_transfers")),
        sa.UniqueConstraint("reference", name=op.f("uq_bank_transfers_reference")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_bank_transfers_idempotency_key")),
        sa.UniqueConstraint("bank_reference", name=op.f("uq_bank_transfers_bank_reference")),
    )
    op.create_index(
        "ix_bank_transfers_status_created_at", "bank_transfers", ["status", "created_at"]
    )
    op.create_table(
        "bank_callbacks",
        sa.Column("id", ID, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("remote_addr", sa.String(64), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("bank_reference", sa.String(64), nullable=True),
        sa.Column("transaction_reference", sa.String(20), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("processed_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'processed', 'malformed', 'unmatched', 'error')",
            name=op.f("ck_bank_callbacks_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_callbacks")),
    )
    op.create_index(op.f("ix_bank_callbacks_bank_reference"), "bank_callbacks", ["bank_reference"])
    op.create_table(
        "bank_sweeps",
        sa.Column("id", ID, nullable=False),
        sa.Column("reference", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(120), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", ID, nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("made_by", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_bank_sweeps_amount")),
        _fk("bank_sweeps", "entry_id", "journal_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_sweeps")),
        sa.UniqueConstraint("reference", name=op.f("uq_bank_sweeps_reference")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_bank_sweeps_idempotency_key")),
    )
    with op.batch_alter_table("loan_applications") as batch:
        batch.drop_constraint(op.f("ck_loan_applications_disburse_to"), type_="check")
        batch.create_check_constraint(
            op.f("ck_loan_applications_disburse_to"), "disburse_to IN ('savings', 'mpesa', 'bank')"
        )


def downgrade() -> None:
    with op.batch_alter_table("loan_applications") as batch:
        batch.drop_constraint(op.f("ck_loan_applications_disburse_to"), type_="check")
        batch.create_check_constraint(
            op.f("ck_loan_applications_disburse_to"), "disburse_to IN ('savings', 'mpesa')"
        )
    op.drop_table("bank_sweeps")
    op.drop_index(op.f("ix_bank_callbacks_bank_reference"), table_name="bank_callbacks")
    op.drop_table("bank_callbacks")
    op.drop_index("ix_bank_transfers_status_created_at", table_name="bank_transfers")
    op.drop_table("bank_transfers")
    op.drop_table("member_bank_accounts")
