"""Notifications as outbox rows, written in the caller's transaction.

``notify`` renders the template in the member's language and inserts one
``outbox_messages`` row keyed by ``business_key``: the row exists exactly when
the business change commits, and the same event never queues twice. Delivery
(workers, retries, the SMS gateway) reads the outbox; nothing here sends.
"""

from __future__ import annotations

from collections.abc import Mapping
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
