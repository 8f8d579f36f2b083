"""Savings use cases shared by every channel: deposits and own-account transfers."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.money import Money
from core.ledger import entries as ledger
from core.ledger.chart import MEMBER_PURPOSES, Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import get_member, member_account_ids
from core.members.status import check_may_deposit

# Where money comes from when it enters a member account, and the entry it makes.
SOURCE_ACCOUNTS = {
    "mpesa": SystemAccount.MPESA_COLLECTIONS_FLOAT,  # STK push, paybill
    "cash": SystemAccount.BANK,  # teller cash, banked
    "bank": SystemAccount.BANK,
}
SOURCE_KINDS = {
    "mpesa": EntryKind.DEPOSIT_MPESA,
    "cash": EntryKind.DEPOSIT_CASH,
    "bank": EntryKind.DEPOSIT_BANK,
}
DEPOSIT_TARGETS = tuple(purpose.value for purpose in MEMBER_PURPOSES)  # savings, deposits, shares


def record_deposit(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    target: str,
    amount: Money,
    source: str,
    idempotency_key: str,
    memo: str = "",
) -> ledger.PostedEntry:
    """Credit a member's savings, deposits or shares from a source float, exactly once per key.

    Who may deposit is ``core.members.status.may_deposit``: pending and active members.
    """
    if target not in DEPOSIT_TARGETS:
        raise InvalidInput("deposit target must be savings, deposits or shares", field="target")
    if source not in SOURCE_ACCOUNTS:
        raise InvalidInput("unknown source of funds", field="source")
    if not amount.is_positive():
        raise InvalidInput("amount must be more than zero", field="amount", reason="zero")
    member = get_member(session, member_id)
    check_may_deposit(member.status)
    accounts = member_account_ids(session, member_id)
    posted = ledger.post_entry(
        session,
        kind=SOURCE_KINDS[source],
        legs=[
            ledger.Leg(ledger.account_id_by_code(session, SOURCE_ACCOUNTS[source]), amount.cents),
            ledger.Leg(accounts[target], -amount.cents),
        ],
        idempotency_key=idempotency_key,
        now=deps.now(),
        memo=memo or f"Deposit to {target}",
    )
    session.flush()
    return posted


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
