"""Share capital transferred from one member to another (issue 14, part 1;
docs/savings/products.md#share-transfers).

Share capital is never withdrawn: it is transferred to another member or refunded at exit
as the by-laws say. A transfer is maker-checker (``share.transfer``, registered in
``core.savings.approval_actions``): a holder of ``shares:transfer`` asks, another person
approves (``approvals:decide``, a manager above the large threshold); the approval posts
one entry, ``share.transfer``: Dr the seller's shares / Cr the buyer's shares. Whatever
price the two members agreed changes hands outside the SACCO's books.

The seller keeps the share product's minimum holding (``min_balance_cents`` of the
``shares`` product; ``core.savings.rules.check_min_holding``) unless the seller is
exiting (a notice to leave not yet run: ``core.members.exit.leaving``), when everything may go.
Checked when asked and again, under both members' row locks (taken in id order), when
approved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import Purpose
from core.ledger.vocabulary import EntryKind
from core.members.exit import leaving
from core.members.registration import get_member, member_account_ids
from core.members.status import MemberStatus, check_may_deposit
from core.messaging.notifications import notify
from core.savings.rules import check_min_holding, rules_for_account
from db.models import Member

ACTION = "share.transfer"
MAKER_PERMISSION = "shares:transfer"


class ShareTransferRefused(DomainError):
    """A share transfer the members' states refuse (``reason``: ``same_member``)."""

    code = "share_transfer_refused"


@dataclass(frozen=True, slots=True)
class ShareTransfer:
    """A transfer asked for: from ``from_member_id`` to ``to_member_id``, in cents."""

    from_member_id: int
    to_member_id: int
    amount_cents: int


def parse_request(from_member_id: int, payload: Mapping[str, Any]) -> ShareTransfer:
    """The request's payload (``to_member_id``, ``amount_cents``), validated."""
    to = payload.get("to_member_id")
    if isinstance(to, bool) or not isinstance(to, int) or to <= 0:
        raise InvalidInput("to_member_id must be a member's id", field="to_member_id")
    amount = payload.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput("amount_cents must be more than zero", field="amount_cents")
    if amount > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount_cents is too large", field="amount_cents", reason="too_large")
    if to == from_member_id:
        raise ShareTransferRefused("a member cannot transfer shares to themselves",
                                   reason="same_member")  # fmt: skip
    return ShareTransfer(from_member_id, to, amount)


def check_transfer(session: Session, t: ShareTransfer) -> tuple[Member, Member, int, int]:
    """Both members and their share accounts, or the refusal: the seller active (or
    exiting), the buyer a member who may receive money (``check_may_deposit``), the
    seller's shares enough and the minimum holding kept unless exiting."""
    seller = get_member(session, t.from_member_id)
    buyer = session.get(Member, t.to_member_id)
    if buyer is None:
        raise NotFound("no such member to receive the shares")
    # Notice given, exit not run yet (an exited member sells nothing).
    exiting = seller.status != MemberStatus.EXITED and leaving(session, seller.id)
    if seller.status != MemberStatus.ACTIVE and not exiting:
        raise MemberNotAllowed(f"the seller is {seller.status}", reason=seller.status)
    check_may_deposit(buyer.status)
    from_id = member_account_ids(session, seller.id)[Purpose.SHARES]
    to_id = member_account_ids(session, buyer.id)[Purpose.SHARES]
    held = ledger.get_balance(session, from_id).available_cents
    check_min_holding(
        rules_for_account(session, from_id), balance_cents=held, amount_cents=t.amount_cents,
        exiting=exiting,
    )  # fmt: skip
    return seller, buyer, from_id, to_id


def transfer_shares(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    t: ShareTransfer,
    *,
    approval_id: int,
) -> ledger.PostedEntry:
    """Post an approved transfer once (the approval's id is the key): both members' rows
    locked in id order, the rules checked again, one entry, an SMS to each member and an
    audit row."""
    for member_id in sorted((t.from_member_id, t.to_member_id)):
        session.execute(select(Member.id).where(Member.id == member_id).with_for_update())
    seller, buyer, from_id, to_id = check_transfer(session, t)
    now = deps.now()
    posted = ledger.post_entry(
        session, kind=EntryKind.SHARE_TRANSFER,
        legs=[ledger.Leg(from_id, t.amount_cents), ledger.Leg(to_id, -t.amount_cents)],
        idempotency_key=f"share.transfer:{approval_id}", now=now,
        memo=f"Shares {seller.member_number} to {buyer.member_number}",
    )  # fmt: skip
    if posted.created:
        for member, template, other, account in (
            (seller, "shares_transferred_out", buyer, from_id),
            (buyer, "shares_transferred_in", seller, to_id),
        ):
            notify(
                session, template=template, business_key=f"{template}:{approval_id}", now=now,
                member=member,
                data={"sacco": deps.sacco_name, "amount": format_cents(t.amount_cents),
                      "member_number": other.member_number or str(other.id),
                      "reference": posted.reference,
                      "balance": format_cents(ledger.get_balance(session, account).balance_cents)},
            )  # fmt: skip
        audit.record(
            session, actor, ACTION, target_type="member", target_id=seller.id,
            after={"to_member_id": buyer.id, "amount_cents": t.amount_cents,
                   "entry": posted.reference, "approval": approval_id},
            now=now,
        )  # fmt: skip
    session.flush()
    return posted
