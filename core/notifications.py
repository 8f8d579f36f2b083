"""Notifications as outbox rows, written in the caller's transaction.

``notify`` renders the template in the member's language and inserts one
``outbox_messages`` row keyed by ``business_key``: the row exists exactly when
the business change commits, and the same event never queues twice. Delivery
(workers, retries, the SMS gateway) reads the outbox; nothing here sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.i18n import CATALOGUES, Catalogue
from db.base import utcnow
from db.models import Member, OutboxMessage

SMS = Catalogue(CATALOGUES, "sms")


def notify(
    session: Session,
    *,
    template: str,
    business_key: str,
    data: Mapping[str, Any] | None = None,
    member: Member | None = None,
    msisdn: str | None = None,
    language: str | None = None,
    category: str = "transactional",
) -> OutboxMessage:
    """Queue an SMS to a member (or a bare number). Does not commit: the caller does."""
    recipient = member.msisdn if member is not None else msisdn
    if not recipient:
        raise ValueError("notify needs a member or a phone number")
    lang = language or (member.language if member is not None else "en")
    body = SMS.render(template, lang, data)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    session.execute(
        insert(OutboxMessage)
        .values(
            business_key=business_key,
            channel="sms",
            category=category,
            recipient=recipient,
            member_id=member.id if member is not None else None,
            template=template,
            language=lang,
            body=body,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["business_key"])
    )
    return session.execute(
        select(OutboxMessage).where(OutboxMessage.business_key == business_key)
    ).scalar_one()


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
