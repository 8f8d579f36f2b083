"""Savings use cases shared by every channel: deposits and own-account transfers."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput, MemberNotAllowed
from core.kernel.money import Money
from core.ledger import entries as ledger
from core.members.registration import get_member, member_account_ids

# Where money comes from when it enters a member account.
SOURCE_ACCOUNTS = {
    "mpesa": "1010",  # M-Pesa collections float (STK push, paybill)
    "cash": "1000",  # teller cash, banked
    "bank": "1000",
}
DEPOSIT_TARGETS = ("savings", "deposits", "shares")


def record_deposit(
    session: Session,
    *,
    member_id: int,
    target: str,
    amount: Money,
    source: str,
    idempotency_key: str,
    memo: str = "",
) -> ledger.PostedEntry:
    """Credit a member's savings, deposits or shares from a source float, exactly once per key.

    Pending and active members may deposit; suspended and exited members may not.
    """
    if target not in DEPOSIT_TARGETS:
        raise InvalidInput("deposit target must be savings, deposits or shares", field="target")
    if source not in SOURCE_ACCOUNTS:
        raise InvalidInput("unknown source of funds", field="source")
    if not amount.is_positive():
        raise InvalidInput("amount must be more than zero", field="amount", reason="zero")
    member = get_member(session, member_id)
    if member.status not in ("pending_kyc", "active"):
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    accounts = member_account_ids(session, member_id)
    posted = ledger.post_entry(
        session,
        kind=f"deposit.{source}",
        legs=[
            ledger.Leg(ledger.account_id_by_code(session, SOURCE_ACCOUNTS[source]), amount.cents),
            ledger.Leg(accounts[target], -amount.cents),
        ],
        idempotency_key=idempotency_key,
        memo=memo or f"Deposit to {target}",
    )
    session.flush()
    return posted


def transfer_own(
    session: Session,
    *,
    member_id: int,
    from_purpose: str,
    to_purpose: str,
    amount: Money,
    idempotency_key: str,
) -> ledger.PostedEntry:
    """Move money between a member's own accounts (savings -> shares, say)."""
    if from_purpose != "savings" or to_purpose not in ("deposits", "shares"):
        raise InvalidInput("only savings can move to deposits or shares", field="to")
    accounts = member_account_ids(session, member_id)
    posted = ledger.post_entry(
        session,
        kind="transfer.own",
        legs=[
            ledger.Leg(accounts[from_purpose], amount.cents),
            ledger.Leg(accounts[to_purpose], -amount.cents),
        ],
        idempotency_key=idempotency_key,
        memo=f"Savings to {to_purpose}",
    )
    session.flush()
    return posted
