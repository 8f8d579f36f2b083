"""Staff e-mail against a local SMTP server (aiosmtpd) and partner webhooks verified
from the receiver's side, both delivered through the outbox."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.security import PiiVault
from core.messaging.notifications import notify_email
from core.messaging.webhooks import (
    SIGNATURE_HEADER,
    SignatureError,
    publish_event,
    register_endpoint,
    rotate_webhook_secrets,
    sign,
    signature_header,
    verify_signature,
)
from db.base import utcnow
from db.models import OutboxAttempt, OutboxMessage, WebhookEndpoint
from db.session import unit_of_work
from integrations.email.smtp import SmtpSender
from integrations.webhooks.sender import WebhookSender
from tests.outboxutil import make_ctx
from workers.outbox import deliver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    messages: list[Any] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def queue_mail(factory: sessionmaker[Session], to: str, key: str) -> int:
    with unit_of_work(factory) as s:
        message = notify_email(
            s,
            to=to,
            subject="Suspense: 3 payments to match",
            body="See the report.",
            business_key=key,
        )
        s.commit()
        return message.id


def test_staff_email_reaches_the_smtp_server(
    session_factory: sessionmaker[Session], smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    smtp = SmtpSender("127.0.0.1", port, sender="alerts@umoja.example", timeout=5)
    ctx = make_ctx(session_factory, "http://127.0.0.1:1", smtp=smtp)
    message_id = queue_mail(session_factory, "ops@umoja.example", "mail-1")
    assert deliver(ctx, message_id) == "sent"
    [envelope] = box.messages
    assert envelope.rcpt_tos == ["ops@umoja.example"]
    content = envelope.content.decode()
    assert "Subject: Suspense: 3 payments to match" in content and "See the report." in content


@pytest.mark.parametrize(
    ("to", "expected"), [("nobody@x.example", "failed"), ("busy@x.example", "pending")]
)
def test_smtp_refusals_fail_or_retry_by_their_code(
    session_factory: sessionmaker[Session], smtp_server: tuple[Mailbox, int], to: str, expected: str
) -> None:
    _, port = smtp_server
    ctx = make_ctx(
        session_factory,
        "http://127.0.0.1:1",
        smtp=SmtpSender("127.0.0.1", port, sender="a@umoja.example", timeout=5),
    )
    assert deliver(ctx, queue_mail(session_factory, to, f"mail-{to}")) == expected


def test_an_unreachable_smtp_server_is_retried(session_factory: sessionmaker[Session]) -> None:
    ctx = make_ctx(
        session_factory,
        "http://127.0.0.1:1",
        smtp=SmtpSender("127.0.0.1", free_port(), sender="a@b.example", timeout=2),
    )
    assert deliver(ctx, queue_mail(session_factory, "ops@umoja.example", "mail-down")) == "pending"


def test_notify_email_refuses_header_injection(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s, pytest.raises(ValueError):
        notify_email(
            s, to="a@b.example\r\nBcc: x@y.example", subject="x", body="y", business_key="k"
        )


# --------------------------------------------------------------------------- webhooks


class Receiver:
    """A partner's endpoint: verifies the signature and the timestamp as docs/channels/sms.md says."""

    def __init__(self, secret: str = "", clock_skew_s: int = 0, tolerance_s: int = 300) -> None:
        self.secret, self.skew, self.tolerance = secret, clock_skew_s, tolerance_s
        self.accepted: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    verify_signature(
                        receiver.secret,
                        self.headers.get(SIGNATURE_HEADER),
                        body,  # the raw bytes, before any JSON parsing
                        now=int(time.time()) + receiver.skew,
                        tolerance_s=receiver.tolerance,
                    )
                except SignatureError as exc:
                    receiver.rejected.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.accepted.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sacco"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def publish(factory: sessionmaker[Session], event_id: str) -> list[int]:
    with unit_of_work(factory) as s:
        messages = publish_event(
            s,
            event_type="deposit.received",
            event_id=event_id,
            data={"member_number": "10014", "amount_cents": 150050},
        )
        s.commit()
        return [m.id for m in messages]


def test_a_partner_receives_and_verifies_signed_events(
    session_factory: sessionmaker[Session], receiver: Receiver, deps: CoreDeps
) -> None:
    with unit_of_work(session_factory) as s:
        _, receiver.secret = register_endpoint(
            s, deps, name="Bank", url=receiver.url, events=["deposit.received"]
        )
        register_endpoint(
            s, deps, name="Other", url="http://127.0.0.1:1/x", events=["withdrawal.failed"]
        )
    ids = publish(session_factory, "evt_1")
    assert len(ids) == 1  # only the endpoint that wants this event
    assert publish(session_factory, "evt_1") == ids  # the same event queues once
    ctx = make_ctx(session_factory, "http://127.0.0.1:1", vault=deps.vault)
    assert deliver(ctx, ids[0]) == "delivered"
    [event] = receiver.accepted
    assert event["type"] == "deposit.received" and event["id"] == "evt_1"
    assert event["data"] == {"member_number": "10014", "amount_cents": 150050}
    with unit_of_work(session_factory) as s:
        [attempt] = s.scalars(select(OutboxAttempt).where(OutboxAttempt.message_id == ids[0]))
        assert attempt.status == "accepted" and attempt.status_code == 204


def test_the_signing_secret_is_never_stored_in_clear(
    session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    with unit_of_work(session_factory) as s:
        endpoint, secret = register_endpoint(s, deps, name="Bank", url="https://bank.example/h")
    with unit_of_work(session_factory) as s:
        row = s.get(WebhookEndpoint, endpoint.id)
        assert row is not None and row.secret is None
        assert row.secret_ciphertext is not None
        stored = bytes(row.secret_ciphertext)
    assert secret.startswith("whsec_")
    assert secret.encode() not in stored and secret.removeprefix("whsec_").encode() not in stored


def add_legacy_endpoint(factory: sessionmaker[Session], url: str, secret: str) -> int:
    """An endpoint as registered before migration 0008: its secret in the plaintext column."""
    with unit_of_work(factory) as s:
        row = WebhookEndpoint(
            name="Legacy", url=url, secret=secret, events="*", active=True, created_at=utcnow()
        )
        s.add(row)
        s.commit()
        return row.id


def test_a_legacy_plaintext_secret_signs_until_rotation_encrypts_it_under_the_newest_key(
    session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    index_key = b"rotation-blind-index-key-0123456789"
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old = replace(deps, vault=PiiVault([old_key], index_key))
    both = replace(deps, vault=PiiVault([new_key, old_key], index_key))
    only_new = PiiVault([new_key], index_key)
    legacy, current = Receiver(secret="whsec_registered_before_0008"), Receiver()
    try:
        legacy_id = add_legacy_endpoint(session_factory, legacy.url, legacy.secret)
        with unit_of_work(session_factory) as s:
            current_endpoint, current.secret = register_endpoint(
                s, old, name="New", url=current.url
            )
        ids = publish(session_factory, "evt_legacy")
        ctx = make_ctx(session_factory, "http://127.0.0.1:1", vault=old.vault)
        assert [deliver(ctx, i) for i in ids] == ["delivered", "delivered"]

        with unit_of_work(session_factory) as s:
            assert rotate_webhook_secrets(s, both) == 2
        with unit_of_work(session_factory) as s:
            rows = {r.id: r for r in s.scalars(select(WebhookEndpoint))}
            assert rows[legacy_id].secret is None and rows[current_endpoint.id].secret is None
            legacy_token = rows[legacy_id].secret_ciphertext
            current_token = rows[current_endpoint.id].secret_ciphertext
        assert legacy_token is not None and current_token is not None
        assert b"whsec_registered_before_0008" not in bytes(legacy_token)
        # The old key can now go: the new one alone decrypts both, and deliveries still sign.
        assert only_new.decrypt(legacy_token) == legacy.secret
        assert only_new.decrypt(current_token) == current.secret
        ids = publish(session_factory, "evt_after_rotation")
        ctx = make_ctx(session_factory, "http://127.0.0.1:1", vault=only_new)
        assert [deliver(ctx, i) for i in ids] == ["delivered", "delivered"]
        assert [e["id"] for e in legacy.accepted] == ["evt_legacy", "evt_after_rotation"]
        assert [e["id"] for e in current.accepted] == ["evt_legacy", "evt_after_rotation"]
        assert legacy.rejected == [] and current.rejected == []
    finally:
        legacy.close()
        current.close()


def test_a_secret_no_configured_key_decrypts_is_retried_not_sent(
    session_factory: sessionmaker[Session], receiver: Receiver, deps: CoreDeps
) -> None:
    with unit_of_work(session_factory) as s:
        _, receiver.secret = register_endpoint(s, deps, name="Bank", url=receiver.url)
    [message_id] = publish(session_factory, "evt_wrong_keys")
    other_keys = PiiVault([Fernet.generate_key()], b"some-other-blind-index-key")
    ctx = make_ctx(session_factory, "http://127.0.0.1:1", vault=other_keys)
    assert deliver(ctx, message_id) == "pending"
    assert receiver.accepted == [] and receiver.rejected == []  # nothing went out
    with unit_of_work(session_factory) as s:
        message = s.get(OutboxMessage, message_id)
        assert message is not None and "PII_KEYS" in (message.last_error or "")


def test_a_receiver_rejects_a_wrong_secret_and_a_stale_timestamp(
    session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    wrong = Receiver(secret="whsec_not_the_one")
    late = Receiver(clock_skew_s=600)  # the delivery looks 10 minutes old to this receiver
    try:
        with unit_of_work(session_factory) as s:
            register_endpoint(s, deps, name="Wrong", url=wrong.url)
            _, late.secret = register_endpoint(s, deps, name="Late", url=late.url)
        ids = publish(session_factory, "evt_2")
        ctx = make_ctx(session_factory, "http://127.0.0.1:1", vault=deps.vault)
        assert [deliver(ctx, i) for i in ids] == ["failed", "failed"]  # 400: not retried
        assert wrong.rejected == ["signature does not match"] and wrong.accepted == []
        assert late.rejected == ["timestamp outside the tolerance"] and late.accepted == []
        with unit_of_work(session_factory) as s:
            errors = s.scalars(select(OutboxMessage.last_error).where(OutboxMessage.id.in_(ids)))
            assert all((e or "").startswith("HTTP 400") for e in errors)
    finally:
        wrong.close()
        late.close()


def test_an_unreachable_receiver_is_retried_with_backoff(
    session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    with unit_of_work(session_factory) as s:
        register_endpoint(s, deps, name="Down", url="http://127.0.0.1:1/hooks")
    [message_id] = publish(session_factory, "evt_3")
    ctx = make_ctx(session_factory, "http://127.0.0.1:1", vault=deps.vault)
    assert deliver(ctx, message_id) == "pending"


def test_signature_recipe() -> None:
    body = b'{"id":"evt_9","type":"x"}'
    header = signature_header("whsec_k", 1_764_230_400, body)
    assert header == f"t=1764230400,v1={sign('whsec_k', 1_764_230_400, body)}"
    assert verify_signature("whsec_k", header, body, now=1_764_230_400 + 299) == 1_764_230_400
    bad = [
        (None, body, 1_764_230_400),
        ("v1=abc", body, 1_764_230_400),
        (header, body + b" ", 1_764_230_400),  # tampered body
        (header, body, 1_764_230_400 + 301),  # replayed too late
        (header.replace("t=1764230400", "t=1764230401"), body, 1_764_230_400),
    ]
    for h, b, now in bad:
        with pytest.raises(SignatureError):
            verify_signature("whsec_k", h, b, now=now)


def test_production_sender_refuses_private_addresses_and_never_follows_redirects(
    receiver: Receiver,
) -> None:
    strict = WebhookSender(timeout=2, allow_private=False)
    for url in (receiver.url, "http://10.1.2.3/hook", "http://[::1]:9/hook",
                "http://169.254.169.254/latest", "http://localhost/hook"):  # fmt: skip
        result = strict.send(url, "whsec_x", "deposit.received", '{"id":"e1"}')
        assert (result.accepted, result.retryable) == (False, False), url
        assert result.detail is not None and result.detail.startswith("address not allowed"), url
    assert receiver.accepted == [] and receiver.rejected == []  # nothing reached it

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", receiver.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

    bouncer = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=bouncer.serve_forever, args=(0.05,), daemon=True).start()
    try:
        lenient = WebhookSender(timeout=2, allow_private=True)
        url = f"http://127.0.0.1:{bouncer.server_address[1]}/hook"
        result = lenient.send(url, "whsec_x", "deposit.received", '{"id":"e2"}')
    finally:
        bouncer.shutdown()
        bouncer.server_close()
    assert (result.accepted, result.retryable, result.status_code) == (False, True, 302)
    assert receiver.accepted == [] and receiver.rejected == []  # the redirect was not followed
