"""Notifications as outbox rows, written in the caller's transaction.

``notify`` renders the template in the member's language and inserts one
``outbox_messages`` row keyed by ``business_key``: the row exists exactly when
the business change commits, and the same event never queues twice. Delivery
(workers, retries, the SMS gateway) reads the outbox; nothing here sends.

After commit: every message id queued in a session is remembered in
``session.info``; ``install_dispatch`` (called once by the composition root on
the session factory) hands those ids to a dispatcher right after the commit
(RQ enqueue, or in-process delivery in the demo). If that hand-off fails
(Redis down), the rows are still there: the sweeper finds them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.gsm import SmsLength, sms_length, to_gsm7
from core.kernel.i18n import Catalogue
from core.messaging.vocabulary import OutboxStatus
from db.models import Member, OutboxMessage, SmsOptOut
from db.session import insert_for

CATALOGUES = Path(__file__).resolve().parent / "catalogues"
SMS = Catalogue(CATALOGUES, "sms")
NAIROBI = ZoneInfo("Africa/Nairobi")
CATEGORIES = ("transactional", "promotional")
FIRST_NAME_MAX = 15  # templates reserve 15 characters for a first name
_PENDING_KEY = "sacco.outbox_pending_ids"
# Templates whose text carries a secret (a one-time code): the one place that says so.
# Their body is redacted once the gateway has taken the message or it is given up
# (``core.messaging.outbox``), so the code does not stay in the database and its backups.
SECRET_TEMPLATES = frozenset({"pin_reset_code"})
REDACTED_BODY = "[redacted: this message carried a one-time code]"
log = logging.getLogger(__name__)


class Term(str):
    """A placeholder value that is a catalogue word (``term_<value>``), rendered in the
    message's language: ``Term("savings")`` is "savings" in English, "akiba" in Swahili."""


def first_name(full_name: str) -> str:
    name = full_name.split(" ")[0] if full_name else ""
    return name[:FIRST_NAME_MAX]


def sms_datetime(moment: datetime) -> str:
    """``27/11 14:05`` in Nairobi time: how a date fits on a feature phone."""
    return moment.astimezone(NAIROBI).strftime("%d/%m %H:%M")


def sms_time(moment: datetime) -> str:
    """``14:05`` in Nairobi time (e.g. ``until`` in ``pin_locked``: locks last minutes)."""
    return moment.astimezone(NAIROBI).strftime("%H:%M")


def render_sms(template: str, language: str, data: Mapping[str, Any] | None = None) -> str:
    values = {
        key: SMS.text(f"term_{value}", language) if isinstance(value, Term) else value
        for key, value in (data or {}).items()
    }
    return to_gsm7(SMS.render(template, language, values))


def measure(body: str) -> SmsLength:
    return sms_length(body)


def _queue(session: Session, values: dict[str, Any], now: datetime) -> OutboxMessage:
    """Insert the row once per business key, stamped (and due) at ``now``, the use
    case's clock: core never stamps with the wall clock."""
    values = {
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        **values,
    }
    # One statement when the key is new (the row comes back from the INSERT); a second
    # only when it was queued before and the INSERT did nothing.
    message = session.scalars(
        insert_for(session, OutboxMessage)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["business_key"])
        .returning(OutboxMessage),
        execution_options={"populate_existing": True},
    ).one_or_none()
    if message is None:
        message = session.execute(
            select(OutboxMessage).where(OutboxMessage.business_key == values["business_key"])
        ).scalar_one()
    if message.status == OutboxStatus.PENDING:
        session.info.setdefault(_PENDING_KEY, set()).add(message.id)
    return message


def is_opted_out(session: Session, msisdn: str) -> bool:
    return session.get(SmsOptOut, msisdn) is not None


def notify(
    session: Session,
    *,
    template: str,
    business_key: str,
    now: datetime,
    data: Mapping[str, Any] | None = None,
    member: Member | None = None,
    msisdn: str | None = None,
    language: str | None = None,
    category: str = "transactional",
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Queue an SMS to a member (or a bare number).

    A promotional message to a number that sent STOP is recorded ``cancelled``
    (so staff can see why it never went); transactional messages always go.
    ``not_before`` (later than ``now``) holds it back until then: the sweeper sends it
    once it is due (close of day's reminders wait for the morning).
    """
    recipient = member.msisdn if member is not None else msisdn
    if not recipient:
        raise ValueError("notify needs a member or a phone number")
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}")
    lang = language or (member.language if member is not None else "en")
    body = render_sms(template, lang, data)
    values: dict[str, Any] = {
        "business_key": business_key,
        "channel": "sms",
        "category": category,
        "recipient": recipient,
        "member_id": member.id if member is not None else None,
        "template": template,
        "language": lang,
        "body": body,
        "parts": measure(body).parts,
    }
    if not_before is not None and not_before > now:
        values["next_attempt_at"] = not_before
    if category == "promotional" and is_opted_out(session, recipient):
        values.update(status=OutboxStatus.CANCELLED, last_error="recipient sent STOP")
    return _queue(session, values, now)


def notify_email(
    session: Session,
    *,
    to: str,
    subject: str,
    body: str,
    business_key: str,
    now: datetime,
    template: str = "staff_email",
) -> OutboxMessage:
    """Queue an e-mail (staff alerts, reports)."""
    if "@" not in to or any(c in to for c in "\r\n,;<>") or len(to) > 320:
        raise ValueError("not a single e-mail address")
    return _queue(
        session,
        {
            "business_key": business_key,
            "channel": "email",
            "category": "transactional",
            "recipient": to,
            "template": template,
            "language": "en",
            "subject": " ".join(subject.split())[:200],
            "body": body,
        },
        now,
    )


def queue_webhook(
    session: Session,
    *,
    endpoint_id: int,
    url: str,
    event_type: str,
    body: str,
    business_key: str,
    now: datetime,
) -> OutboxMessage:
    """Queue one signed webhook delivery (see ``core.messaging.webhooks.publish_event``)."""
    return _queue(
        session,
        {
            "business_key": business_key,
            "channel": "webhook",
            "category": "transactional",
            "recipient": url,
            "endpoint_id": endpoint_id,
            "template": event_type[:64],
            "language": "en",
            "body": body,
        },
        now,
    )


def take_pending_ids(session: Session) -> list[int]:
    """The outbox ids queued in this session since the last call (and forget them)."""
    ids = session.info.pop(_PENDING_KEY, None)
    return sorted(ids) if ids else []


Dispatch = Callable[[list[int]], None]


def install_dispatch(factory: sessionmaker[Session], dispatch: Dispatch) -> None:
    """Hand the ids of messages queued in a session to ``dispatch`` right after it commits.

    Registered once by the composition root on the runtime's session factory, so
    every channel (USSD, SMS, API, workers) gets it without doing anything. A
    rollback forgets the ids (the rows are gone too). ``dispatch`` must not raise;
    if it does, the error is logged and the sweeper picks the rows up later.
    """

    def after_commit(session: Session) -> None:
        ids = take_pending_ids(session)
        if not ids:
            return
        try:
            dispatch(ids)
        except Exception:  # never fail a committed business change over a queue
            log.exception("dispatch of outbox messages %s failed; the sweeper will retry", ids)

    def after_rollback(session: Session) -> None:
        session.info.pop(_PENDING_KEY, None)

    event.listen(factory, "after_commit", after_commit)
    event.listen(factory, "after_rollback", after_rollback)


@dataclass(frozen=True)
class QueuedMessage:
    """One message queued for a phone, as a simulator or a support screen shows it."""

    id: int
    recipient: str
    template: str
    language: str
    body: str
    status: str
    created_at: datetime


def messages_for(session: Session, msisdn: str, limit: int = 20) -> list[QueuedMessage]:
    """The newest SMS queued for ``msisdn`` (E.164), newest first, at most ``limit``."""
    limit = max(1, min(limit, 100))
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.channel == "sms", OutboxMessage.recipient == msisdn)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return [
        QueuedMessage(
            id=row.id,
            recipient=row.recipient,
            template=row.template,
            language=row.language,
            body=row.body,
            status=row.status,
            created_at=row.created_at,
        )
        for row in rows
    ]
