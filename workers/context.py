"""What a delivery needs, built once per process from the settings: the database, the
outbox policy, one transport per channel (SMS gateway, SMTP, webhook HTTP), and the PII
vault that decrypts webhook signing secrets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from core.kernel.security import PiiVault
from core.messaging.outbox import OutboxPolicy
from db.base import utcnow
from db.session import make_engine, make_session_factory
from integrations.email.smtp import SmtpSender
from integrations.webhooks.sender import WebhookSender
from sms.sender import AfricasTalkingSender, Sender


def policy_from(settings: Settings) -> OutboxPolicy:
    return OutboxPolicy.from_settings(settings)


@dataclass
class DeliveryContext:
    session_factory: sessionmaker[Session]
    policy: OutboxPolicy
    sms: Sender
    email: SmtpSender
    webhooks: WebhookSender
    vault: PiiVault  # the app's PII keys: webhook signing secrets are stored encrypted
    now: Callable[[], datetime] = field(default=utcnow)

    @classmethod
    def from_settings(
        cls, settings: Settings, session_factory: sessionmaker[Session] | None = None
    ) -> DeliveryContext:
        if session_factory is None:
            session_factory = make_session_factory(make_engine(settings.database_url, pool_size=4))
        return cls(
            session_factory=session_factory,
            policy=policy_from(settings),
            sms=AfricasTalkingSender(
                settings.at_username,
                settings.at_api_key,
                sender_id=settings.at_sender_id or None,
                base_url=settings.at_base_url or None,
                timeout=settings.at_sms_timeout_s,
            ),
            email=SmtpSender(
                settings.smtp_host,
                settings.smtp_port,
                sender=settings.smtp_from,
                username=settings.smtp_username,
                password=settings.smtp_password,
                starttls=settings.smtp_starttls,
                timeout=settings.smtp_timeout_s,
            ),
            webhooks=WebhookSender(
                timeout=settings.webhook_timeout_s,
                allow_private=settings.webhook_allow_private_networks or not settings.is_production,
            ),
            vault=PiiVault.from_settings(settings),
        )

    def close(self) -> None:
        self.webhooks.close()


_process_context: DeliveryContext | None = None
_lock = threading.Lock()


def process_context() -> DeliveryContext:
    """The worker process's context, from the environment, built on first use (jobs take
    only ids, so an RQ worker needs nothing but the same environment as the app)."""
    global _process_context
    with _lock:
        if _process_context is None:
            _process_context = DeliveryContext.from_settings(load_settings())
        return _process_context
