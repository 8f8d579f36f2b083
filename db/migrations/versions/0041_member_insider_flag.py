"""Reports (issue 16): the insider flag on members and the report jobs.

* ``members.insider``: staff and board members flagged on the member record (part 2;
  docs/reports/portfolio.md, "Insider loans").
* ``report_jobs``: a large report asked over the API, run by a worker, its file kept for
  download (docs/reports/index.md, "Over the API").

``members.insider``: ``staff``, ``board`` or NULL (not an insider). Set by staff through
``PUT /api/v1/members/{id}/insider`` (audited) and read by the insider-loans report.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("insider", sa.String(8), nullable=True))
        batch.create_check_constraint(op.f("ck_members_insider"), "insider IN ('staff', 'board')")
    op.create_table(
        "report_jobs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("report", sa.String(48), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("requested_by", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("file_name", sa.String(120), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_report_jobs_status")
        ),
        sa.CheckConstraint("format IN ('csv', 'json', 'xlsx')", name=op.f("ck_report_jobs_format")),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["staff_users.id"],
            name=op.f("fk_report_jobs_requested_by_staff_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_jobs")),
    )


def downgrade() -> None:
    op.drop_table("report_jobs")
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint(op.f("ck_members_insider"), type_="check")
        batch.drop_column("insider")
