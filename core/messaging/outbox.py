"""Delivering the outbox: claim, record, retry with backoff, sweep, delivery reports.

The life of a message::

    pending --claim--> sending --accepted--> sent --report Success--> delivered
       ^                  |  \\--permanent failure / attempts used up--> failed
       |                  |
       +--transient (backoff) or report of a retryable failure (new attempt)
       +--sweeper: claimed longer than the claim timeout (the worker died)

Every state change is one guarded UPDATE, so two workers, the sweeper and a
delivery report can race without a message being sent twice by us. The one
duplicate we cannot prevent: the gateway accepted a message and the worker
died before committing that fact; after the claim timeout the sweeper makes it
pending again and it is sent a second time (at most once per lost worker).

Transports (SMS gateway, SMTP, webhook HTTP) live outside core/; a worker calls
``claim_message``, sends, and hands the outcome to ``record_attempt``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session

from core.messaging.notifications import REDACTED_BODY, SECRET_TEMPLATES
from core.messaging.vocabulary import OutboxStatus
from db.models import OutboxAttempt, OutboxMessage, SmsDeliveryReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    max_attempts: int = 8
    backoff_base_s: float = 30.0
    backoff_max_s: float = 3600.0
    claim_timeout_s: float = 120.0  # must exceed the longest send (transport timeout)
    batch: int = 500

    @classmethod
    def from_settings(cls, settings: Any) -> OutboxPolicy:
        """From ``config.Settings`` (read by attribute; core does not import config)."""
        return cls(
            max_attempts=settings.outbox_max_attempts,
            backoff_base_s=settings.outbox_backoff_base_s,
            backoff_max_s=settings.outbox_backoff_max_s,
            claim_timeout_s=settings.outbox_claim_timeout_s,
        )


def backoff_seconds(attempts: int, policy: OutboxPolicy) -> float:
    """Delay before the next try after ``attempts`` tries: base * 2^(attempts-1), capped."""
    exponent = max(0, min(attempts - 1, 30))
    return float(min(policy.backoff_max_s, policy.backoff_base_s * (2**exponent)))


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    channel: str
    recipient: str
    body: str
    subject: str | None
    endpoint_id: int | None
    template: str
    attempt: int
    claimed_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What a transport says about one try (SMS gateway, SMTP server, webhook receiver)."""

    accepted: bool
    retryable: bool
    provider_message_id: str | None = None
    cost_cents: int | None = None
    status_code: int | None = None
    detail: str | None = None


def _body_once_done() -> ColumnElement[str]:
    """The body to keep once a message is sent or given up: a secret-bearing one
    (``core.messaging.notifications.SECRET_TEMPLATES``) is redacted, any other is kept."""
    return case(
        (OutboxMessage.template.in_(SECRET_TEMPLATES), REDACTED_BODY),
        else_=OutboxMessage.body,
    )


def claim_message(session: Session, message_id: int, now: datetime) -> Claimed | None:
    """Take a due pending message for sending, atomically; None if someone else has it,
    it is not due, or it is already done. Opens its attempt in the log."""
    row = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at <= now,
        )
        .values(status=OutboxStatus.SENDING, claimed_at=now, attempts=OutboxMessage.attempts + 1)
        .returning(
            OutboxMessage.id,
            OutboxMessage.channel,
            OutboxMessage.recipient,
            OutboxMessage.body,
            OutboxMessage.subject,
            OutboxMessage.endpoint_id,
            OutboxMessage.template,
            OutboxMessage.attempts,
        )
    ).one_or_none()
    if row is None:
        return None
    session.add(OutboxAttempt(message_id=row.id, attempt=row.attempts, started_at=now))
    session.flush()
    return Claimed(
        id=row.id,
        channel=row.channel,
        recipient=row.recipient,
        body=row.body,
        subject=row.subject,
        endpoint_id=row.endpoint_id,
        template=row.template,
        attempt=row.attempts,
        claimed_at=now,
    )


def _close_attempt(
    session: Session, claimed: Claimed, status: str, result: AttemptResult, now: datetime
) -> None:
    session.execute(
        update(OutboxAttempt)
        .where(
            OutboxAttempt.message_id == claimed.id,
            OutboxAttempt.attempt == claimed.attempt,
        )
        .values(
            status=status,
            provider_message_id=result.provider_message_id,
            status_code=result.status_code,
            detail=(result.detail or "")[:200] or None,
            cost_cents=result.cost_cents,
            finished_at=now,
        )
    )


def record_attempt(
    session: Session,
    claimed: Claimed,
    result: AttemptResult,
    policy: OutboxPolicy,
    now: datetime,
) -> str:
    """Store the outcome of a claimed send; returns the message's new status.

    Accepted: ``sent`` (``delivered`` for a webhook, whose 2xx is the delivery),
    even if the sweeper meanwhile made it pending or failed (a slow, not dead,
    worker: recording it stops a second send and tells the truth). Refused: back to ``pending``
    after a backoff while attempts remain and the failure is transient, else
    ``failed``.
    """
    if result.accepted:
        status = OutboxStatus.DELIVERED if claimed.channel == "webhook" else OutboxStatus.SENT
        done = session.scalar(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == claimed.id,
                # pending/failed: the sweeper gave this slow (not dead) worker up
                OutboxMessage.status.in_(
                    (OutboxStatus.SENDING, OutboxStatus.PENDING, OutboxStatus.FAILED)
                ),
            )
            .values(
                status=status,
                body=_body_once_done(),
                provider_message_id=result.provider_message_id,
                cost_cents=result.cost_cents,
                sent_at=now,
                delivered_at=now if status == OutboxStatus.DELIVERED else None,
                claimed_at=None,
                last_error=None,
            )
            .returning(OutboxMessage.id)
        )
        _close_attempt(session, claimed, "accepted", result, now)
        session.flush()
        if done is None:
            log.warning("outbox %s: accepted again after another attempt finished", claimed.id)
        if result.provider_message_id:
            apply_pending_reports(session, policy, now, result.provider_message_id)
        return status
    retry = result.retryable and claimed.attempt < policy.max_attempts
    status = OutboxStatus.PENDING if retry else OutboxStatus.FAILED
    values: dict[str, object] = {
        "status": status,
        "claimed_at": None,
        "last_error": (result.detail or "refused")[:200],
    }
    if retry:
        values["next_attempt_at"] = now + timedelta(
            seconds=backoff_seconds(claimed.attempt, policy)
        )
    else:
        values["body"] = _body_once_done()
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == claimed.id,
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.claimed_at == claimed.claimed_at,
        )
        .values(**values)
    )
    _close_attempt(session, claimed, "retry" if retry else "failed", result, now)
    session.flush()
    return status


# ------------------------------------------------------------------ delivery reports

# Africa's Talking failureReason values a later attempt can fix (the phone was off or
# out of coverage, the network hiccuped). The rest (UserInBlackList,
# UserDoesNotExist, UserAccountSuspended, NotNetworkSubscriber, InvalidLinkId,
# UserNotSubscribedToProduct, InsufficientCredit, ...) fail the same way every time.
RETRYABLE_REASONS = frozenset(
    {"DeliveryFailure", "AbsentSubscriber", "UserIsInactive", "SystemError", "NetworkError"}
)
FINAL_SUCCESS = "Success"
FINAL_FAILURES = frozenset({"Failed", "Rejected"})
INTERMEDIATE = frozenset({"Sent", "Submitted", "Buffered"})
REPORT_STATUSES = INTERMEDIATE | FINAL_FAILURES | {FINAL_SUCCESS}


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    provider_message_id: str
    status: str
    failure_reason: str | None = None
    retry_count: int | None = None
    network_code: str | None = None
    phone_number: str | None = None


def receive_delivery_report(
    session: Session, report: DeliveryReport, policy: OutboxPolicy, now: datetime
) -> bool:
    """Store a report, then apply it if its message is known.

    Returns True if it was applied now; False if it waits for its message (the
    report outran the worker's record of the send: the worker or the sweeper
    applies it later, nothing is lost).
    """
    if report.status not in REPORT_STATUSES:
        raise ValueError(f"unknown delivery status {report.status!r}")
    stored = SmsDeliveryReport(
        provider_message_id=report.provider_message_id,
        status=report.status,
        failure_reason=report.failure_reason,
        retry_count=report.retry_count,
        network_code=report.network_code,
        phone_number=report.phone_number,
        received_at=now,
    )
    session.add(stored)
    session.flush()
    applied = _apply(session, stored, policy, now)
    session.flush()
    return applied


def apply_pending_reports(
    session: Session, policy: OutboxPolicy, now: datetime, provider_message_id: str | None = None
) -> int:
    """Apply stored reports whose message is now known (oldest first)."""
    query = (
        select(SmsDeliveryReport)
        .where(SmsDeliveryReport.applied_at.is_(None))
        .order_by(SmsDeliveryReport.id)
        .limit(policy.batch)
        .with_for_update(skip_locked=True)
    )
    if provider_message_id is not None:
        query = query.where(SmsDeliveryReport.provider_message_id == provider_message_id)
    applied = sum(_apply(session, r, policy, now) for r in session.scalars(query).all())
    session.flush()
    return applied


def _apply(
    session: Session, report: SmsDeliveryReport, policy: OutboxPolicy, now: datetime
) -> bool:
    attempt = session.scalars(
        select(OutboxAttempt).where(OutboxAttempt.provider_message_id == report.provider_message_id)
    ).first()
    if attempt is None:
        return False
    message = session.scalars(
        select(OutboxMessage).where(OutboxMessage.id == attempt.message_id).with_for_update()
    ).one()
    report.message_id = message.id
    report.applied_at = now
    current = message.provider_message_id == report.provider_message_id
    if report.status == FINAL_SUCCESS:
        # Delivered, whichever attempt it was: stop any retry that is queued.
        if message.status in (OutboxStatus.SENT, OutboxStatus.PENDING, OutboxStatus.FAILED):
            message.status = OutboxStatus.DELIVERED
            message.delivered_at = now
            message.last_error = None
        return True
    if report.status in INTERMEDIATE or not current or message.status != OutboxStatus.SENT:
        return True  # progress only, an older attempt, or already settled
    reason = report.failure_reason or report.status
    message.last_error = f"{report.status}: {reason}"[:200]
    if message.template in SECRET_TEMPLATES:
        # Its text was redacted when the gateway took it: never resend the placeholder.
        message.status = OutboxStatus.FAILED
        message.last_error = f"{report.status}: {reason}"[:120] + (
            "; not resent (its one-time code is redacted): issue a new code"
        )
    elif reason in RETRYABLE_REASONS and message.attempts < policy.max_attempts:
        message.status = OutboxStatus.PENDING
        message.next_attempt_at = now + timedelta(seconds=backoff_seconds(message.attempts, policy))
    else:
        message.status = OutboxStatus.FAILED
    return True


# ------------------------------------------------------------------------ sweeping


@dataclass(frozen=True, slots=True)
class SweepResult:
    reclaimed: list[int]  # left "sending" by a dead worker, made pending again
    given_up: list[int]  # left "sending" with no attempts left: failed
    due: list[int]  # pending and due: to enqueue
    reports_applied: int


def sweep(session: Session, policy: OutboxPolicy, now: datetime) -> SweepResult:
    """Recover from dead workers and lost jobs; list what is due.

    A message claimed longer than ``claim_timeout_s`` ago belongs to a worker
    that died (a live one finishes within the transport timeout): its attempt
    is marked abandoned and it is pending again at once (or failed when it has
    no attempts left). Due pending messages are returned for the caller to
    enqueue: those whose enqueue was lost (Redis down at commit) and those whose
    backoff has elapsed.
    """
    stale = now - timedelta(seconds=policy.claim_timeout_s)
    stuck = OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.claimed_at < stale
    reclaimed = list(
        session.scalars(
            update(OutboxMessage)
            .where(*stuck, OutboxMessage.attempts < policy.max_attempts)
            .values(
                status=OutboxStatus.PENDING,
                claimed_at=None,
                next_attempt_at=now,
                last_error="worker lost during send",
            )
            .returning(OutboxMessage.id)
        )
    )
    given_up = list(
        session.scalars(
            update(OutboxMessage)
            .where(*stuck)
            .values(
                status=OutboxStatus.FAILED,
                body=_body_once_done(),
                claimed_at=None,
                last_error="worker lost during send",
            )
            .returning(OutboxMessage.id)
        )
    )
    if reclaimed or given_up:
        session.execute(
            update(OutboxAttempt)
            .where(
                OutboxAttempt.message_id.in_(reclaimed + given_up),
                OutboxAttempt.status == "sending",
            )
            .values(status="abandoned", finished_at=now, detail="worker lost during send")
        )
        log.warning("outbox: reclaimed %s, failed %s from dead workers", reclaimed, given_up)
    session.flush()
    reports = apply_pending_reports(session, policy, now)
    due = list(
        session.scalars(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(policy.batch)
        )
    )
    return SweepResult(sorted(reclaimed), sorted(given_up), due, reports)


# --------------------------------------------------------------------- staff views


def failed_messages(session: Session, *, limit: int = 100) -> list[OutboxMessage]:
    """Messages that will not be tried again, newest first (for staff to act on)."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.FAILED)
            .order_by(OutboxMessage.id.desc())
            .limit(max(1, min(limit, 1000)))
        )
    )


def outbox_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


def retry_failed(session: Session, message_id: int, now: datetime) -> bool:
    """Staff action: give a failed message one more attempt now.

    Not for a secret-bearing message: its text is redacted; issue a new code instead."""
    done = session.scalar(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == OutboxStatus.FAILED,
            OutboxMessage.template.not_in(SECRET_TEMPLATES),
        )
        .values(
            status=OutboxStatus.PENDING, next_attempt_at=now, attempts=OutboxMessage.attempts - 1
        )
        .returning(OutboxMessage.id)
    )
    session.flush()
    return done is not None


__all__ = [
    "AttemptResult",
    "Claimed",
    "DeliveryReport",
    "OutboxPolicy",
    "SweepResult",
    "apply_pending_reports",
    "backoff_seconds",
    "claim_message",
    "failed_messages",
    "outbox_counts",
    "receive_delivery_report",
    "record_attempt",
    "retry_failed",
    "sweep",
]
