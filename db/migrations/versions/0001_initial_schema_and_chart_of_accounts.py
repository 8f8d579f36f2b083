"""initial schema and chart of accounts

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Tables for the ledger (accounts, journal entries, postings, holds) and members;
on PostgreSQL, triggers that refuse an unbalanced entry at commit and any
UPDATE or DELETE of a written entry or posting; the default chart of accounts.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The default chart of accounts (ARCHITECTURE.md). code, name, type, normal side, hot.
# Hot accounts (floats, income, suspense) are touched by almost every entry: the
# ledger locks them last. Per-member and per-loan accounts are created with them.
CHART = [
    ("1000", "Bank", "asset", "D", False),
    ("1010", "M-Pesa collections float", "asset", "D", True),
    ("1020", "M-Pesa disbursement float", "asset", "D", True),
    ("1100", "Loans receivable (control)", "asset", "D", False),
    ("1200", "Interest receivable", "asset", "D", False),
    ("1300", "Loan-loss provision", "asset", "C", False),
    ("2200", "Suspense", "liability", "C", True),
    ("2300", "Interest payable", "liability", "C", False),
    ("2400", "Dividends payable", "liability", "C", False),
    ("2500", "Withholding tax", "liability", "C", False),
    ("3100", "Reserves", "equity", "C", False),
    ("3200", "Retained earnings", "equity", "C", False),
    ("4000", "Loan interest income", "income", "C", True),
    ("4100", "Fee income", "income", "C", True),
    ("4200", "Penalty income", "income", "C", True),
    ("5000", "Interest on deposits", "expense", "D", False),
    ("5100", "Provisions expense", "expense", "D", False),
    ("5200", "M-Pesa charges", "expense", "D", True),
]

PG_TRIGGERS = [
    # An entry whose postings do not sum to zero (or has fewer than two) is refused at
    # COMMIT, whatever code wrote it (django-hordak's deferred constraint trigger).
    """
    CREATE FUNCTION ledger_check_entry_balanced() RETURNS trigger AS $$
    DECLARE total bigint; legs integer;
    BEGIN
        SELECT COALESCE(SUM(amount_cents), 0), COUNT(*) INTO total, legs
          FROM postings WHERE entry_id = NEW.entry_id;
        IF total <> 0 OR legs < 2 THEN
            RAISE EXCEPTION 'unbalanced_entry: entry % sums to % over % postings',
                NEW.entry_id, total, legs USING ERRCODE = '23514';
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced()
    """,
    # Written history never changes: corrections are reversing entries.
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'immutable: % rows are never updated or deleted', TG_TABLE_NAME
            USING ERRCODE = '42501';
    END $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings "
    "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE ON journal_entries "
    "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
]


def upgrade() -> None:
    op.create_table(
        "journal_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("memo", sa.String(length=160), nullable=False),
        sa.Column(
            "reverses_entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_journal_entries_reverses_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_journal_entries_idempotency_key")),
        sa.UniqueConstraint("reference", name=op.f("uq_journal_entries_reference")),
        sa.UniqueConstraint("reverses_entry_id", name=op.f("uq_journal_entries_reverses_entry_id")),
    )
    op.create_table(
        "members",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("member_number", sa.String(length=12), nullable=True),
        sa.Column("full_name", sa.String(length=120), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("national_id_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("national_id_index", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consent_version", sa.String(length=16), nullable=False),
        sa.Column("pin_hash", sa.Text(), nullable=True),
        sa.Column("pin_set_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pin_failed_count", sa.Integer(), nullable=False),
        sa.Column("pin_lockouts", sa.Integer(), nullable=False),
        sa.Column("pin_locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pin_blocked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("language IN ('en', 'sw')", name=op.f("ck_members_language")),
        sa.CheckConstraint(
            "status IN ('pending_kyc', 'active', 'suspended', 'exited')",
            name=op.f("ck_members_status"),
        ),
        sa.CheckConstraint("pin_failed_count >= 0", name=op.f("ck_members_pin_failed_count")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("member_number", name=op.f("uq_members_member_number")),
        sa.UniqueConstraint("msisdn", name=op.f("uq_members_msisdn")),
        sa.UniqueConstraint("national_id_index", name=op.f("uq_members_national_id_index")),
    )
    op.create_table(
        "accounts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("normal_side", sa.String(length=1), nullable=False),
        sa.Column("purpose", sa.String(length=24), nullable=False),
        sa.Column("no_overdraft", sa.Boolean(), nullable=False),
        sa.Column("is_hot", sa.Boolean(), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("balance_cents", sa.BigInteger(), nullable=False),
        sa.Column("held_cents", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("normal_side IN ('D', 'C')", name=op.f("ck_accounts_normal_side")),
        sa.CheckConstraint(
            "type IN ('asset', 'liability', 'equity', 'income', 'expense')",
            name=op.f("ck_accounts_type"),
        ),
        sa.CheckConstraint(
            "(NOT no_overdraft) OR (balance_cents - held_cents >= 0)",
            name=op.f("ck_accounts_no_overdraft"),
        ),
        sa.CheckConstraint("held_cents >= 0", name=op.f("ck_accounts_held_not_negative")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_accounts_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_accounts_code")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_member_id"), ["member_id"], unique=False)

    op.create_table(
        "holds",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("posted_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.String(length=160), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'posted', 'released')", name=op.f("ck_holds_status")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_holds_positive")),
        sa.CheckConstraint(
            "posted_cents >= 0 AND posted_cents <= amount_cents",
            name=op.f("ck_holds_posted_within"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_holds_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_holds_entry_id_journal_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_holds_idempotency_key")),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index("ix_holds_account_id_status", ["account_id", "status"], unique=False)

    op.create_table(
        "postings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_cents <> 0", name=op.f("ck_postings_nonzero")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_postings_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_postings_entry_id_journal_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.create_index("ix_postings_account_id_id", ["account_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_postings_entry_id"), ["entry_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_TRIGGERS:
            op.execute(statement)

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
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        accounts,
        [
            {
                "code": code,
                "name": name,
                "type": type_,
                "normal_side": side,
                "purpose": "system",
                "no_overdraft": False,
                "is_hot": hot,
                "balance_cents": 0,
                "held_cents": 0,
                "created_at": now,
            }
            for code, name, type_, side, hot in CHART
        ],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS journal_entries_immutable ON journal_entries")
        op.execute("DROP TRIGGER IF EXISTS postings_immutable ON postings")
        op.execute("DROP TRIGGER IF EXISTS postings_balanced ON postings")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS ledger_check_entry_balanced()")
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postings_entry_id"))
        batch_op.drop_index("ix_postings_account_id_id")

    op.drop_table("postings")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_account_id_status")

    op.drop_table("holds")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_member_id"))

    op.drop_table("accounts")
    op.drop_table("members")
    op.drop_table("journal_entries")
