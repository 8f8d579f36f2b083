"""Delivering the outbox: claim, record, retry with backoff, sweep, delivery reports.

The life of a message::

    pending --claim--> sending --accepted--> sent --report Success--> delivered
       ^                  |  \\--permanent failure / attempts used up--> failed
       |                  |
       +--transient (backoff) or report of a retryable failure (new attempt)
       +--sweeper: claimed longer than the claim timeout (the worker died)

Every state change is one guarded UPDATE, so two workers, the sweeper and a
delivery report can race without a message being sent twice by us. The one
duplicate we cannot always prevent: the gateway accepted a message and the worker
died before committing that fact; after the claim timeout the sweeper makes it
pending again and it is sent a second time (at most once per lost worker), unless
the gateway's delivery report for the first copy has arrived by then and can be
matched to it safely (``adopt_report``: same phone, after the attempt started, the
only candidate both ways), which is applied instead of re-sending.

Transports (SMS gateway, SMTP, webhook HTTP) live outside core/; a worker calls
``claim_message``, sends, and hands the outcome to ``record_attempt``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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
    # A report matching no message after this long is set aside (``unmatched_at``).
    report_unmatched_after_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Any) -> OutboxPolicy:
        """From ``config.Settings`` (read by attribute; core does not import config)."""
        return cls(
            max_attempts=settings.outbox_max_attempts,
            backoff_base_s=settings.outbox_backoff_base_s,
            backoff_max_s=settings.outbox_backoff_max_s,
            claim_timeout_s=settings.outbox_claim_timeout_s,
            report_unmatched_after_s=settings.outbox_report_unmatched_after_s,
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
    business_key: str = ""  # what the message is about (a statement e-mail's period)


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
            OutboxMessage.business_key,
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
        business_key=row.business_key,
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


def store_delivery_report(session: Session, report: DeliveryReport, now: datetime) -> int:
    """Keep a report as received (before anything else: the edge commits this first and
    answers the gateway only once it is stored); returns its row id."""
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
    return stored.id


def apply_delivery_report(
    session: Session, report_id: int, policy: OutboxPolicy, now: datetime
) -> bool:
    """Apply one stored report if its message is known; True if applied (now or before).

    False: it waits for its message (the report outran the worker's record of the send:
    the worker or the sweeper applies it later, nothing is lost)."""
    stored = session.scalars(
        select(SmsDeliveryReport)
        .where(SmsDeliveryReport.id == report_id)
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if stored is None:  # someone else is applying it right now
        return False
    if stored.applied_at is not None:
        return True
    applied = _apply(session, stored, policy, now)
    session.flush()
    return applied


def receive_delivery_report(
    session: Session, report: DeliveryReport, policy: OutboxPolicy, now: datetime
) -> bool:
    """Store a report, then apply it if its message is known, in one transaction (see
    ``store_delivery_report`` and ``apply_delivery_report`` for the edge's two)."""
    return apply_delivery_report(session, store_delivery_report(session, report, now), policy, now)


def apply_pending_reports(
    session: Session, policy: OutboxPolicy, now: datetime, provider_message_id: str | None = None
) -> int:
    """Apply stored reports whose message is now known (oldest first).

    Only reports naming a provider id one of our attempts recorded are read, so however
    many strangers wait, every report that can be applied is (``age_out_reports`` sets
    the strangers aside, which keeps the scan short)."""
    known = select(OutboxAttempt.id).where(
        OutboxAttempt.provider_message_id == SmsDeliveryReport.provider_message_id
    )
    query = (
        select(SmsDeliveryReport)
        .where(SmsDeliveryReport.applied_at.is_(None), known.exists())
        .order_by(SmsDeliveryReport.id)
        .limit(policy.batch)
        .with_for_update(skip_locked=True, of=SmsDeliveryReport)
    )
    if provider_message_id is not None:
        query = query.where(SmsDeliveryReport.provider_message_id == provider_message_id)
    else:
        query = query.where(SmsDeliveryReport.unmatched_at.is_(None))
    applied = sum(_apply(session, r, policy, now) for r in session.scalars(query).all())
    session.flush()
    return applied


def age_out_reports(session: Session, policy: OutboxPolicy, now: datetime) -> int:
    """Set aside reports that matched no message for ``report_unmatched_after_s``
    (``unmatched_at``): kept for the record, no longer scanned. Returns how many."""
    cutoff = now - timedelta(seconds=policy.report_unmatched_after_s)
    aged = session.execute(
        update(SmsDeliveryReport)
        .where(
            SmsDeliveryReport.applied_at.is_(None),
            SmsDeliveryReport.unmatched_at.is_(None),
            SmsDeliveryReport.received_at < cutoff,
        )
        .values(unmatched_at=now)
    )
    return int(aged.rowcount or 0)  # type: ignore[attr-defined]


def _phone_forms(recipient: str) -> tuple[str, str]:
    """A recipient as Africa's Talking may write it in a report: ``+2547…`` or ``2547…``."""
    bare = recipient.removeprefix("+")
    return f"+{bare}", bare


def adopt_report(
    session: Session, message: OutboxMessage, policy: OutboxPolicy, now: datetime
) -> str | None:
    """Before a stuck SMS is sent again: is there a stored report for the copy its dead
    worker sent but never recorded? Returns the provider id adopted, or None.

    The gateway's message id is in its answer to the send; the worker died before
    recording it, so the report names an id no attempt of ours holds. It is matched to
    this message only when all of these hold, else the message is sent again (the one
    duplicate window, as before):

    * the report's phone is the message's recipient and it was received after the
      stuck attempt started (a report never precedes its send);
    * exactly one such unknown provider id exists for that phone (several: which one?);
    * no other message to that phone has an attempt with no recorded id that started
      before the report arrived, within ``report_unmatched_after_s`` (it could be
      that one's report).

    Adopting records the id on the attempt and the message (``sent``), then applies the
    report(s) as if the worker had recorded the send: ``Success`` -> delivered, a failure
    -> the usual retry or failure.
    """
    if message.channel != "sms":
        return None
    attempt = session.scalars(
        select(OutboxAttempt).where(
            OutboxAttempt.message_id == message.id,
            OutboxAttempt.attempt == message.attempts,
            OutboxAttempt.status == "sending",
        )
    ).one_or_none()
    if attempt is None:
        return None
    recorded = select(OutboxAttempt.provider_message_id).where(
        OutboxAttempt.provider_message_id.is_not(None)
    )
    candidates = session.execute(
        select(SmsDeliveryReport.provider_message_id, func.max(SmsDeliveryReport.received_at))
        .where(
            SmsDeliveryReport.applied_at.is_(None),
            SmsDeliveryReport.phone_number.in_(_phone_forms(message.recipient)),
            SmsDeliveryReport.received_at >= attempt.started_at,
            SmsDeliveryReport.provider_message_id.not_in(recorded),
        )
        .group_by(SmsDeliveryReport.provider_message_id)
    ).all()
    if len(candidates) != 1:
        return None
    provider_message_id: str = candidates[0][0]
    latest: datetime = candidates[0][1]
    window = timedelta(seconds=policy.report_unmatched_after_s)
    rivals = session.scalar(
        select(func.count())
        .select_from(OutboxAttempt)
        .join(OutboxMessage, OutboxMessage.id == OutboxAttempt.message_id)
        .where(
            OutboxMessage.recipient == message.recipient,
            OutboxMessage.channel == "sms",
            OutboxMessage.id != message.id,
            OutboxAttempt.provider_message_id.is_(None),
            OutboxAttempt.status.in_(("sending", "abandoned")),
            OutboxAttempt.started_at <= latest,
            OutboxAttempt.started_at >= latest - window,
        )
    )
    if rivals:
        return None
    attempt.status = "accepted"
    attempt.provider_message_id = provider_message_id
    attempt.finished_at = now
    attempt.detail = "worker lost after the send; matched to the gateway's delivery report"
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id)
        .values(
            status=OutboxStatus.SENT,
            body=_body_once_done(),
            provider_message_id=provider_message_id,
            sent_at=attempt.started_at,
            claimed_at=None,
            last_error=None,
        )
    )
    session.flush()
    session.expire(message)
    apply_pending_reports(session, policy, now, provider_message_id)
    log.warning(
        "outbox %s: its worker died after the send; delivery report %s adopted, not resent",
        message.id,
        provider_message_id,
    )
    return provider_message_id


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
    adopted: list[int] = field(default_factory=list)  # sent, shown by a stored report
    reports_unmatched: int = 0  # set aside this round: no message matched them in time


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
    adopted = [
        message.id
        for message in session.scalars(
            select(OutboxMessage)
            .where(*stuck, OutboxMessage.channel == "sms")
            .order_by(OutboxMessage.id)
            .limit(policy.batch)
            .with_for_update(skip_locked=True)
        ).all()
        if adopt_report(session, message, policy, now) is not None
    ]
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
    unmatched = age_out_reports(session, policy, now)
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
    return SweepResult(sorted(reclaimed), sorted(given_up), due, reports, adopted, unmatched)


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
    "adopt_report",
    "age_out_reports",
    "apply_delivery_report",
    "apply_pending_reports",
    "backoff_seconds",
    "claim_message",
    "failed_messages",
    "outbox_counts",
    "receive_delivery_report",
    "record_attempt",
    "retry_failed",
    "store_delivery_report",
    "sweep",
]
