"""Report jobs (issue 16; migration 0041; docs/reports/index.md): a large report asked over
the staff API, run by a worker after the request's commit, its file kept for download."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId, UTCDateTime


class ReportJob(Base):
    __tablename__ = "report_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        CheckConstraint("format IN ('csv', 'json', 'xlsx')", name="format"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    report: Mapped[str] = mapped_column(String(48))
    params: Mapped[str] = mapped_column(Text)  # canonical JSON of what was asked
    format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10))
    requested_by: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    file_name: Mapped[str | None] = mapped_column(String(120), default=None)
    content: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    error: Mapped[str | None] = mapped_column(String(300), default=None)
