"""Partner webhooks: registered endpoints, events queued through the outbox, signatures.

Signature (Stripe-style), sent in the ``Sacco-Signature`` header::

    Sacco-Signature: t=1764230400,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>

``t`` is the Unix time of *this* attempt (each retry is signed afresh), so a
receiver can refuse stale or replayed deliveries. ``verify_signature`` is the
receiver's recipe, pure, and what docs/channels/sms.md documents.

The secret is stored encrypted with the PII keys (``PiiVault``) and re-encrypted by
``rotate_webhook_secrets`` (``manage.py rotate-pii-keys``); a database dump alone
cannot forge a delivery. Endpoints registered before migration 0008 keep a plaintext
secret until that rotation runs once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.permissions import Principal
from core.kernel.security import PiiVault
from core.messaging.notifications import queue_webhook
from db.models import OutboxMessage, WebhookEndpoint

SIGNATURE_HEADER = "Sacco-Signature"
EVENT_HEADER = "Sacco-Event"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


class SignatureError(ValueError):
    """The delivery is not authentic or too old; answer 400 and ignore it."""


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    now: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a ``Sacco-Signature`` header over the raw body; returns the timestamp.

    Raises ``SignatureError`` if the header is missing or malformed, no ``v1``
    matches (compared in constant time), or ``t`` is more than ``tolerance_s``
    away from ``now`` (a replay or a badly wrong clock).
    """
    if not header:
        raise SignatureError("no signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdecimal() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("malformed signature header")
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature does not match")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance")
    return timestamp


# The events published today (core.payments.mpesa.flows, core.loans.repayments): an endpoint
# names some of these, or none (all).
EVENT_TYPES = ("deposit.received", "withdrawal.paid", "withdrawal.failed", "loan.repaid")


def register_endpoint(
    session: Session,
    deps: CoreDeps,
    *,
    name: str,
    url: str,
    events: list[str] | None = None,
    actor: Principal | None = None,
    require_https: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """Register a partner URL; returns the endpoint and its new secret (shown once; only
    its ciphertext is stored).

    ``require_https`` (production): deliveries carry member numbers and amounts, so
    they travel over TLS only.
    """
    if (
        not url.startswith(("https://", "http://"))
        or len(url) > 500
        or any(c.isspace() for c in url)
    ):
        raise InvalidInput("url must be an http(s) URL", field="url")
    unknown = sorted(set(events or ()) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            f"unknown events {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
            field="events", reason="unknown_event",
        )  # fmt: skip
    if require_https and not url.startswith("https://"):
        raise InvalidInput("url must be https: deliveries carry member data", field="url",
                           reason="https_required")  # fmt: skip
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        name=name.strip()[:80] or "partner",
        url=url,
        secret=None,
        secret_ciphertext=deps.vault.encrypt(secret),
        events=",".join(events) if events else "*",
        active=True,
        created_at=deps.now(),
    )
    session.add(endpoint)
    session.flush()
    if actor is not None:
        audit.record(
            session, actor, "webhook.register", target_type="webhook_endpoint",
            target_id=endpoint.id, after={"name": endpoint.name, "url": url, "events": endpoint.events},
            now=deps.now(),
        )  # fmt: skip
    session.flush()
    return endpoint, secret


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Every endpoint, active or not, in id order (never their secrets)."""
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def deactivate_endpoint(
    session: Session, deps: CoreDeps, actor: Principal, endpoint_id: int
) -> WebhookEndpoint:
    """Stop sending to an endpoint at once (messages still queued for it are not sent).
    Audited. Deactivating twice is a no-op."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("no such webhook endpoint")
    if endpoint.active:
        endpoint.active = False
        audit.record(
            session, actor, "webhook.deactivate", target_type="webhook_endpoint",
            target_id=endpoint.id, after={"url": endpoint.url}, now=deps.now(),
        )  # fmt: skip
        session.flush()
    return endpoint


def _wants(endpoint: WebhookEndpoint, event_type: str) -> bool:
    wanted = {e.strip() for e in endpoint.events.split(",")}
    return "*" in wanted or event_type in wanted


def event_body(event_id: str, event_type: str, data: Mapping[str, Any], created: int) -> str:
    return json.dumps(
        {"id": event_id, "type": event_type, "created": created, "data": dict(data)},
        separators=(",", ":"),
        sort_keys=True,
    )


def event_endpoints(session: Session, event_type: str) -> list[WebhookEndpoint]:
    """The active endpoints that want ``event_type``. A use case that moves money reads
    them before its ledger entry and passes them to ``publish_event``, so the read is not
    made while the entry holds a hot account's row lock."""
    return [
        endpoint
        for endpoint in session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))
        )
        if _wants(endpoint, event_type)
    ]


def publish_event(
    session: Session,
    *,
    event_type: str,
    event_id: str,
    data: Mapping[str, Any],
    now: datetime,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> list[OutboxMessage]:
    """Queue ``event_type`` for every active endpoint that wants it, in the caller's
    transaction. ``event_id`` is the event's business key: the same
    event published twice queues once per endpoint. ``now`` (the use case's clock) is
    the event's ``created``. ``endpoints``: those ``event_endpoints`` returned earlier in
    the same unit of work (read now when not given)."""
    if endpoints is None:
        endpoints = event_endpoints(session, event_type)
    if not endpoints:
        return []
    created = int(now.timestamp())
    body = event_body(event_id, event_type, data, created)
    return [
        queue_webhook(
            session,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            event_type=event_type,
            body=body,
            business_key=f"webhook:{endpoint.id}:{event_id}"[:160],
            now=now,
        )
        for endpoint in endpoints
    ]


def endpoint_secret(session: Session, vault: PiiVault, endpoint_id: int) -> str | None:
    """The signing secret of an active endpoint; None if it is removed or disabled.

    Decrypted from ``secret_ciphertext``, or the legacy plaintext of an endpoint
    registered before migration 0008 that ``rotate_webhook_secrets`` has not yet
    encrypted. Raises ``ValueError`` if no configured PII key decrypts it.
    """
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or not endpoint.active:
        return None
    if endpoint.secret_ciphertext is not None:
        return vault.decrypt(endpoint.secret_ciphertext)
    return endpoint.secret


def rotate_webhook_secrets(session: Session, deps: CoreDeps) -> int:
    """Re-encrypt every webhook signing secret under the newest PII key, and encrypt the
    plaintext ones left from before migration 0008, clearing the plaintext
    (``rotate-pii-keys``). Returns how many secrets were written."""
    count = 0
    for endpoint in session.scalars(
        select(WebhookEndpoint).where(
            or_(WebhookEndpoint.secret_ciphertext.is_not(None), WebhookEndpoint.secret.is_not(None))
        )
    ):
        if endpoint.secret_ciphertext is not None:
            endpoint.secret_ciphertext = deps.vault.rotate(endpoint.secret_ciphertext)
        else:
            assert endpoint.secret is not None
            endpoint.secret_ciphertext = deps.vault.encrypt(endpoint.secret)
        endpoint.secret = None
        count += 1
    session.flush()
    return count
