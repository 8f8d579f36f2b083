"""Employer check-off (issue 15, part 3; docs/integrations/check-off.md).

* account ``2210`` Check-off clearing (a liability): an employer's bank transfer lands
  here and is allocated from here; what matches no member stays here, visibly;
* ``employers``, ``employer_members`` (payroll number unique per employer, one employer
  per member), ``standing_instructions``;
* ``checkoff_schedules`` and their lines: the deductions expected per employer and month;
* ``checkoff_remittances`` (the file's SHA-256 unique: the same file twice is once) and
  ``checkoff_lines``;
* ``loan_repayments.source`` may be ``checkoff``.

Revision ID: 0038
Revises: 0039
Create Date: 2026-12-04
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0039"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
CLEARING = ("2210", "Check-off clearing", "liability", "C", True)
SOURCES_BEFORE = "source IN ('mpesa', 'savings', 'cash', 'top_up', 'recovery')"
SOURCES_AFTER = "source IN ('mpesa', 'savings', 'cash', 'top_up', 'recovery', 'checkoff')"


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def _cents(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    code, name, type_, side, hot = CLEARING
    op.execute(
        sa.text(
            "INSERT INTO accounts (code, name, type, normal_side, purpose, no_overdraft, "
            "is_hot, balance_cents, held_cents, created_at) VALUES (:code, :name, :type, "
            ":side, 'system', :no, :hot, 0, 0, :now)"
        ).bindparams(
            code=code, name=name, type=type_, side=side, no=False, hot=hot, now=datetime.now(UTC)
        )
    )
    with op.batch_alter_table("loan_repayments") as batch:
        batch.drop_constraint(op.f("ck_loan_repayments_source"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_repayments_source"), SOURCES_AFTER)
    op.create_table(
        "employers",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("bank_account", sa.String(40), nullable=False),
        sa.Column("contact_email", sa.String(254), nullable=False),
        sa.Column("pay_day", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("pay_day BETWEEN 1 AND 31", name=op.f("ck_employers_pay_day")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_employers")),
        sa.UniqueConstraint("code", name=op.f("uq_employers_code")),
    )
    op.create_table(
        "employer_members",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("employer_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("payroll_number", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _fk("employer_members", "employer_id", "employers"),
        _fk("employer_members", "member_id", "members"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_employer_members")),
        sa.UniqueConstraint("member_id", name=op.f("uq_employer_members_member_id")),
        sa.UniqueConstraint("employer_id", "payroll_number", name="uq_employer_members_payroll"),
    )
    op.create_table(
        "standing_instructions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("target", sa.String(10), nullable=False),
        sa.Column("loan_id", ID, nullable=True),
        _cents("amount_cents", nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "target IN ('loan', 'deposits', 'shares', 'savings')",
            name=op.f("ck_standing_instructions_target"),
        ),
        sa.CheckConstraint(
            "(amount_cents IS NULL AND target = 'loan') OR amount_cents > 0",
            name=op.f("ck_standing_instructions_amount"),
        ),
        sa.CheckConstraint(
            "(target = 'loan') = (loan_id IS NOT NULL)", name=op.f("ck_standing_instructions_loan")
        ),
        _fk("standing_instructions", "member_id", "members"),
        _fk("standing_instructions", "loan_id", "loans"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_standing_instructions")),
    )
    op.create_index("ix_standing_instructions_member_id", "standing_instructions", ["member_id"])
    op.create_table(
        "checkoff_schedules",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("employer_id", ID, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("deduction_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        _cents("total_cents"),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("generated_at", TS, nullable=False),
        _fk("checkoff_schedules", "employer_id", "employers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkoff_schedules")),
        sa.UniqueConstraint("employer_id", "period", name="uq_checkoff_schedules"),
    )
    op.create_table(
        "checkoff_schedule_lines",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("schedule_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("payroll_number", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(10), nullable=False),
        sa.Column("loan_id", ID, nullable=True),
        _cents("amount_cents"),
        _fk("checkoff_schedule_lines", "schedule_id", "checkoff_schedules"),
        _fk("checkoff_schedule_lines", "member_id", "members"),
        _fk("checkoff_schedule_lines", "loan_id", "loans"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkoff_schedule_lines")),
    )
    op.create_index(
        "ix_checkoff_schedule_lines_schedule_id", "checkoff_schedule_lines", ["schedule_id"]
    )
    op.create_table(
        "checkoff_remittances",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("employer_id", ID, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("bank_reference", sa.String(64), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        _cents("total_cents"),
        sa.Column("lines", sa.Integer(), nullable=False),
        _cents("matched_cents"),
        _cents("unmatched_cents"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("uploaded_by", ID, nullable=False),
        sa.Column("uploaded_at", TS, nullable=False),
        sa.Column("approval_id", ID, nullable=True),
        sa.Column("receipt_entry_id", ID, nullable=True),
        sa.Column("posted_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending_approval', 'posted', 'rejected')",
            name=op.f("ck_checkoff_remittances_status"),
        ),
        _fk("checkoff_remittances", "employer_id", "employers"),
        _fk("checkoff_remittances", "uploaded_by", "staff_users"),
        _fk("checkoff_remittances", "approval_id", "approval_requests"),
        _fk("checkoff_remittances", "receipt_entry_id", "journal_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkoff_remittances")),
        sa.UniqueConstraint("checksum", name=op.f("uq_checkoff_remittances_checksum")),
    )
    op.create_index("ix_checkoff_remittances_employer_id", "checkoff_remittances", ["employer_id"])
    op.create_table(
        "checkoff_lines",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("remittance_id", ID, nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("payroll_number", sa.String(32), nullable=True),
        sa.Column("national_id_index", sa.String(64), nullable=True),
        sa.Column("name", sa.String(120), nullable=False),
        _cents("amount_cents"),
        sa.Column("member_id", ID, nullable=True),
        sa.Column("allocation", sa.JSON(), nullable=True),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_checkoff_lines_amount")),
        _fk("checkoff_lines", "remittance_id", "checkoff_remittances"),
        _fk("checkoff_lines", "member_id", "members"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkoff_lines")),
        sa.UniqueConstraint("remittance_id", "line_no", name="uq_checkoff_lines_line"),
    )


def downgrade() -> None:
    op.drop_table("checkoff_lines")
    op.drop_index("ix_checkoff_remittances_employer_id", table_name="checkoff_remittances")
    op.drop_table("checkoff_remittances")
    op.drop_index("ix_checkoff_schedule_lines_schedule_id", table_name="checkoff_schedule_lines")
    op.drop_table("checkoff_schedule_lines")
    op.drop_table("checkoff_schedules")
    op.drop_index("ix_standing_instructions_member_id", table_name="standing_instructions")
    op.drop_table("standing_instructions")
    op.drop_table("employer_members")
    op.drop_table("employers")
    with op.batch_alter_table("loan_repayments") as batch:
        batch.drop_constraint(op.f("ck_loan_repayments_source"), type_="check")
        batch.create_check_constraint(op.f("ck_loan_repayments_source"), SOURCES_BEFORE)
    op.execute(sa.text("DELETE FROM accounts WHERE code = :code").bindparams(code=CLEARING[0]))
