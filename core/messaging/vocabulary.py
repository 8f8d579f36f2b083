"""The outbox's words: where a message is on its way (``outbox_messages.status``).

``StrEnum``: each member is the string stored, so the database, JSON and SQL keep their
values."""

from __future__ import annotations

from enum import StrEnum


class OutboxStatus(StrEnum):
    """pending -> sending -> sent (SMS, e-mail) or delivered (a webhook, or an SMS the
    network confirmed); failed once its attempts are spent (a retry makes it pending again);
    cancelled when it must not go (a promotional SMS to a number that sent STOP)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
