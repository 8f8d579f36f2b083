"""Staff e-mail alerts over the API: an administrator sets where a person's alerts go, and
a request waiting for a checker e-mails those who may decide it, through the outbox to a
real SMTP server (aiosmtpd), in the transaction that made the request."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import AuditEvent, Member, OutboxMessage
from integrations.email.smtp import SmtpSender
from tests.e2e.api.conftest import Staffer, auth
from tests.integration.test_email_webhooks import Mailbox, smtp_server  # noqa: F401
from tests.outboxutil import make_ctx
from workers.outbox import deliver


@pytest.fixture
def alerting(app: Flask) -> Flask:
    """The app: the approvals engine e-mails checkers through the listener that
    ``core.staff.approval_actions`` registers (``core.actions.register_all``)."""
    return app


def set_email(api: FlaskClient, admin: Staffer, who: Staffer, email: str | None) -> str | None:
    answer = api.put(f"/api/v1/staff/{who.id}/email", headers=auth(admin), json={"email": email})
    assert answer.status_code == 200, answer.json
    stored: str | None = answer.json["email"]
    return stored


def emails(session_factory: sessionmaker[Session]) -> list[OutboxMessage]:
    with session_factory() as s:
        return list(
            s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.channel == "email")
                .order_by(OutboxMessage.recipient)
            )
        )


def test_an_administrator_sets_and_removes_an_address_and_it_is_audited(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
) -> None:
    admin, manager = make_staff("admin"), make_staff("manager")
    assert set_email(api, admin, manager, "Grace@Umoja.Example") == "Grace@umoja.example"
    listed = api.get("/api/v1/staff?limit=100", headers=auth(admin)).json["items"]
    assert {s["id"]: s["email"] for s in listed}[manager.id] == "Grace@umoja.example"
    for bad in ("grace", "a@b", "a@b.example, c@d.example", "a@b.example\r\nBcc: x@y.example"):
        refused = api.put(
            f"/api/v1/staff/{manager.id}/email", headers=auth(admin), json={"email": bad}
        )
        assert refused.status_code == 422 and "email" in refused.json["errors"], bad
    assert set_email(api, admin, manager, None) is None
    missing = api.put("/api/v1/staff/999999/email", headers=auth(admin), json={"email": None})
    assert missing.status_code == 404
    with session_factory() as s:
        trail = s.scalars(
            select(AuditEvent.after).where(
                AuditEvent.action == "staff.email_set", AuditEvent.target_id == str(manager.id)
            )
        ).all()
    assert len(trail) == 2


def test_a_waiting_request_emails_each_checker_who_can_see_it_once_it_commits(
    alerting: Flask,
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    smtp_server: tuple[Mailbox, int],  # noqa: F811
) -> None:
    admin = make_staff("admin")
    maker = make_staff("manager", branch="Thika")
    same_branch = make_staff("manager", branch="Thika")
    officer = make_staff("loan_officer", branch="Thika")
    head_office = make_staff("manager")
    other_branch = make_staff("manager", branch="Nakuru")
    no_address = make_staff("manager", branch="Thika")
    teller = make_staff("teller", branch="Thika")  # cannot decide requests
    for who, address in (
        (maker, "maker@umoja.example"),
        (same_branch, "thika.manager@umoja.example"),
        (officer, "thika.officer@umoja.example"),
        (head_office, "hq@umoja.example"),
        (other_branch, "nakuru@umoja.example"),
        (teller, "teller@umoja.example"),
    ):
        set_email(api, admin, who, address)
    assert no_address.id
    member = make_member(branch="Thika", status="active", full_name="Wanjiku Kamau")

    # A refused request commits nothing, so it e-mails nobody.
    refused = api.post(
        f"/api/v1/members/{member.id}/status", headers=auth(maker),
        json={"status": "active", "note": ""},
    )  # fmt: skip
    assert refused.status_code == 403, refused.json  # active -> active is no change
    assert emails(session_factory) == []

    asked = api.post(
        f"/api/v1/members/{member.id}/status", headers=auth(maker),
        json={"status": "suspended", "note": "asked by the member's family"},
    )  # fmt: skip
    assert asked.status_code == 202
    request_id = asked.json["id"]
    queued = emails(session_factory)
    assert [m.recipient for m in queued] == [
        "hq@umoja.example",
        "thika.manager@umoja.example",
        "thika.officer@umoja.example",
    ]
    for message in queued:
        assert message.status == "pending" and message.template == "staff_approval_waiting"
        assert message.subject == f"Waiting for your approval: member.status (request {request_id})"
        assert f"/api/v1/approvals/{request_id}" in message.body
        assert "Wanjiku" not in message.body and member.msisdn not in message.body
        assert "family" not in message.body  # the maker's note stays in the back office

    box, port = smtp_server
    ctx = make_ctx(
        session_factory, "http://127.0.0.1:1",
        smtp=SmtpSender("127.0.0.1", port, sender="alerts@umoja.example", timeout=5),
    )  # fmt: skip
    assert [deliver(ctx, m.id) for m in queued] == ["sent"] * 3
    assert sorted(e.rcpt_tos[0] for e in box.messages) == [m.recipient for m in queued]
    content = box.messages[0].content.decode()
    assert f"Subject: Waiting for your approval: member.status (request {request_id})" in content

    # Deciding it sends nothing more: the alert is for the waiting, once.
    decided = api.post(
        f"/api/v1/approvals/{request_id}/approve", headers=auth(same_branch), json={}
    )
    assert decided.status_code == 200
    assert len(emails(session_factory)) == 3
