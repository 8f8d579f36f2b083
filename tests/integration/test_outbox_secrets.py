"""Secret-bearing SMS (the PIN-reset code) do not stay readable in ``outbox_messages``.

The code must reach the member's phone, but once the gateway has it (or the message is
given up) the database row, and so every backup made after, no longer holds it.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.members import registration as members
from core.messaging.notifications import SECRET_TEMPLATES, notify
from core.messaging.outbox import (
    DeliveryReport,
    claim_message,
    receive_delivery_report,
    retry_failed,
)
from db.models import Member, OutboxMessage
from db.session import unit_of_work
from integrations.africastalking.standin import StandinHandle
from tests.outboxutil import T0, Clock, control, gateway_messages, make_ctx
from workers.outbox import deliver
from workers.sweeper import sweep_once

PHONE = "+254712000201"


def reset_code_sms(session: Session, deps: CoreDeps, phone: str = PHONE) -> tuple[int, str]:
    """A member whose PIN reset was approved: (outbox id, the code in the SMS)."""
    member = members.register_member(
        session, deps, full_name="Amina Wanjiru", msisdn=phone, national_id="23456781",
        consent=True, pin="4826",
    )  # fmt: skip
    members.start_pin_reset(session, deps, member.id, business_key=f"pin_reset:{member.id}")
    session.commit()
    row = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.member_id == member.id, OutboxMessage.template == "pin_reset_code"
        )
    ).one()
    found = re.search(r"\b(\d{6})\b", row.body)
    assert found is not None
    row.next_attempt_at = T0
    session.commit()
    return row.id, found.group(1)


def body_of(session_factory: sessionmaker[Session], message_id: int) -> OutboxMessage:
    with unit_of_work(session_factory) as s:
        return s.get_one(OutboxMessage, message_id)


def test_the_pin_reset_template_is_marked_secret_bearing() -> None:
    assert "pin_reset_code" in SECRET_TEMPLATES


def test_after_delivery_the_row_no_longer_holds_the_reset_code(
    session_factory: sessionmaker[Session], standin: StandinHandle, deps: CoreDeps
) -> None:
    with unit_of_work(session_factory) as s:
        message_id, code = reset_code_sms(s, deps)
    ctx = make_ctx(session_factory, standin.url, now=Clock())
    assert deliver(ctx, message_id) == "sent"
    [received] = gateway_messages(standin.url, PHONE)
    assert code in received["message"]  # the member got it
    row = body_of(session_factory, message_id)
    assert row.status == "sent"
    assert code not in row.body and "redacted" in row.body
    with unit_of_work(session_factory) as s:  # nowhere else in the outbox either
        bodies = s.scalars(select(OutboxMessage.body)).all()
        assert not any(code in b for b in bodies)
        # the member row keeps only the hash: the code still works for the member
        member = s.scalars(select(Member).where(Member.msisdn == PHONE)).one()
        assert member.pin_reset_hash is not None and code not in member.pin_reset_hash


def test_a_reset_code_given_up_for_good_is_redacted_too(
    session_factory: sessionmaker[Session], standin: StandinHandle, deps: CoreDeps
) -> None:
    control(standin.url, number=PHONE, status_code=403)  # the gateway refuses the number
    with unit_of_work(session_factory) as s:
        message_id, code = reset_code_sms(s, deps)
    assert deliver(make_ctx(session_factory, standin.url, now=Clock()), message_id) == "failed"
    row = body_of(session_factory, message_id)
    assert code not in row.body
    with unit_of_work(session_factory) as s:  # and staff cannot resend a text that is gone
        assert not retry_failed(s, message_id, T0)
    assert body_of(session_factory, message_id).status == "failed"


def test_a_reset_code_abandoned_by_a_dead_worker_with_no_attempts_left_is_redacted(
    session_factory: sessionmaker[Session], standin: StandinHandle, deps: CoreDeps
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    with unit_of_work(session_factory) as s:
        message_id, code = reset_code_sms(s, deps)
        s.get_one(OutboxMessage, message_id).attempts = ctx.policy.max_attempts - 1
        s.commit()
        assert claim_message(s, message_id, clock()) is not None  # its worker then dies
    clock.advance(ctx.policy.claim_timeout_s + 1)
    result = sweep_once(ctx, lambda due, reclaimed: None)
    assert result.given_up == [message_id]
    assert code not in body_of(session_factory, message_id).body


def test_a_failure_report_after_redaction_never_resends_the_redacted_text(
    session_factory: sessionmaker[Session], standin: StandinHandle, deps: CoreDeps
) -> None:
    clock = Clock()
    ctx = make_ctx(session_factory, standin.url, now=clock)
    with unit_of_work(session_factory) as s:
        message_id, _code = reset_code_sms(s, deps)
    assert deliver(ctx, message_id) == "sent"
    provider_id = body_of(session_factory, message_id).provider_message_id
    assert provider_id
    with unit_of_work(session_factory) as s:  # the phone was off: normally worth another attempt
        report = DeliveryReport(provider_id, "Failed", failure_reason="AbsentSubscriber")
        receive_delivery_report(s, report, ctx.policy, clock())
    row = body_of(session_factory, message_id)
    assert row.status == "failed" and "new code" in (row.last_error or "")
    clock.advance(3600)
    assert deliver(ctx, message_id) == "skipped"
    assert len(gateway_messages(standin.url, PHONE)) == 1


def test_ordinary_messages_keep_their_text_after_delivery(
    session_factory: sessionmaker[Session], standin: StandinHandle
) -> None:
    with unit_of_work(session_factory) as s:
        message = notify(
            s, template="sms_start_ok", business_key="plain", data={"sacco": "Umoja SACCO"},
            msisdn=PHONE,
        )  # fmt: skip
        s.commit()
        text = message.body
    assert deliver(make_ctx(session_factory, standin.url), message.id) == "sent"
    assert body_of(session_factory, message.id).body == text
