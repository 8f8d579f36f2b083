"""Staff e-mail against a local SMTP server (aiosmtpd) and partner webhooks verified
from the receiver's side, both delivered through the outbox."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.notifications import notify_email
from core.webhooks import (
    SIGNATURE_HEADER,
    SignatureError,
    publish_event,
    register_endpoint,
    sign,
    signature_header,
    verify_signature,
)
from db.models import OutboxAttempt, OutboxMessage
from integrations.email.smtp import SmtpSender
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
    with factory() as s:
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
    """A partner's endpoint: verifies the signature and the timestamp as the README says."""

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
    with factory() as s:
        messages = publish_event(
            s,
            event_type="deposit.received",
            event_id=event_id,
            data={"member_number": "10014", "amount_cents": 150050},
        )
        s.commit()
        return [m.id for m in messages]


def test_a_partner_receives_and_verifies_signed_events(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    with session_factory() as s:
        _, receiver.secret = register_endpoint(
            s, name="Bank", url=receiver.url, events=["deposit.received"]
        )
        register_endpoint(s, name="Other", url="http://127.0.0.1:1/x", events=["loan.disbursed"])
    ids = publish(session_factory, "evt_1")
    assert len(ids) == 1  # only the endpoint that wants this event
    assert publish(session_factory, "evt_1") == ids  # the same event queues once
    ctx = make_ctx(session_factory, "http://127.0.0.1:1")
    assert deliver(ctx, ids[0]) == "delivered"
    [event] = receiver.accepted
    assert event["type"] == "deposit.received" and event["id"] == "evt_1"
    assert event["data"] == {"member_number": "10014", "amount_cents": 150050}
    with session_factory() as s:
        [attempt] = s.scalars(select(OutboxAttempt).where(OutboxAttempt.message_id == ids[0]))
        assert attempt.status == "accepted" and attempt.status_code == 204


def test_a_receiver_rejects_a_wrong_secret_and_a_stale_timestamp(
    session_factory: sessionmaker[Session],
) -> None:
    wrong = Receiver(secret="whsec_not_the_one")
    late = Receiver(clock_skew_s=600)  # the delivery looks 10 minutes old to this receiver
    try:
        with session_factory() as s:
            register_endpoint(s, name="Wrong", url=wrong.url)
            _, late.secret = register_endpoint(s, name="Late", url=late.url)
        ids = publish(session_factory, "evt_2")
        ctx = make_ctx(session_factory, "http://127.0.0.1:1")
        assert [deliver(ctx, i) for i in ids] == ["failed", "failed"]  # 400: not retried
        assert wrong.rejected == ["signature does not match"] and wrong.accepted == []
        assert late.rejected == ["timestamp outside the tolerance"] and late.accepted == []
        with session_factory() as s:
            errors = s.scalars(select(OutboxMessage.last_error).where(OutboxMessage.id.in_(ids)))
            assert all((e or "").startswith("HTTP 400") for e in errors)
    finally:
        wrong.close()
        late.close()


def test_an_unreachable_receiver_is_retried_with_backoff(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as s:
        register_endpoint(s, name="Down", url="http://127.0.0.1:1/hooks")
    [message_id] = publish(session_factory, "evt_3")
    assert deliver(make_ctx(session_factory, "http://127.0.0.1:1"), message_id) == "pending"


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
