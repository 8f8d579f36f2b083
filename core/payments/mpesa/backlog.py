"""What the M-Pesa side still owes: callbacks acknowledged but not applied, STK pushes and
payouts without a final outcome, each with its count and the age of its oldest row.

Reconciliation (``workers.mpesa.reconcile_pending``, every ``MPESA_RECONCILE_INTERVAL_S``)
heals most of these by itself; a count that grows or an oldest age beyond a few
reconciliation rounds means it is not keeping up (Daraja down, a callback that fails every
replay, a payout only staff can settle). ``manage.py backlog`` prints it; a monitoring
exporter reads the same rows as gauges (count and oldest age per line).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.payments.mpesa.vocabulary import CallbackStatus, PayoutStatus, StkStatus
from db.models_mpesa import B2CPayout, MpesaCallback, StkRequest

# The states that are still waiting, per table (final states are not backlog).
CALLBACKS_WAITING = (CallbackStatus.RECEIVED, CallbackStatus.ERROR)
STK_WAITING = (StkStatus.QUEUED, StkStatus.SENDING, StkStatus.PENDING, StkStatus.UNKNOWN)
PAYOUTS_WAITING = (
    PayoutStatus.REQUESTED,
    PayoutStatus.SENDING,
    PayoutStatus.SENT,
    PayoutStatus.UNKNOWN,
    PayoutStatus.REVIEW,  # waiting for staff (docs/operators/runbooks.md)
)


@dataclass(frozen=True, slots=True)
class BacklogLine:
    """One waiting state: ``what`` is ``callbacks``, ``stk`` or ``payouts``."""

    what: str
    status: str
    count: int
    oldest_age_s: float | None  # None when the count is 0

    @property
    def name(self) -> str:
        return f"{self.what}.{self.status}"


def mpesa_backlog(session: Session, now: datetime) -> list[BacklogLine]:
    """Every waiting state of every table, zeros included (a gauge must not vanish)."""
    tables = (
        ("callbacks", MpesaCallback.status, MpesaCallback.received_at, CALLBACKS_WAITING),
        ("stk", StkRequest.status, StkRequest.created_at, STK_WAITING),
        ("payouts", B2CPayout.status, B2CPayout.created_at, PAYOUTS_WAITING),
    )
    lines = []
    for what, status, since, waiting in tables:
        found = {
            str(row[0]): (int(row[1]), row[2])
            for row in session.execute(
                select(status, func.count(), func.min(since))
                .where(status.in_(waiting))
                .group_by(status)
            )
        }
        for state in waiting:
            count, oldest = found.get(str(state), (0, None))
            age = None if oldest is None else max(0.0, (now - oldest).total_seconds())
            lines.append(BacklogLine(what, str(state), count, age))
    return lines


__all__ = ["BacklogLine", "mpesa_backlog"]
