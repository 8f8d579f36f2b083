"""STATEMENT / RIPOTI by SMS: a short summary by SMS (one GSM-7 part, both languages);
the PDF goes to the registered e-mail through the outbox, rendered by the outbox worker
and delivered to a local SMTP server (aiosmtpd); no e-mail registered: the reply says how."""

from __future__ import annotations

import email
import io
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from aiosmtpd.controller import Controller
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.gsm import sms_length
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.contact import set_member_email
from core.members.registration import member_account_ids
from core.messaging.sms_commands import InboundSms, handle_inbound_sms
from core.messaging.statement_mail import sms_period
from db.models import Member, OutboxMessage
from db.session import unit_of_work
from integrations.email.smtp import SmtpSender
from tests.outboxutil import make_ctx
from tests.ussdutil import make_member
from workers.outbox import deliver


@dataclass
class Mailbox:
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def member_with_savings(
    factory: sessionmaker[Session], deps: CoreDeps, language: str, address: str | None
) -> Member:
    with unit_of_work(factory) as s:
        member = make_member(s, deps, msisdn=f"+2547{uuid4().int % 10**8:08d}",
                             national_id=str(30000000 + uuid4().int % 10**7),
                             name="Juma Mwangi", language=language)  # fmt: skip
        float_id = ledger.account_id_by_code(s, SystemAccount.MPESA_COLLECTIONS_FLOAT)
        savings = member_account_ids(s, member.id)["savings"]
        ledger.post_entry(s, kind=EntryKind.DEPOSIT_MPESA,
                          legs=[ledger.Leg(float_id, 4_321_50), ledger.Leg(savings, -4_321_50)],
                          idempotency_key=uuid4().hex, now=deps.now() - timedelta(days=3))  # fmt: skip
        if address:
            set_member_email(s, deps, SYSTEM, member.id, address)
        s.commit()
        return member


def sms(factory: sessionmaker[Session], deps: CoreDeps, member: Member, text: str) -> str:
    gateway_id = f"stmt-{uuid4().hex[:12]}"
    with unit_of_work(factory) as s:
        handle_inbound_sms(s, deps, InboundSms(gateway_id, member.msisdn, text))
        body = s.scalars(select(OutboxMessage.body).where(
            OutboxMessage.business_key == f"sms_reply:{gateway_id}")).one()  # fmt: skip
        s.commit()
    length = sms_length(body)
    assert (length.encoding, length.parts) == ("GSM-7", 1), body
    return body


def statement_mails(factory: sessionmaker[Session], member: Member) -> list[OutboxMessage]:
    with unit_of_work(factory) as s:
        return list(s.scalars(select(OutboxMessage).where(
            OutboxMessage.member_id == member.id, OutboxMessage.channel == "email")))  # fmt: skip


def test_statement_by_sms_mails_the_pdf_through_the_outbox(
    session_factory: sessionmaker[Session], deps: CoreDeps, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    member = member_with_savings(session_factory, deps, "en", "juma@example.com")
    assert sms(session_factory, deps, member, "statement") == (
        "Umoja SACCO: statement e-mailed. Savings KES 4,321.50. Deposits KES 0. Shares KES 0. "
        "Loans KES 0."
    )
    [queued] = statement_mails(session_factory, member)
    assert queued.recipient == "juma@example.com" and queued.status == "pending"
    assert box.messages == []  # nothing sent in the request: the worker sends it

    smtp = SmtpSender("127.0.0.1", port, sender="statements@umoja.example", timeout=5)
    ctx = make_ctx(session_factory, "http://127.0.0.1:1", smtp=smtp, now=deps.now)
    assert deliver(ctx, queued.id) == "sent"
    [envelope] = box.messages
    assert envelope.rcpt_tos == ["juma@example.com"]
    mail = email.message_from_bytes(envelope.content)
    start, end = sms_period(deps.now().date())
    assert mail["Subject"] == f"Umoja SACCO statement {start:%d/%m/%Y} to {end:%d/%m/%Y}"
    [pdf] = [part for part in mail.walk() if part.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == f"statement-{start}-{end}.pdf"
    data = pdf.get_payload(decode=True)
    assert isinstance(data, bytes)
    text = PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert "Juma Mwangi" in text and "+4,321.50" in text and "Closing balance" in text
    assert deliver(ctx, queued.id) == "skipped"  # sent once


def test_ripoti_without_an_email_says_how_to_register_one(
    session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    member = member_with_savings(session_factory, deps, "sw", None)
    assert sms(session_factory, deps, member, "RIPOTI") == (
        "Umoja SACCO: Akiba KES 4,321.50. Amana KES 0. Hisa KES 0. Kupata taarifa, sajili "
        "barua pepe ofisini kwetu."
    )
    assert sms(session_factory, deps, member, "stmt") == (
        "Umoja SACCO: Savings KES 4,321.50. Deposits KES 0. Shares KES 0. To get statements, "
        "register an e-mail at our office."
    )
    assert statement_mails(session_factory, member) == []
