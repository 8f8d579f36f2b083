"""Savings use cases shared by every channel: money in (``credit_member``, the one credit
path) and own-account transfers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.money import Money, format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import MEMBER_PURPOSES, Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import get_member, member_account_ids
from core.members.status import check_may_deposit
from core.messaging.notifications import notify
from core.messaging.webhooks import publish_event
from db.models import Member

# What a member's account is called in an SMS, by language.
ACCOUNT_LABELS = {
    "en": {"savings": "savings", "deposits": "deposits", "shares": "shares"},
    "sw": {"savings": "akiba", "deposits": "amana", "shares": "hisa"},
}
DEPOSIT_TARGETS = tuple(purpose.value for purpose in MEMBER_PURPOSES)  # savings, deposits, shares


class CreditSource(StrEnum):
    """Where money that enters a member account comes from."""

    MPESA = "mpesa"  # an STK push or a paybill payment, from the collections float
    CASH = "cash"  # a teller's cash, banked
    BANK = "bank"  # a bank transfer
    SUSPENSE = "suspense"  # an M-Pesa payment parked in suspense, given to its member by staff
    YEAR_END = "year_end"  # a dividend and rebate, net of tax (core.savings.year_end)


# Per source: the SACCO account the money leaves, the entry it makes, the receipt SMS.
_SOURCES: dict[CreditSource, tuple[SystemAccount, EntryKind, str]] = {
    CreditSource.MPESA: (
        SystemAccount.MPESA_COLLECTIONS_FLOAT, EntryKind.DEPOSIT_MPESA, "deposit_received"
    ),
    CreditSource.CASH: (SystemAccount.BANK, EntryKind.DEPOSIT_CASH, "deposit_received_cash"),
    CreditSource.BANK: (SystemAccount.BANK, EntryKind.DEPOSIT_BANK, "deposit_received_bank"),
    CreditSource.SUSPENSE: (
        SystemAccount.SUSPENSE, EntryKind.MPESA_SUSPENSE_ASSIGN, "deposit_received"
    ),
    CreditSource.YEAR_END: (
        SystemAccount.DIVIDENDS_PAYABLE, EntryKind.YEAR_END_CREDIT, "year_end_paid"
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Credit:
    """Money in for one member: what, from where, and the keys that make it happen once."""

    member_id: int
    target: str  # savings, deposits or shares
    amount_cents: int
    source: CreditSource
    idempotency_key: str  # the ledger entry's: the same key again credits nothing more
    business_key: str  # the receipt SMS's and the webhook event's: one per money-in event
    memo: str = ""
    receipt: str | None = None  # the M-Pesa receipt, shown to the member and the partner
    actor: Principal | None = None  # who took the money (a teller): audited; None: M-Pesa
    audit: Mapping[str, Any] = field(default_factory=dict)  # more for the audit row
    # The receipt SMS in place of the source's own (a loan repayment that reached savings:
    # ``loan_overpaid_to_savings``, ``loan_closed_to_savings``) and what else it shows.
    template: str | None = None
    notice: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Credited:
    posted: ledger.PostedEntry
    member: Member
    account_id: int


def credit_member(session: Session, deps: CoreDeps, credit: Credit) -> Credited:
    """The one way money enters a member's savings, deposits or shares, from every source
    (M-Pesa STK push and paybill, teller cash, a bank transfer, a suspense reassignment; the
    loans issue adds repayments and disbursements here).

    Posts the entry once per ``idempotency_key`` and, the first time only, tells everyone
    the same way: the receipt SMS to the member (``deposit_received``; ``…_cash`` /
    ``…_bank`` for money not from M-Pesa), the ``deposit.received`` webhook event to
    partners, and an audit row when a person took the money. Who may deposit is
    ``core.members.status.may_deposit`` (pending and active members).
    """
    if credit.target not in DEPOSIT_TARGETS:
        raise InvalidInput("deposit target must be savings, deposits or shares", field="target")
    if credit.source not in _SOURCES:
        raise InvalidInput("unknown source of funds", field="source")
    amount = credit.amount_cents
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput("amount must be more than zero", field="amount_cents")
    if amount > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field="amount_cents", reason="too_large")
    member = get_member(session, credit.member_id)
    # FOR KEY SHARE (what a foreign key to the member takes anyway): a member's exit, which
    # holds the row FOR UPDATE while it refunds everything, is waited for and the status read
    # after it, so no money lands in the accounts of a member who has just left. Flushed
    # first: re-reading the row must not throw away a change this unit of work made to it.
    session.flush()
    session.scalars(
        select(Member).where(Member.id == member.id)
        .with_for_update(read=True, key_share=True).execution_options(populate_existing=True)
    ).one()  # fmt: skip
    check_may_deposit(member.status)
    account_id = member_account_ids(session, member.id)[credit.target]
    from_code, kind, template = _SOURCES[credit.source]
    now = deps.now()
    posted = ledger.post_entry(
        session,
        kind=kind,
        legs=[
            ledger.Leg(ledger.account_id_by_code(session, from_code), amount),
            ledger.Leg(account_id, -amount),
        ],
        idempotency_key=credit.idempotency_key,
        now=now,
        memo=(credit.memo or f"Deposit to {credit.target}")[:160],
    )
    if posted.created:
        _tell(session, deps, credit, member, account_id, posted, credit.template or template)
    session.flush()
    return Credited(posted, member, account_id)


def _tell(
    session: Session,
    deps: CoreDeps,
    credit: Credit,
    member: Member,
    account_id: int,
    posted: ledger.PostedEntry,
    template: str,
) -> None:
    now = deps.now()
    labels = ACCOUNT_LABELS.get(member.language, ACCOUNT_LABELS["en"])
    notify(
        session,
        template=template,
        business_key=credit.business_key,
        now=now,
        member=member,
        data={
            "sacco": deps.sacco_name,
            "amount": format_cents(credit.amount_cents),
            "account": labels[credit.target],
            "receipt": credit.receipt or "-",
            "reference": posted.reference,
            "balance": format_cents(ledger.get_balance(session, account_id).balance_cents),
            **credit.notice,
        },
    )
    publish_event(
        session,
        event_type="deposit.received",
        event_id=credit.business_key,
        now=now,
        data={
            "member_number": member.member_number,
            "account": credit.target,
            "amount_cents": credit.amount_cents,
            "source": credit.source.value,
            "mpesa_receipt": credit.receipt,
            "reference": posted.reference,
        },
    )
    if credit.actor is not None:
        audit.record(
            session, credit.actor, f"member.{credit.source.value}_deposit", target_type="member",
            target_id=member.id,
            after={"target": credit.target, "amount_cents": credit.amount_cents,
                   "entry": posted.reference, **credit.audit}, now=deps.now(),
        )  # fmt: skip


def transfer_own(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    from_purpose: str,
    to_purpose: str,
    amount: Money,
    idempotency_key: str,
) -> ledger.PostedEntry:
    """Move money between a member's own accounts (savings -> shares, say)."""
    if from_purpose != Purpose.SAVINGS or to_purpose not in (Purpose.DEPOSITS, Purpose.SHARES):
        raise InvalidInput("only savings can move to deposits or shares", field="to")
    accounts = member_account_ids(session, member_id)
    posted = ledger.post_entry(
        session,
        kind=EntryKind.TRANSFER_OWN,
        legs=[
            ledger.Leg(accounts[from_purpose], amount.cents),
            ledger.Leg(accounts[to_purpose], -amount.cents),
        ],
        idempotency_key=idempotency_key,
        now=deps.now(),
        memo=f"Savings to {to_purpose}",
    )
    session.flush()
    return posted
