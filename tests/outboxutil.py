"""Helpers for outbox tests: a controllable clock, a delivery context on the stand-in,
the stand-in's view of what it received."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from cryptography.fernet import Fernet
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.security import PiiVault
from core.messaging.outbox import OutboxPolicy
from integrations.email.smtp import SmtpSender
from integrations.webhooks.sender import WebhookSender
from sms.sender import AfricasTalkingSender
from workers.context import DeliveryContext

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def make_ctx(
    session_factory: sessionmaker[Session],
    standin_url: str,
    *,
    policy: OutboxPolicy | None = None,
    now: Any = None,
    sms_timeout: float = 5.0,
    smtp: SmtpSender | None = None,
    vault: PiiVault | None = None,
) -> DeliveryContext:
    """``vault``: the one webhook endpoints were registered with (``deps.vault``); the
    default holds a key of its own, enough for SMS and e-mail."""
    kwargs: dict[str, Any] = {} if now is None else {"now": now}
    return DeliveryContext(
        session_factory=session_factory,
        policy=policy or OutboxPolicy(max_attempts=4, backoff_base_s=30, claim_timeout_s=60),
        sms=AfricasTalkingSender(
            "sacco", "standin-api-key", base_url=standin_url, timeout=sms_timeout
        ),
        email=smtp or SmtpSender("", sender="sacco@localhost"),
        webhooks=WebhookSender(timeout=5, allow_private=True),  # receivers on 127.0.0.1
        vault=vault or PiiVault([Fernet.generate_key()], b"outbox-test-blind-index-key"),
        **kwargs,
    )


def gateway_messages(standin_url: str, to: str | None = None) -> list[dict[str, Any]]:
    params = {"to": to} if to else {}
    answer = requests.get(f"{standin_url}/_messages", params=params, timeout=5)
    answer.raise_for_status()
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


def control(standin_url: str, **command: Any) -> None:
    requests.post(f"{standin_url}/_control", json=command, timeout=5).raise_for_status()
