"""The M-Pesa jobs core asks for: typed, ids only, handed to the job queue after commit.

A use case defers one (``uow.defer(session, SendB2C(payout_id))``); the composition
root's queue maps each type to its worker function (``workers.runner.JOBS``). Sending
again is always safe: the worker claims only a request still waiting to be sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.kernel.uow import Job


@dataclass(frozen=True)
class SendStkPush(Job):
    """Send the STK push of a ``queued`` deposit request."""

    request_id: int


@dataclass(frozen=True)
class SendB2C(Job):
    """Send a ``requested`` payout to Daraja."""

    payout_id: int


@dataclass(frozen=True)
class QueryB2CStatus(Job):
    """Ask Daraja what became of a payout whose result never came."""

    payout_id: int


@dataclass(frozen=True)
class ReconcilePending(Job):
    """Move on every M-Pesa request left waiting (the scheduler's periodic job)."""
