"""The loan book (issue 12, parts 3, 5, 6, 7): applications, loans, schedules, guarantees.

``loan_applications`` (a member's application under a product version: amount, term,
status, channel, idempotency key, the appraisal's limit and reasons, the security it needs,
the schedule preview), ``loans`` (disbursed: the loan's own ledger account, the
disbursement entry, the business date), ``loan_instalments`` (the schedule fixed at
disbursement, with what has been paid of each part) and ``loan_guarantees`` (a guarantor's
pledge: the ledger hold on their deposits while accepted, and the code they answer by SMS).
Statuses are CHECK constraints over ``core.loans.vocabulary``'s StrEnums.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
FRACTION = sa.Numeric(8, 4).with_variant(sa.String(10), "sqlite")


def _fk(column: str, table: str, source: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{table}.id"], name=op.f(f"fk_{source}_{column}_{table}")
    )


def upgrade() -> None:
    op.create_table(
        "loan_applications",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=12), nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("product_version_id", ID, nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("idempotency_key", sa.String(length=80), nullable=False),
        sa.Column("limit_cents", sa.BigInteger(), nullable=False),
        sa.Column("reasons", sa.String(length=200), nullable=False),
        sa.Column("required_cover_cents", sa.BigInteger(), nullable=False),
        sa.Column("own_cover_cents", sa.BigInteger(), nullable=False),
        sa.Column("guarantor_cover_cents", sa.BigInteger(), nullable=False),
        sa.Column("instalment_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_repayable_cents", sa.BigInteger(), nullable=False),
        sa.Column("deducted_fee_cents", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_fee_cents", sa.BigInteger(), nullable=False),
        sa.Column("apr", FRACTION, nullable=False),
        sa.Column("approval_id", ID, nullable=True),
        sa.Column("decision_note", sa.String(length=200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('submitted', 'awaiting_guarantors', 'pending_approval', 'approved', "
            "'rejected', 'withdrawn', 'disbursed')",
            name=op.f("ck_loan_applications_status"),
        ),
        sa.CheckConstraint(
            "channel IN ('ussd', 'sms', 'staff')", name=op.f("ck_loan_applications_channel")
        ),
        sa.CheckConstraint(
            "amount_cents > 0 AND term >= 1", name=op.f("ck_loan_applications_amount_term")
        ),
        sa.CheckConstraint(
            "required_cover_cents >= 0 AND own_cover_cents >= 0 AND guarantor_cover_cents >= 0",
            name=op.f("ck_loan_applications_cover"),
        ),
        _fk("member_id", "members", "loan_applications"),
        _fk("product_version_id", "loan_product_versions", "loan_applications"),
        _fk("approval_id", "approval_requests", "loan_applications"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_applications")),
        sa.UniqueConstraint("reference", name=op.f("uq_loan_applications_reference")),
        sa.UniqueConstraint("member_id", "idempotency_key", name="uq_loan_applications_key"),
    )
    op.create_index(
        "ix_loan_applications_member_status", "loan_applications", ["member_id", "status"]
    )
    op.create_index("ix_loan_applications_status_id", "loan_applications", ["status", "id"])

    op.create_table(
        "loans",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=12), nullable=False),
        sa.Column("application_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("product_version_id", ID, nullable=False),
        sa.Column("principal_cents", sa.BigInteger(), nullable=False),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("disbursement_entry_id", ID, nullable=False),
        sa.Column("deducted_fee_cents", sa.BigInteger(), nullable=False),
        sa.Column("disbursed_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'closed', 'written_off')", name=op.f("ck_loans_status")
        ),
        sa.CheckConstraint(
            "principal_cents > 0 AND term >= 1", name=op.f("ck_loans_principal_term")
        ),
        _fk("application_id", "loan_applications", "loans"),
        _fk("member_id", "members", "loans"),
        _fk("product_version_id", "loan_product_versions", "loans"),
        _fk("account_id", "accounts", "loans"),
        _fk("disbursement_entry_id", "journal_entries", "loans"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loans")),
        sa.UniqueConstraint("reference", name=op.f("uq_loans_reference")),
        sa.UniqueConstraint("application_id", name=op.f("uq_loans_application_id")),
        sa.UniqueConstraint("account_id", name=op.f("uq_loans_account_id")),
    )
    op.create_index("ix_loans_member_status", "loans", ["member_id", "status"])

    op.create_table(
        "loan_instalments",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("principal_cents", sa.BigInteger(), nullable=False),
        sa.Column("interest_cents", sa.BigInteger(), nullable=False),
        sa.Column("fee_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_principal_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_interest_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_fee_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "number >= 1 AND principal_cents >= 0 AND interest_cents >= 0 AND fee_cents >= 0",
            name=op.f("ck_loan_instalments_amounts"),
        ),
        sa.CheckConstraint(
            "paid_principal_cents BETWEEN 0 AND principal_cents AND "
            "paid_interest_cents BETWEEN 0 AND interest_cents AND "
            "paid_fee_cents BETWEEN 0 AND fee_cents",
            name=op.f("ck_loan_instalments_paid"),
        ),
        _fk("loan_id", "loans", "loan_instalments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_instalments")),
        sa.UniqueConstraint("loan_id", "number", name="uq_loan_instalments_number"),
    )
    op.create_index("ix_loan_instalments_due_on", "loan_instalments", ["due_on"])

    op.create_table(
        "loan_guarantees",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("application_id", ID, nullable=False),
        sa.Column("loan_id", ID, nullable=True),
        sa.Column("guarantor_id", ID, nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("hold_id", ID, nullable=True),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("released_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('requested', 'accepted', 'declined', 'withdrawn', 'released')",
            name=op.f("ck_loan_guarantees_status"),
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_loan_guarantees_amount")),
        sa.CheckConstraint(
            "status <> 'accepted' OR hold_id IS NOT NULL", name=op.f("ck_loan_guarantees_hold")
        ),
        _fk("application_id", "loan_applications", "loan_guarantees"),
        _fk("loan_id", "loans", "loan_guarantees"),
        _fk("guarantor_id", "members", "loan_guarantees"),
        _fk("hold_id", "holds", "loan_guarantees"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_guarantees")),
        sa.UniqueConstraint("code", name=op.f("uq_loan_guarantees_code")),
        sa.UniqueConstraint(
            "application_id", "guarantor_id", name="uq_loan_guarantees_application_guarantor"
        ),
    )
    op.create_index("ix_loan_guarantees_application_id", "loan_guarantees", ["application_id"])
    op.create_index("ix_loan_guarantees_loan_id", "loan_guarantees", ["loan_id"])
    op.create_index(
        "ix_loan_guarantees_guarantor_status", "loan_guarantees", ["guarantor_id", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_loan_guarantees_guarantor_status", table_name="loan_guarantees")
    op.drop_index("ix_loan_guarantees_loan_id", table_name="loan_guarantees")
    op.drop_index("ix_loan_guarantees_application_id", table_name="loan_guarantees")
    op.drop_table("loan_guarantees")
    op.drop_index("ix_loan_instalments_due_on", table_name="loan_instalments")
    op.drop_table("loan_instalments")
    op.drop_index("ix_loans_member_status", table_name="loans")
    op.drop_table("loans")
    op.drop_index("ix_loan_applications_status_id", table_name="loan_applications")
    op.drop_index("ix_loan_applications_member_status", table_name="loan_applications")
    op.drop_table("loan_applications")
