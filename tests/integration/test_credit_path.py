"""One credit path (core.savings.accounts.credit_member): money in from every source tells the
member, the partners and the audit log the same way, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import MemberNotAllowed
from core.kernel.permissions import SYSTEM
from core.members.backoffice import cash_deposit
from core.messaging import webhooks
from core.payments.mpesa import flows as mpesa
from db.models import AuditEvent, JournalEntry, Member, OutboxMessage
from db.models_mpesa import SuspenseItem
from tests.ussdutil import make_member


def told(s: Session, member: Member) -> list[tuple[str, str]]:
    """(template, body) of every SMS to the member, and of every partner event as
    ("event", source:account:amount)."""
    sms = [
        (m.template, m.body)
        for m in s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.channel == "sms", OutboxMessage.member_id == member.id)
            .order_by(OutboxMessage.id)
        )
        if m.template != "member_registered"
    ]
    events = []
    for hook in s.scalars(
        select(OutboxMessage).where(OutboxMessage.channel == "webhook").order_by(OutboxMessage.id)
    ):
        data = json.loads(hook.body)["data"]
        if data["member_number"] == member.member_number:
            events.append(("event", f"{data['source']}:{data['account']}:{data['amount_cents']}"))
    return sms + events


@pytest.fixture
def partner(db_session: Session, deps: CoreDeps) -> None:
    webhooks.register_endpoint(
        db_session, deps, name="ledger-sync", url="https://partner.example/hook",
        events=["deposit.received"],
    )  # fmt: skip


def test_teller_cash_sends_the_receipt_sms_the_event_and_the_audit_row_once(
    db_session: Session, deps: CoreDeps, partner: None
) -> None:
    member = make_member(db_session, deps)
    for _ in range(2):  # the till's retry: the same Idempotency-Key
        cash_deposit(
            db_session, deps, SYSTEM, member_id=member.id, target="deposits",
            amount_cents=1_500_00, idempotency_key="till-7:0001",
        )  # fmt: skip
    [(template, body), event] = told(db_session, member)
    assert template == "deposit_received_cash"
    assert "KES 1,500 cash received into your deposits account" in body
    assert "New balance KES 1,500" in body and "M-Pesa" not in body
    assert event == ("event", "cash:deposits:150000")
    audited = db_session.scalars(
        select(AuditEvent.action).where(AuditEvent.target_id == str(member.id))
    ).all()
    assert audited.count("member.cash_deposit") == 1


def test_m_pesa_and_a_suspense_reassignment_tell_the_member_the_same_way(
    db_session: Session, deps: CoreDeps, partner: None
) -> None:
    member = make_member(db_session, deps, language="sw")
    paid = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
    mine = mpesa.C2BIn("QAB1234567", paid, 300_00, str(member.member_number), "174379")
    assert mpesa.record_c2b(db_session, deps, mine) == "credited"
    lost = mpesa.C2BIn("QAB7654321", paid, 200_00, "no such account", "174379")
    assert mpesa.record_c2b(db_session, deps, lost) == "suspense"
    item = db_session.scalars(select(SuspenseItem).where(SuspenseItem.source_ref == lost.trans_id))
    item_id = item.one().id
    for _ in range(2):  # an approval replayed assigns once
        mpesa.assign_suspense(
            db_session, deps, item_id=item_id, member_id=member.id, target="savings",
            staff="approval 1",
        )  # fmt: skip
    [(t1, paybill), (t2, reassigned), e1, e2] = told(db_session, member)
    assert (t1, t2) == ("deposit_received", "deposit_received")
    assert "KES 300 imepokelewa kwenye akaunti yako ya akiba. Kumb. M-Pesa QAB1234567" in paybill
    assert "KES 200 imepokelewa kwenye akaunti yako ya akiba. Kumb. M-Pesa QAB7654321" in reassigned
    assert "Salio jipya KES 500" in reassigned
    assert (e1, e2) == (("event", "mpesa:savings:30000"), ("event", "suspense:savings:20000"))


def test_a_member_who_may_not_deposit_is_refused_and_nothing_is_written(
    db_session: Session, deps: CoreDeps, partner: None
) -> None:
    member = make_member(db_session, deps, status="suspended")
    entries = db_session.scalar(select(JournalEntry.id).order_by(JournalEntry.id.desc()).limit(1))
    with pytest.raises(MemberNotAllowed):
        cash_deposit(
            db_session, deps, SYSTEM, member_id=member.id, target="savings",
            amount_cents=100_00, idempotency_key="till-7:0002",
        )  # fmt: skip
    assert told(db_session, member) == []
    last = db_session.scalar(select(JournalEntry.id).order_by(JournalEntry.id.desc()).limit(1))
    assert last == entries
