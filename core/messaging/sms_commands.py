"""Inbound SMS commands: a pure parser and the use case that answers them.

Keywords (any case, extra spaces and punctuation ignored, one typo tolerated —
one insertion, deletion, substitution or swap of neighbours — when the word has
3+ letters and the typo points at exactly one command):

=========  ==========  ===========================================
English    Kiswahili   meaning
=========  ==========  ===========================================
BAL        SALIO       balances (savings available, deposits, shares)
MINI       TAARIFA     last 3 savings movements
LOAN       MKOPO       the latest loan (balance, next instalment) or application
LIMIT      KIKOMO      the loan limit under the main product, or why none
STATEMENT  RIPOTI      balances by SMS, the full statement (PDF) to the registered e-mail
ACCEPT c   KUBALI c    how to accept guarantee request c (USSD, with the PIN)
DECLINE c  KATAA c     decline guarantee request c
TOPUP      ONGEZA      how to top up the active loan (USSD, with the PIN)
HELP       MSAADA      the list of commands
STOP       SIMAMA      no more promotional SMS (transactional still go)
START      ANZA        promotional SMS again
=========  ==========  ===========================================

The reply is in the language of the keyword used (SALIO and MSAADA get
Swahili, BAL and HELP English): the sender just showed which one they read.
Unknown text gets the member's language (English for strangers).

What a reply may reveal: the mobile operator authenticates the number, not the
person; a lost or stolen phone (or a swapped SIM) is the risk, and SMS has no
PIN (a PIN sent by SMS would sit in the phone's inbox and the gateway's logs).
So SMS shows only what the member's own receipts already put in that phone's
inbox: balances (BAL) and the last three savings movements with date and
amount (MINI) — no references, counterparties, memos, names, ID or member
numbers, and nothing that moves money or changes settings apart from STOP/START
(which only touch promotional messages). The loan replies stay within what the
loan SMS already put there: LOAN the loan's reference, balance and next
instalment (as ``loan_disbursed``), LIMIT a figure derived from the deposits BAL
shows, ACCEPT the borrower's first name (as ``guarantee_request``). ACCEPT does
not pledge: consent to a pledge is confirmed on USSD with the PIN, and the reply
says how. DECLINE commits no money and no consent, so the SMS is enough. TOPUP
tops nothing up for the same reason (a top-up is consent to a new debt): it names
the member's active loan (its reference, already in their inbox) and how to top it
up on USSD. ``TOP UP`` (two words) is TOPUP: two words that make a keyword exactly
are read together before the first alone is matched with a typo (``TOP`` is one
letter from STOP, and a member asking for money must not be opted out of promotions).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.identity import normalize_msisdn
from core.kernel.money import format_cents, format_signed
from core.ledger import entries as ledger
from core.ledger.statements import loans_outstanding_cents
from core.loans import guarantees
from core.loans import views as loan_views
from core.loans.errors import LoanStateError
from core.loans.vocabulary import ApplicationStatus, Channel, LoanStatus
from core.members.registration import member_account_ids, member_balances
from core.members.status import MemberStatus
from core.messaging import statement_mail
from core.messaging.notifications import Term, first_name, notify, sms_datetime
from db.models import Member, SmsInbound, SmsOptOut
from db.session import insert_for

KEYWORDS: dict[str, tuple[str, str]] = {
    "BAL": ("balance", "en"),
    "BALANCE": ("balance", "en"),
    "SALIO": ("balance", "sw"),
    "MINI": ("mini", "en"),
    "TAARIFA": ("mini", "sw"),
    "LOAN": ("loan", "en"),
    "MKOPO": ("loan", "sw"),
    "LIMIT": ("limit", "en"),
    "KIKOMO": ("limit", "sw"),
    "STATEMENT": ("statement", "en"),
    "STMT": ("statement", "en"),
    "RIPOTI": ("statement", "sw"),
    "ACCEPT": ("accept", "en"),
    "KUBALI": ("accept", "sw"),
    "DECLINE": ("decline", "en"),
    "KATAA": ("decline", "sw"),
    "TOPUP": ("topup", "en"),
    "ONGEZA": ("topup", "sw"),
    "HELP": ("help", "en"),
    "MSAADA": ("help", "sw"),
    "STOP": ("stop", "en"),
    "SIMAMA": ("stop", "sw"),
    "START": ("start", "en"),
    "ANZA": ("start", "sw"),
}
COMMANDS = frozenset(kind for kind, _ in KEYWORDS.values()) | {"unknown", "empty"}
TAKES_CODE = frozenset({"accept", "decline"})
CODE_MAX = 10
# Replies cost money and a looping phone or a prank can send hundreds of texts: a
# number gets at most this many replies per rolling hour (the texts are still recorded,
# and STOP/START still take effect).
REPLIES_PER_HOUR = 10
_WORD = re.compile(r"[A-Z0-9]+")


@dataclass(frozen=True, slots=True)
class Command:
    kind: str  # one of COMMANDS
    language: str | None = None  # the keyword's language; None for HELP-like defaults
    code: str | None = None  # ACCEPT/DECLINE argument, upper case
    keyword: str | None = None  # the keyword as recognised (after typo correction)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()


def within_one_edit(a: str, b: str) -> bool:
    """True if ``a`` and ``b`` differ by at most one insertion, deletion, substitution
    or transposition of neighbours (optimal string alignment distance <= 1)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def match_keyword(word: str) -> str | None:
    """The keyword ``word`` means, exactly or with one typo; None if none or ambiguous."""
    if word in KEYWORDS:
        return word
    if len(word) < 3:
        return None
    close = [k for k in KEYWORDS if within_one_edit(word, k)]
    kinds = {KEYWORDS[k][0] for k in close}
    return close[0] if len(kinds) == 1 else None


def parse_command(text: str) -> Command:
    """What an inbound SMS asks for. Pure; never raises."""
    if not isinstance(text, str):
        return Command("empty")
    words = _WORD.findall(_fold(text[:1000]))
    if not words:
        return Command("empty")
    pair = "".join(words[:2])
    if len(words) > 1 and pair in KEYWORDS:  # "TOP UP": the two words, before a typo of one
        keyword: str | None = pair
        words = [pair, *words[2:]]
    else:
        keyword = match_keyword(words[0])
    if keyword is None and len(words) > 1:
        # "B A L" or "BAL ANCE": letters split by spaces
        keyword = match_keyword("".join(words))
        if keyword is not None:
            words = [keyword]
    if keyword is None:
        return Command("unknown")
    kind, language = KEYWORDS[keyword]
    code = None
    if kind in TAKES_CODE and len(words) > 1:
        code = words[1][:CODE_MAX]
    return Command(kind, language, code, keyword)


# ------------------------------------------------------------------------ the use case


@dataclass(frozen=True, slots=True)
class InboundSms:
    gateway_id: str
    sender: str
    text: str
    to: str = ""
    link_id: str | None = None
    network_code: str | None = None


@dataclass(frozen=True, slots=True)
class InboundResult:
    duplicate: bool
    command: str
    reply_template: str | None
    member_id: int | None = None


def mini_lines(moves: list[tuple[datetime, int]]) -> str:
    return "\n".join(f"{sms_datetime(at)[:5]} {format_signed(cents)}" for at, cents in moves)


def _reply(
    session: Session, deps: CoreDeps, command: Command, member: Member | None, tag: str = ""
) -> tuple[str, dict[str, object]]:
    base: dict[str, object] = {"sacco": deps.sacco_name, "ussd_code": deps.ussd_code}
    kind = command.kind
    if kind in ("stop", "start"):
        return ("sms_stop_ok" if kind == "stop" else "sms_start_ok"), base
    if member is None:
        return "sms_how_to_join", base
    if member.status in (MemberStatus.EXITED, MemberStatus.DECEASED):
        return "sms_not_active", base
    if kind == "balance":
        balances = member_balances(session, member.id)
        return "sms_balance", {
            **base,
            "savings": format_cents(balances.savings_available_cents),
            "deposits": format_cents(balances.deposits_cents),
            "shares": format_cents(balances.shares_cents),
            "date": sms_datetime(deps.now()),
        }
    if kind == "mini":
        savings_id = member_account_ids(session, member.id)["savings"]
        lines = ledger.statement(session, savings_id, limit=3)
        available = format_cents(member_balances(session, member.id).savings_available_cents)
        if not lines:
            return "sms_mini_empty", {**base, "savings": available}
        moves = [(line.created_at, line.amount_cents) for line in lines]
        return "sms_mini", {**base, "lines": mini_lines(moves), "savings": available}
    if kind == "statement":
        return _statement(session, deps, member, base, tag)
    if kind == "loan":
        return _loan_status(session, deps, member, base)
    if kind == "limit":
        return _limit(session, deps, member, base)
    if kind == "accept":
        return _accept(session, member, command.code or "", base)
    if kind == "decline":
        return _decline(session, deps, member, command.code or "", base)
    if kind == "topup":
        return _top_up(session, deps, member, base)
    if kind == "help":
        return "sms_help", base
    return "sms_unknown", base


def _statement(
    session: Session, deps: CoreDeps, member: Member, base: dict[str, object], tag: str
) -> tuple[str, dict[str, object]]:
    """STATEMENT: balances and loans owed by SMS; the full statement (PDF) of this month
    and the two before goes to the registered e-mail through the outbox (the worker
    renders it), or the reply says how to register one. The SMS says only "your e-mail",
    never the address (the phone may not be the member's hands)."""
    balances = member_balances(session, member.id)
    data = {
        **base,
        "savings": format_cents(balances.savings_available_cents),
        "deposits": format_cents(balances.deposits_cents),
        "shares": format_cents(balances.shares_cents),
    }
    if member.email_ciphertext is None:
        return "sms_statement_no_email", data
    start, end = statement_mail.sms_period(business_date(deps.now()))
    statement_mail.queue_statement_email(session, deps, member, start, end, tag=f"sms:{tag}")
    owed = loans_outstanding_cents(session, member.id)
    return "sms_statement", {**data, "loans": format_cents(owed)}


# ------------------------------------------------------------------- loans (issue 12)

SMS_PRODUCT_CHARS = 20  # a product's name in a reply (one SMS part with worst-case data)
# Where a member applies by phone: the main product is the first of these open to them.
MEMBER_CHANNELS = (Channel.USSD, Channel.SMS)


def _product(name: str) -> str:
    """A product's name cut to fit (names are plain ASCII: ``core.loans.products``)."""
    name = " ".join(name.split())
    if len(name) <= SMS_PRODUCT_CHARS:
        return name
    return name[: SMS_PRODUCT_CHARS - 2].rstrip() + ".."


def _limit(
    session: Session, deps: CoreDeps, member: Member, base: dict[str, object]
) -> tuple[str, dict[str, object]]:
    """LIMIT: the limit under the main product, or the appraisal's main reason."""
    found = loan_views.main_limit(session, deps, member.id, MEMBER_CHANNELS)
    if found is None:
        return "sms_limit_no_product", base
    product = _product(found.name)
    if found.reason is not None:
        return "sms_limit_none", {**base, "product": product, "why": Term(f"why_{found.reason}")}
    return "sms_limit", {**base, "product": product, "limit": format_cents(found.limit_cents)}


def _loan_status(
    session: Session, deps: CoreDeps, member: Member, base: dict[str, object]
) -> tuple[str, dict[str, object]]:
    """LOAN: the latest loan (balance, next instalment, arrears) or application (status)."""
    line = loan_views.latest(session, member.id, business_date(deps.now()))
    if line is None:
        return "sms_loan_none", base
    data = {**base, "reference": line.reference, "amount": format_cents(line.amount_cents)}
    if line.kind == "loan" and line.status == LoanStatus.ACTIVE and line.next_due_on:
        return "sms_loan", {
            **data,
            "balance": format_cents(line.balance_cents),
            "instalment": format_cents(line.next_due_cents),
            "due_on": line.next_due_on.strftime("%d/%m/%Y"),
            "arrears": format_cents(line.arrears_cents),
        }
    if line.status == ApplicationStatus.AWAITING_GUARANTORS:
        return "sms_loan_guarantors", {**data, "remaining": format_cents(line.missing_cents)}
    return "sms_loan_state", {**data, "state": Term(f"state_{line.status}")}


def _accept(
    session: Session, member: Member, code: str, base: dict[str, object]
) -> tuple[str, dict[str, object]]:
    """ACCEPT <code> pledges nothing by itself: consent to a pledge is given on USSD with
    the PIN (an SMS proves the SIM, not the person). The reply says how."""
    ask = loan_views.request_by_code(session, member.msisdn, code)
    if ask is None:
        return "sms_no_guarantee", {**base, "code": code or "-"}
    return "sms_accept_ussd", {
        **base,
        "pledge": format_cents(ask.pledge_cents),
        "first_name": first_name(ask.borrower_name),
        "reference": ask.reference,
    }


def _top_up(
    session: Session, deps: CoreDeps, member: Member, base: dict[str, object]
) -> tuple[str, dict[str, object]]:
    """TOPUP tops nothing up: a top-up is consent to a new debt, given on USSD with the
    PIN. The reply names the member's newest active loan and the way there."""
    lines = loan_views.member_loans(session, member.id, business_date(deps.now()))
    active = [ln for ln in lines if ln.kind == "loan" and ln.status == LoanStatus.ACTIVE]
    if not active:
        return "sms_topup_none", base
    return "sms_topup_ussd", {**base, "reference": active[0].reference}


def _decline(
    session: Session, deps: CoreDeps, member: Member, code: str, base: dict[str, object]
) -> tuple[str, dict[str, object]]:
    """DECLINE <code>: refusing commits no money and no consent, so the SMS is enough
    (``core.loans.guarantees.decline_by_code``: the code works from its guarantor's
    phone only; the borrower is told)."""
    ask = loan_views.request_by_code(session, member.msisdn, code)
    if ask is None:
        return "sms_no_guarantee", {**base, "code": code or "-"}
    try:
        guarantees.decline_by_code(session, deps, msisdn=member.msisdn, code=code)
    except (NotFound, LoanStateError):  # answered meanwhile: refused before any write
        return "sms_no_guarantee", {**base, "code": code or "-"}
    return "sms_declined", {
        **base,
        "first_name": first_name(ask.borrower_name),
        "reference": ask.reference,
    }


_PIN_LIKE = re.compile(r"(?<![0-9A-Za-z])[0-9]{4,6}(?![0-9A-Za-z])")


def mask_pin_like(text: str) -> str:
    """``BAL 1234`` -> ``BAL ****``: members sometimes text their PIN; we never store one.
    (Codes for ACCEPT/DECLINE mix letters and digits, so they survive.)"""
    return _PIN_LIKE.sub(lambda m: "*" * len(m.group()), text)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def clean_text(text: str, limit: int) -> str:
    """Drop control characters (PostgreSQL refuses NUL) and lone surrogates; cut to limit."""
    return _CONTROL.sub("", text[: limit * 2])[:limit]


def handle_inbound_sms(session: Session, deps: CoreDeps, sms: InboundSms) -> InboundResult:
    """Record an inbound SMS once (by the gateway's id) and queue the reply.

    The same id again (the gateway retries for ~10 minutes) changes nothing and
    queues no second reply. A sender that is not a phone number (a short code,
    an alphanumeric sender) is recorded and gets no reply.
    """
    sms = InboundSms(
        gateway_id=clean_text(sms.gateway_id, 64),
        sender=clean_text(sms.sender, 20),
        text=clean_text(sms.text, 1000),
        to=clean_text(sms.to, 20),
        link_id=clean_text(sms.link_id, 64) if sms.link_id else None,
        network_code=clean_text(sms.network_code, 8) if sms.network_code else None,
    )
    if not sms.gateway_id:
        raise InvalidInput("inbound SMS without an id", field="id")
    command = parse_command(sms.text)
    try:
        msisdn: str | None = normalize_msisdn(sms.sender)
    except InvalidInput:
        msisdn = None
    member = session.scalar(select(Member).where(Member.msisdn == msisdn)) if msisdn else None
    inserted = session.execute(
        insert_for(session, SmsInbound)
        .values(
            gateway_id=sms.gateway_id[:64],
            sender=(msisdn or sms.sender)[:20],
            to=sms.to[:20],
            text=mask_pin_like(sms.text),
            link_id=(sms.link_id or None) and sms.link_id[:64],
            network_code=(sms.network_code or None) and sms.network_code[:8],
            member_id=member.id if member else None,
            command=command.kind,
            received_at=deps.now(),
        )
        .on_conflict_do_nothing(index_elements=["gateway_id"])
        .returning(SmsInbound.id)
    ).scalar_one_or_none()
    if inserted is None:
        return InboundResult(True, command.kind, None, member.id if member else None)
    if msisdn is None or command.kind == "empty":
        session.flush()
        return InboundResult(False, command.kind, None, None)
    if command.kind == "stop":
        session.execute(
            insert_for(session, SmsOptOut)
            .values(msisdn=msisdn, created_at=deps.now())
            .on_conflict_do_nothing(index_elements=["msisdn"])
        )
    elif command.kind == "start":
        session.execute(delete(SmsOptOut).where(SmsOptOut.msisdn == msisdn))
    since = deps.now() - timedelta(hours=1)
    recent = session.scalar(
        select(func.count())
        .select_from(SmsInbound)
        .where(SmsInbound.sender == msisdn, SmsInbound.received_at > since)
    )
    if (recent or 0) > REPLIES_PER_HOUR:
        session.flush()
        return InboundResult(False, command.kind, None, member.id if member else None)
    template, data = _reply(session, deps, command, member, sms.gateway_id)
    language = command.language or (member.language if member else "en")
    notify(
        session,
        template=template,
        business_key=f"sms_reply:{sms.gateway_id}"[:160],
        now=deps.now(),
        data=data,
        member=member,
        msisdn=msisdn,
        language=language,
    )
    session.flush()
    return InboundResult(False, command.kind, template, member.id if member else None)
