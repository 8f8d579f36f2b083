"""M-Pesa's maker-checker actions (registered with ``core.approvals.engine``): a parked
payment moved from suspense to a member (an account, or a repayment of their loan), a
parked duplicate closed, a payout only staff can settle."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, register
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.payments.mpesa.flows import (
    SuspenseAlreadyAssigned,
    assign_suspense,
    check_payout_resolution,
    check_suspense_duplicate,
    check_suspense_loan,
    resolve_payout,
    resolve_suspense_duplicate,
)
from core.payments.mpesa.rules import parse_loan_ref
from core.payments.mpesa.vocabulary import SuspenseStatus
from core.savings.accounts import DEPOSIT_TARGETS
from core.staff.accounts import checker_of
from db.models import ApprovalRequest
from db.models_mpesa import SuspenseItem


def _open_item(session: Session, p: dict[str, Any]) -> SuspenseItem:
    item_id = p.get("item_id")
    item = session.get(SuspenseItem, item_id) if isinstance(item_id, int) else None
    if item is None:
        raise InvalidInput("no such suspense item", field="item_id", reason="unknown")
    if item.status != SuspenseStatus.OPEN:
        raise SuspenseAlreadyAssigned(f"suspense item {item.id} is already assigned")
    return item


def _check_suspense(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    """The item is open, and the target is one of the member's accounts or the
    reference of the member's own active loan (stored as the loan has it)."""
    target = p.get("target")
    if target not in DEPOSIT_TARGETS:
        reference = parse_loan_ref(target) if isinstance(target, str) else None
        if reference is None:
            raise InvalidInput(
                "target must be savings, deposits, shares or a loan's reference",
                field="target",
            )
        p["target"] = check_suspense_loan(session, member_id=member_id, reference=reference)
    return _open_item(session, p).amount_cents


def _exec_suspense(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.payments.mpesa.flows.assign_suspense``: the parked payment goes to the member
    (or repays the member's loan, audited in the checker's name), the item is marked
    assigned and the member is told by SMS."""
    assert req.member_id is not None
    posted = assign_suspense(
        session, deps, item_id=p["item_id"], member_id=req.member_id, target=p["target"],
        staff=f"approval {req.id}", note=req.maker_note, actor=checker_of(session, req),
    )  # fmt: skip
    return {"entry": posted.reference}


# ----------------------------------------------- payouts only staff can settle (M-Pesa B2C)
# Kept in a block of its own (other action kinds are added above by other changes).
#
# A payout that may have reached Daraja is never sent again by itself (core.payments.mpesa.flows):
# Daraja is not known for certain to refuse a repeated OriginatorConversationID, and
# paying twice for one debit is worse than paying late. When no result or status answer
# settles it, it waits in ``review`` until one member of staff asks (after looking in
# the M-Pesa org portal) to resend it, release the hold, or record it paid with its
# receipt, and another approves. Maker permission: ``ledger:adjust`` (a decision about
# money that the ledger cannot make by itself).


def _check_payout(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:

    return check_payout_resolution(session, member_id=member_id, payload=p)


def _exec_payout(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.payments.mpesa.flows.resolve_payout``: resend, release the hold, or post it
    as paid."""

    return resolve_payout(
        session, deps, payout_id=p["payout_id"], resolution=p["resolution"],
        receipt=p.get("receipt") or None, staff=f"approval {req.id}",
    )  # fmt: skip


# An STK push settled without a receipt and a paybill payment that may be the same payment:
# the second to arrive was parked (``possible_duplicate``). If staff find one payment in the
# org portal, the parked copy is reversed out of suspense (``suspense.duplicate``); if two,
# it goes to the member with ``suspense.reassign`` above.


def _check_suspense_duplicate(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:

    return check_suspense_duplicate(session, member_id=member_id, payload=p)


def _exec_suspense_duplicate(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.payments.mpesa.flows.resolve_suspense_duplicate``: the parked copy is reversed."""

    return resolve_suspense_duplicate(
        session, deps, item_id=p["item_id"], staff=f"approval {req.id}"
    )


def register_actions() -> None:
    register(
        "suspense.reassign",
        ActionSpec(
            "suspense:reassign", "move suspense to a member", True, _check_suspense, _exec_suspense
        ),
    )
    register(
        "payout.resolve",
        ActionSpec(
            "ledger:adjust", "settle a payout only staff can settle", True, _check_payout,
            _exec_payout,
        ),
    )  # fmt: skip
    register(
        "suspense.duplicate",
        ActionSpec(
            "suspense:reassign",
            "close a parked M-Pesa payment as a duplicate",
            True,
            _check_suspense_duplicate,
            _exec_suspense_duplicate,
        ),
    )
