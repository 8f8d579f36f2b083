"""The members' maker-checker actions (registered with ``core.approvals.engine``):
KYC approval, status changes, PIN resets, changes of phone number, and cash deposits
above the till limit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, payload_amount, payload_of, register, request_approval
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, IdempotencyConflict, InvalidInput, MemberNotAllowed
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.members.backoffice import (
    CASH_KEY_RE,
    approve_kyc,
    cash_deposit,
    cash_ledger_key,
    check_kyc_ready,
    visible_member,
)
from core.members.phone_change import change_phone, check_request, new_msisdn_of
from core.members.registration import check_status_change, set_status, start_pin_reset
from core.members.status import MemberStatus, check_may_deposit
from core.risk.sim_swap import PASSES as SIM_SWAP_PASSES
from core.risk.sim_swap import SimSwapChecker, SimSwapPolicy
from core.risk.sim_swap import assess as assess_sim_swap
from core.savings.accounts import DEPOSIT_TARGETS
from db.models import ApprovalRequest, JournalEntry, Member, StaffUser

STATUS_CHANGES = (MemberStatus.ACTIVE, MemberStatus.SUSPENDED, MemberStatus.EXITED)


def _check_kyc(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> None:
    assert member_id is not None
    check_kyc_ready(session, session.get_one(Member, member_id))


def _exec_kyc(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    assert req.member_id is not None
    approve_kyc(session, deps, req.member_id, business_key=f"kyc_approved:{req.id}")
    return {"status": MemberStatus.ACTIVE}


def _check_status(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    assert member_id is not None
    if p.get("status") not in STATUS_CHANGES:
        raise InvalidInput("status must be active, suspended or exited", field="status")
    check_status_change(session.get_one(Member, member_id), p["status"])
    _check_direct_exit(session, member_id, p["status"])


def _check_direct_exit(session: Session, member_id: int, status: str) -> None:
    from core.members.exit import check_direct_exit  # it reads the loan book

    if status == MemberStatus.EXITED:
        check_direct_exit(session, member_id)


def _exec_status(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    assert req.member_id is not None
    _check_direct_exit(session, req.member_id, p["status"])
    set_status(session, req.member_id, p["status"])
    return {"status": p["status"]}


def _check_pin_reset(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    assert member_id is not None
    member = session.get_one(Member, member_id)
    if member.status == MemberStatus.EXITED:
        raise InvalidInput("the member has exited", field="member_id", reason="exited")


def _pin_reset_facts(
    session: Session,
    deps: CoreDeps,
    req: ApprovalRequest,
    *,
    sim_swap: SimSwapChecker | None,
    policy: SimSwapPolicy,
) -> dict[str, str]:
    """What ``decide`` needs learnt outside its transaction (the SIM-swap check calls out).

    For a PIN reset: ``{"sim_swap": status}``, the status from ``core.risk.sim_swap.assess``
    (the cached verdict, the provider, the staff clearances); ``not_checked`` when no
    checker is configured. Flushes the verdict cache; ``{}`` for other actions.
    """
    if req.member_id is None:
        return {}
    if sim_swap is None:
        return {"sim_swap": "not_checked"}
    member = session.get_one(Member, req.member_id)
    found = assess_sim_swap(
        session, deps, sim_swap, member_id=member.id, msisdn=member.msisdn, policy=policy
    )
    session.flush()
    return {"sim_swap": found.status}


def _exec_pin_reset(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """A recent SIM swap is how PIN-reset fraud starts (the code would reach the new SIM).
    A remote reset needs a check that says "no swap" (or a swap staff cleared); a recent
    swap, a failed check or no check at all is refused unless the maker saw the member in
    person with their ID (``in_person``)."""
    assert req.member_id is not None
    fact = str(p.get("_facts", {}).get("sim_swap", "not_checked"))
    if fact not in SIM_SWAP_PASSES and p.get("in_person") is not True:
        if fact == "recent":
            raise MemberNotAllowed(
                "the SIM was swapped recently: check the member's ID at the counter, "
                "then ask again with in_person",
                reason="recent_sim_swap",
            )
        raise MemberNotAllowed(
            "the SIM-swap check gave no verdict, so a remote reset could reach a swapped "
            "SIM: approve again once the check works, or check the member's ID at the "
            "counter and ask again with in_person",
            reason="sim_swap_unchecked",
        )
    start_pin_reset(session, deps, req.member_id, business_key=f"pin_reset:{req.id}")
    return {"code_sent": True, "sim_swap": fact}


def _check_phone_change(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    assert member_id is not None
    check_request(session, deps, session.get_one(Member, member_id), p)


def _exec_phone_change(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.members.phone_change.change_phone`` in the approval's transaction."""
    assert req.member_id is not None
    change_phone(session, deps, req.member_id, new_msisdn_of(deps, p), approval_id=req.id)
    return {"msisdn_masked": p.get("msisdn_masked"), "sms": ["old", "new"]}


class AboveTillLimit(DomainError):
    """A partner key (no person to ask) tried a cash deposit above the till limit."""

    code = "above_till_limit"


def _cash_payload(p: dict[str, Any]) -> tuple[str, int, str]:
    target = p.get("target")
    if target not in DEPOSIT_TARGETS:
        raise InvalidInput("target must be savings, deposits or shares", field="target")
    key = p.get("idempotency_key")
    if not isinstance(key, str) or not CASH_KEY_RE.fullmatch(key):
        raise InvalidInput(
            "Idempotency-Key header: 8-80 of letters, digits, . _ : -",
            field="Idempotency-Key",
            reason="required",
        )
    return str(target), payload_amount(p), key


def _check_cash_deposit(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    assert member_id is not None
    _, amount, _ = _cash_payload(p)
    check_may_deposit(session.get_one(Member, member_id).status)
    return amount


def _exec_cash_deposit(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.members.backoffice.cash_deposit`` as the teller who took the cash (the till's key),
    in the approval's transaction: posted exactly once, or not at all."""
    from core.staff.accounts import principal_for  # core.staff imports the members

    assert req.member_id is not None
    target, amount, key = _cash_payload(p)
    maker = principal_for(session.get_one(StaffUser, req.maker_id))
    posted = cash_deposit(
        session, deps, maker, member_id=req.member_id, target=target, amount_cents=amount,
        idempotency_key=key, approval_id=req.id,
    )  # fmt: skip
    return {"entry": posted.reference, "target": target, "amount_cents": amount}


def earlier_cash_request(
    session: Session, actor: Principal, member_id: int, key: str, action: str = "deposit.cash"
) -> ApprovalRequest | None:
    """The till's earlier request for ``action`` under the same ``Idempotency-Key``."""
    if actor.kind != "staff":
        return None
    rows = session.scalars(
        select(ApprovalRequest).where(
            ApprovalRequest.action == action,
            ApprovalRequest.maker_id == actor.id,
            ApprovalRequest.member_id == member_id,
        )
    )
    return next((r for r in rows if payload_of(r).get("idempotency_key") == key), None)


def take_cash_deposit(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    member_id: int,
    target: str,
    amount_cents: int,
    idempotency_key: str,
    till_limit_cents: int,
    large_threshold_cents: int,
) -> ledger.PostedEntry | ApprovalRequest:
    """Cash at the counter: posted at once up to ``till_limit_cents``; above it, a pending
    request that another person approves (then it posts, in the approval's transaction).

    The same ``Idempotency-Key`` again returns the first deposit or the first request;
    with another amount or target it is an ``IdempotencyConflict``.
    """
    key = (idempotency_key or "").strip()
    member = visible_member(session, actor, member_id)
    wanted = {"target": target, "amount_cents": amount_cents, "idempotency_key": key}
    if amount_cents > till_limit_cents:
        # One request per till key even when the same POST races itself.
        session.execute(select(Member.id).where(Member.id == member.id).with_for_update())
    earlier = earlier_cash_request(session, actor, member.id, key)
    if earlier is not None:
        if {k: payload_of(earlier).get(k) for k in wanted} != wanted:
            raise IdempotencyConflict(
                "this idempotency key was already used for a different deposit",
                idempotency_key=key,
            )
        session.flush()
        return earlier
    if amount_cents <= till_limit_cents:
        return cash_deposit(
            session, deps, actor, member_id=member.id, target=target,
            amount_cents=amount_cents, idempotency_key=key,
        )  # fmt: skip
    if actor.kind != "staff":
        raise AboveTillLimit(
            "cash above the till limit needs a member of staff to ask and another to approve"
        )
    _cash_payload(wanted)  # a malformed key is refused before it is looked up
    used = session.scalar(
        select(JournalEntry.id).where(JournalEntry.idempotency_key == cash_ledger_key(actor, key))
    )
    if used is not None:
        raise IdempotencyConflict(
            "this idempotency key was already used for a different deposit", idempotency_key=key
        )
    return request_approval(
        session, deps, actor, "deposit.cash", payload=wanted, member_id=member.id,
        note="cash above the till limit", large_threshold_cents=large_threshold_cents,
    )  # fmt: skip


def register_actions() -> None:
    from core.members import death as member_death  # it reads the loan book, as exit does
    from core.members import exit as member_exit  # it reads the loan book, which imports us

    register(
        member_death.ACTION,
        ActionSpec(
            member_death.MAKER_PERMISSION,
            "settle a deceased member's estate (offset loans, share it per the nomination)",
            True, member_death.check_request, member_death.execute,
            checker_permission=member_death.CHECKER_PERMISSION, on_reject=member_death.on_reject,
        ),
    )  # fmt: skip
    register(
        member_exit.ACTION,
        ActionSpec(
            member_exit.MAKER_PERMISSION, "run a member's exit (offset loans, refund, close)",
            True, member_exit.check_request, member_exit.execute,
            checker_permission=member_exit.CHECKER_PERMISSION, on_reject=member_exit.on_reject,
        ),
    )  # fmt: skip
    register("kyc.approve", ActionSpec("kyc:request", "approve KYC", True, _check_kyc, _exec_kyc))
    register(
        "member.status",
        ActionSpec(
            "member_status:request", "change member status", True, _check_status, _exec_status
        ),
    )
    register(
        "member.pin_reset",
        ActionSpec(
            "pin_reset:request", "reset member PIN", True, _check_pin_reset, _exec_pin_reset,
            facts=_pin_reset_facts,
        ),
    )  # fmt: skip
    register(
        "member.phone_change",
        ActionSpec(
            "phone_change:request", "change a member's phone number", True,
            _check_phone_change, _exec_phone_change,
        ),
    )  # fmt: skip
    register(
        "deposit.cash",
        ActionSpec(
            "deposits:cash",
            "record a cash deposit above the till limit",
            True,
            _check_cash_deposit,
            _exec_cash_deposit,
            one_pending_per_member=False,
        ),
    )
