"""Merge the parallel branches of 0002: USSD events (0003), notifications (0004),
staff back office (0005) and M-Pesa (0006). No schema change: one head again.

Revision ID: 0007
Revises: 0003, 0004, 0005, 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

revision = "0007"
down_revision = ("0003", "0004", "0005", "0006")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
