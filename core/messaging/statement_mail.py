"""Queue a member's statement for e-mail (issue 16, part 3; docs/reports/members.md).

Nothing is rendered here, in the request: the outbox row (channel ``email``, template
``member_statement``) names the member in ``member_id`` and the period in its business
key, ``member_statement:<member id>:<from>:<to>:<tag>``; the outbox worker renders the
PDF from the ledger when it sends (``workers.outbox``), so the statement is as of the
sending and a retry sends the same period again. ``tag`` makes one request one e-mail
(the inbound SMS's gateway id, or the staff request's id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.members.contact import NoEmail, member_email
from core.messaging.notifications import notify_email
from db.models import Member, OutboxMessage

TEMPLATE = "member_statement"
KEY_PREFIX = f"{TEMPLATE}:"
SMS_MONTHS = 3  # STATEMENT by SMS: this month and the two before it

SUBJECTS = {"en": "{sacco} statement {start} to {end}", "sw": "{sacco} taarifa {start} hadi {end}"}
BODIES = {
    "en": "Dear {name},\n\nYour statement for {start} to {end} is attached (PDF).\n\n{sacco}",
    "sw": "Mpendwa {name},\n\nTaarifa yako ya {start} hadi {end} imeambatishwa (PDF).\n\n{sacco}",
}


@dataclass(frozen=True, slots=True)
class StatementRequest:
    member_id: int
    start: date
    end: date


def sms_period(today: date) -> tuple[date, date]:
    """The period of a statement asked for by SMS: the first day of the month
    ``SMS_MONTHS - 1`` months back, to today."""
    first = today.replace(day=1)
    for _ in range(SMS_MONTHS - 1):
        first = (first - timedelta(days=1)).replace(day=1)
    return first, today


def statement_key(member_id: int, start: date, end: date, tag: str) -> str:
    return f"{KEY_PREFIX}{member_id}:{start.isoformat()}:{end.isoformat()}:{tag}"[:160]


def parse_statement_key(business_key: str) -> StatementRequest | None:
    """The member and period an outbox e-mail's business key asks for; None if not one."""
    if not business_key.startswith(KEY_PREFIX):
        return None
    try:
        member_id, start, end = business_key[len(KEY_PREFIX) :].split(":", 3)[:3]
        return StatementRequest(int(member_id), date.fromisoformat(start), date.fromisoformat(end))
    except ValueError:
        return None


def queue_statement_email(
    session: Session, deps: CoreDeps, member: Member, start: date, end: date, *, tag: str
) -> OutboxMessage:
    """Queue the statement for the member's registered e-mail; ``NoEmail`` if none."""
    to = member_email(deps, member)
    if to is None:
        raise NoEmail("the member has no registered e-mail")
    lang = member.language if member.language in BODIES else "en"
    fields = {
        "sacco": deps.sacco_name,
        "name": member.full_name,
        "start": f"{start:%d/%m/%Y}",
        "end": f"{end:%d/%m/%Y}",
    }
    return notify_email(
        session,
        to=to,
        subject=SUBJECTS[lang].format(**fields),
        body=BODIES[lang].format(**fields),
        business_key=statement_key(member.id, start, end, tag),
        now=deps.now(),
        template=TEMPLATE,
        member_id=member.id,
        language=lang,
    )
