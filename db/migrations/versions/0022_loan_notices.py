"""Close of day's reminders and notices, and the credit-bureau listing marks (issue 13,
parts 6 and 9; docs/loans/close-of-day.md).

* ``loan_notices``: one row per notice a loan's close of day sent (or decided to send):
  the loan, who it went to (the borrower or a guarantor), its kind, the instalment it is
  about (0 when it is about the loan as a whole: the pre-listing notice) and the business
  date of the run. Unique on (loan, kind, instalment, recipient): the step inserts with
  ``ON CONFLICT DO NOTHING`` and queues an SMS only for the rows it inserted, so a run
  twice sends nothing twice. ``outbox_key`` is the outbox row's business key.
* ``loan_bureau_marks``: per loan, the date of its pre-listing notice and whether it would
  be listed as negative information (arrears above the threshold and the notice period
  over), as of ``marked_on``; the bureau file itself is another issue's.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = (
    "('due_soon', 'due_today', 'overdue_1', 'overdue_7', 'overdue_30', 'guarantor_30', "
    "'pre_listing')"
)


def upgrade() -> None:
    op.create_table(
        "loan_notices",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("instalment_number", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("outbox_key", sa.String(length=80), nullable=False),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f("ck_loan_notices_kind")),
        sa.CheckConstraint("instalment_number >= 0", name=op.f("ck_loan_notices_instalment")),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_notices_loan_id_loans")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_loan_notices_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_notices")),
        sa.UniqueConstraint(
            "loan_id", "kind", "instalment_number", "member_id", name="uq_loan_notices_once"
        ),
    )
    op.create_index("ix_loan_notices_date", "loan_notices", ["business_date"])
    op.create_table(
        "loan_bureau_marks",
        sa.Column("loan_id", ID, nullable=False),
        sa.Column("notice_on", sa.Date(), nullable=True),
        sa.Column("listable", sa.Boolean(), nullable=False),
        sa.Column("listable_since", sa.Date(), nullable=True),
        sa.Column("arrears_cents", sa.BigInteger(), nullable=False),
        sa.Column("marked_on", sa.Date(), nullable=False),
        sa.CheckConstraint("arrears_cents >= 0", name=op.f("ck_loan_bureau_marks_arrears")),
        sa.CheckConstraint(
            "NOT listable OR (notice_on IS NOT NULL AND listable_since IS NOT NULL)",
            name=op.f("ck_loan_bureau_marks_noticed"),
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_bureau_marks_loan_id_loans")
        ),
        sa.PrimaryKeyConstraint("loan_id", name=op.f("pk_loan_bureau_marks")),
    )


def downgrade() -> None:
    op.drop_table("loan_bureau_marks")
    op.drop_index("ix_loan_notices_date", table_name="loan_notices")
    op.drop_table("loan_notices")
