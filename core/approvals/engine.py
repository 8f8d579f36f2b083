"""Maker-checker: a sensitive action is requested by one person and decided by another.

``request_approval`` checks the request can work now (so nobody approves
nonsense), records it ``pending`` and audits it. ``decide`` locks the request
row: only a pending request is decided, never by its maker, only by someone
holding its checker permission (``approvals:decide``, or
``approvals:decide_large`` above the manager threshold) who can see its
branch. Approval runs the action's core verb in the same transaction as the
status change and the audit row, so it executes exactly once; if the verb
refuses (say the member changed meanwhile), nothing of it is written and the
request is marked ``failed`` with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidInput,
    MemberNotAllowed,
    NotFound,
    SaccoError,
)
from core.ledger import entries as ledger
from core.members.backoffice import (
    CASH_KEY_RE,
    approve_kyc,
    cash_deposit,
    cash_ledger_key,
    check_kyc_ready,
    visible_member,
)
from core.members.registration import check_status_change, set_status, start_pin_reset
from core.payments.mpesa.flows import SuspenseAlreadyAssigned, assign_suspense
from core.risk import events as sim_swap_events
from core.risk.sim_swap import PASSES as SIM_SWAP_PASSES
from core.risk.sim_swap import SimSwapChecker, SimSwapPolicy
from core.risk.sim_swap import assess as assess_sim_swap
from core.savings.accounts import DEPOSIT_TARGETS
from core.staff.permissions import APPROVER_PERMISSION, Principal, can_access_branch
from db.models import Account, ApprovalRequest, JournalEntry, Member, StaffUser
from db.models_mpesa import SuspenseItem

STATUS_CHANGES = ("active", "suspended", "exited")


class SelfApproval(DomainError):
    code = "self_approval"


class NotAChecker(DomainError):
    code = "forbidden"


class AlreadyDecided(DomainError):
    code = "already_decided"


@dataclass(frozen=True)
class ActionSpec:
    maker_permission: str
    describe: str
    needs_member: bool
    check: Callable[[Session, CoreDeps, int | None, dict[str, Any]], int | None]
    execute: Callable[[Session, CoreDeps, ApprovalRequest, dict[str, Any]], dict[str, Any]]
    # False where several requests for one member may wait at once (two cash deposits).
    one_pending_per_member: bool = True
    # Who decides, when not the amount-based approvals:decide / approvals:decide_large.
    checker_permission: str | None = None


# ---------------------------------------------------------------- actions


def _check_kyc(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> None:
    assert member_id is not None
    check_kyc_ready(session, session.get_one(Member, member_id))


def _exec_kyc(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    assert req.member_id is not None
    approve_kyc(session, deps, req.member_id, business_key=f"kyc_approved:{req.id}")
    return {"status": "active"}


def _check_status(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    assert member_id is not None
    if p.get("status") not in STATUS_CHANGES:
        raise InvalidInput("status must be active, suspended or exited", field="status")
    check_status_change(session.get_one(Member, member_id), p["status"])


def _exec_status(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    assert req.member_id is not None
    set_status(session, req.member_id, p["status"])
    return {"status": p["status"]}


def _check_pin_reset(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    assert member_id is not None
    member = session.get_one(Member, member_id)
    if member.status == "exited":
        raise InvalidInput("the member has exited", field="member_id", reason="exited")


def decision_facts(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    request_id: int,
    *,
    sim_swap: SimSwapChecker | None,
    policy: SimSwapPolicy,
) -> dict[str, str]:
    """What ``decide`` needs learnt outside its transaction (the SIM-swap check calls out).

    For a PIN reset: ``{"sim_swap": status}``, the status from ``core.risk.sim_swap.assess``
    (the cached verdict, the provider, the staff clearances); ``not_checked`` when no
    checker is configured. Flushes the verdict cache; ``{}`` for other actions.
    """
    req = visible_request(session, actor, request_id)
    if req.action != "member.pin_reset" or req.member_id is None or req.status != "pending":
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


def _amount(p: dict[str, Any]) -> int:
    amount = p.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput("amount must be more than zero", field="amount_cents")
    if amount > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field="amount_cents", reason="too_large")
    return amount


def _system_account(session: Session, code: Any, field: str) -> int:
    account = session.scalar(select(Account).where(Account.code == str(code)))
    if account is None or account.member_id is not None:
        raise InvalidInput(f"no such SACCO account {code}", field=field, reason="unknown")
    return account.id


def _check_adjustment(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    debit = _system_account(session, p.get("debit_account"), "debit_account")
    credit = _system_account(session, p.get("credit_account"), "credit_account")
    if debit == credit:
        raise InvalidInput("debit and credit accounts must differ", field="credit_account")
    memo = str(p.get("memo", "")).strip()
    if not 3 <= len(memo) <= 160:
        raise InvalidInput("memo: 3-160 characters", field="memo")
    return _amount(p)


def _exec_adjustment(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    amount = _amount(p)
    posted = ledger.post_entry(
        session,
        kind="adjustment.manual",
        legs=[
            ledger.Leg(_system_account(session, p["debit_account"], "debit_account"), amount),
            ledger.Leg(_system_account(session, p["credit_account"], "credit_account"), -amount),
        ],
        idempotency_key=f"approval:{req.id}",
        memo=str(p["memo"])[:160],
    )
    return {"entry": posted.reference}


def _open_item(session: Session, p: dict[str, Any]) -> SuspenseItem:
    item_id = p.get("item_id")
    item = session.get(SuspenseItem, item_id) if isinstance(item_id, int) else None
    if item is None:
        raise InvalidInput("no such suspense item", field="item_id", reason="unknown")
    if item.status != "open":
        raise SuspenseAlreadyAssigned(f"suspense item {item.id} is already assigned")
    return item


def _check_suspense(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    if p.get("target") not in DEPOSIT_TARGETS:
        raise InvalidInput("target must be savings, deposits or shares", field="target")
    return _open_item(session, p).amount_cents


def _exec_suspense(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.payments.mpesa.flows.assign_suspense``: the parked payment goes to the member, the item is
    marked assigned and the member is told by SMS."""
    assert req.member_id is not None
    posted = assign_suspense(
        session, deps, item_id=p["item_id"], member_id=req.member_id, target=p["target"],
        staff=f"approval {req.id}", note=req.maker_note,
    )  # fmt: skip
    return {"entry": posted.reference}


def _check_sim_swap(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    sim_swap_events.check_clearance(session, deps, member_id, p)


def _exec_sim_swap(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.risk.events.clear_event``: withdrawals resume for this phone and swap."""
    return sim_swap_events.clear_event(session, deps, req, p)


ACTIONS: dict[str, ActionSpec] = {
    "kyc.approve": ActionSpec("kyc:request", "approve KYC", True, _check_kyc, _exec_kyc),
    "member.status": ActionSpec(
        "member_status:request", "change member status", True, _check_status, _exec_status
    ),
    "member.pin_reset": ActionSpec(
        "pin_reset:request", "reset member PIN", True, _check_pin_reset, _exec_pin_reset
    ),
    "ledger.adjustment": ActionSpec(
        "ledger:adjust", "manual ledger adjustment", False, _check_adjustment, _exec_adjustment
    ),
    "suspense.reassign": ActionSpec(
        "suspense:reassign", "move suspense to a member", True, _check_suspense, _exec_suspense
    ),
    "sim_swap.clear": ActionSpec(
        "sim_swap:review",
        "clear a SIM swap after an ID check",
        True,
        _check_sim_swap,
        _exec_sim_swap,
    ),  # fmt: skip
}


# ----------------------------------------------- payouts only staff can settle (M-Pesa B2C)
# Kept in a block of its own (other action kinds are added above by other changes).
#
# A payout that may have reached Daraja is never sent again by itself (core.payments.mpesa.flows):
# Daraja is not known for certain to refuse a repeated OriginatorConversationID, and
# paying twice for one debit is worse than paying late. When no result or status answer
# settles it, it waits in ``review`` until one member of staff asks (after looking in
# the M-Pesa org portal) to resend it, release the hold, or record it paid with its
# receipt, and another approves. Maker permission: ``ledger:adjust`` (a decision about
# money that the ledger cannot make by itself). Its imports are local to the block so
# that it merges without touching the module's import list.


def _check_payout(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    from core.payments.mpesa.flows import check_payout_resolution

    return check_payout_resolution(session, member_id=member_id, payload=p)


def _exec_payout(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.payments.mpesa.flows.resolve_payout``: resend, release the hold, or post it as paid."""
    from core.payments.mpesa.flows import resolve_payout

    return resolve_payout(
        session, deps, payout_id=p["payout_id"], resolution=p["resolution"],
        receipt=p.get("receipt") or None, staff=f"approval {req.id}",
    )  # fmt: skip


ACTIONS["payout.resolve"] = ActionSpec(
    "ledger:adjust", "settle a payout only staff can settle", True, _check_payout, _exec_payout
)


# An STK push settled without a receipt and a paybill payment that may be the same payment:
# the second to arrive was parked (``possible_duplicate``). If staff find one payment in the
# org portal, the parked copy is reversed out of suspense (``suspense.duplicate``); if two,
# it goes to the member with ``suspense.reassign`` above.


def _check_suspense_duplicate(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    from core.payments.mpesa.flows import check_suspense_duplicate

    return check_suspense_duplicate(session, member_id=member_id, payload=p)


def _exec_suspense_duplicate(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.payments.mpesa.flows.resolve_suspense_duplicate``: the parked copy is reversed."""
    from core.payments.mpesa.flows import resolve_suspense_duplicate

    return resolve_suspense_duplicate(
        session, deps, item_id=p["item_id"], staff=f"approval {req.id}"
    )


ACTIONS["suspense.duplicate"] = ActionSpec(
    "suspense:reassign",
    "close a parked M-Pesa payment as a duplicate",
    True,
    _check_suspense_duplicate,
    _exec_suspense_duplicate,
)


# ------------------------------------------------------------------ verbs


def payload_of(req: ApprovalRequest) -> dict[str, Any]:
    value = json.loads(req.payload)
    return value if isinstance(value, dict) else {}


def request_approval(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    action: str,
    *,
    payload: Mapping[str, Any],
    member_id: int | None = None,
    note: str = "",
    large_threshold_cents: int,
) -> ApprovalRequest:
    spec = ACTIONS.get(action)
    if spec is None:
        raise InvalidInput("unknown action", field="action")
    if not actor.has(spec.maker_permission):
        raise NotAChecker(f"you may not ask to {spec.describe}")
    branch = None
    if spec.needs_member:
        if member_id is None:
            raise InvalidInput("member_id is required", field="member_id")
        branch = visible_member(session, actor, member_id).branch
        duplicate = session.scalar(
            select(ApprovalRequest.id).where(
                ApprovalRequest.member_id == member_id,
                ApprovalRequest.action == action,
                ApprovalRequest.status == "pending",
            )
        )
        if not spec.one_pending_per_member:
            duplicate = None
        if duplicate is not None:
            raise DomainError(
                f"request {duplicate} for this is already pending", reason="duplicate"
            )
    body = dict(payload)
    amount = spec.check(session, deps, member_id, body)
    checker = spec.checker_permission or (
        "approvals:decide_large"
        if amount is not None and amount > large_threshold_cents
        else "approvals:decide"
    )
    req = ApprovalRequest(
        action=action,
        payload=audit.canonical(body) or "{}",
        amount_cents=amount,
        member_id=member_id,
        branch=branch,
        checker_permission=checker,
        status="pending",
        maker_id=actor.id,
        maker_note=" ".join((note or "").split())[:200],
        created_at=deps.now(),
    )
    session.add(req)
    session.flush()
    audit.record(
        session, actor, "approval.request", target_type="approval", target_id=req.id,
        after={"action": action, "member_id": member_id, "payload": body, "checker": checker},
    )  # fmt: skip
    session.flush()
    return req


def visible_request(session: Session, actor: Principal, request_id: int) -> ApprovalRequest:
    req = session.get(ApprovalRequest, request_id)
    if req is None or not can_access_branch(actor, req.branch):
        raise NotFound("no such request")
    return req


def list_requests(
    session: Session, actor: Principal, *, status: str | None, limit: int, after_id: int = 0
) -> list[ApprovalRequest]:
    stmt: Select[tuple[ApprovalRequest]] = select(ApprovalRequest).where(
        ApprovalRequest.id > after_id
    )
    if status is not None:
        stmt = stmt.where(ApprovalRequest.status == status)
    if actor.branch is not None:
        stmt = stmt.where(ApprovalRequest.branch == actor.branch)
    return list(session.scalars(stmt.order_by(ApprovalRequest.id).limit(limit)))


def decide(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    request_id: int,
    *,
    approve: bool,
    note: str = "",
    facts: Mapping[str, Any] | None = None,
) -> ApprovalRequest:
    """Approve (and execute, exactly once) or reject a pending request.

    ``facts``: what the edge learnt outside the transaction for this decision, from
    ``decision_facts`` (``{"sim_swap": "none" | "cleared" | "recent" | "unknown" |
    "not_checked"}`` for a PIN reset).
    """
    req = session.scalar(
        select(ApprovalRequest).where(ApprovalRequest.id == request_id).with_for_update()
    )
    if req is None or not can_access_branch(actor, req.branch):
        raise NotFound("no such request")
    if req.status != "pending":
        raise AlreadyDecided(f"request is already {req.status}")
    if actor.kind != "staff" or actor.id == req.maker_id:
        raise SelfApproval("nobody may decide their own request: ask another checker")
    if not actor.has(req.checker_permission):
        needed = (
            "a checker"
            if req.checker_permission == "approvals:decide"
            else "a manager"  # approvals:decide_large, access:approve
        )
        raise NotAChecker(f"this request needs {needed}")
    req.checker_id = actor.id
    req.decision_note = " ".join((note or "").split())[:200]
    req.decided_at = deps.now()
    if not approve:
        req.status = "rejected"
        audit.record(
            session, actor, "approval.reject", target_type="approval", target_id=req.id,
            before={"status": "pending"}, after={"status": "rejected", "note": req.decision_note},
        )  # fmt: skip
        session.flush()
        return req
    spec = ACTIONS[req.action]
    try:
        with uow.savepoint(session):
            result = spec.execute(
                session, deps, req, {**payload_of(req), "_facts": dict(facts or {})}
            )
    except SaccoError as exc:
        req.status = "failed"
        req.result = audit.canonical(
            {
                "error": exc.code,
                "detail": exc.detail,
                **{k: str(v) for k, v in (facts or {}).items()},
            }
        )
        audit.record(
            session, actor, "approval.failed", target_type="approval", target_id=req.id,
            before={"status": "pending"}, after={"status": "failed", "error": exc.code},
        )  # fmt: skip
        session.flush()
        return req
    req.status = "approved"
    req.result = audit.canonical(result)
    audit.record(
        session, actor, "approval.approve", target_type="approval", target_id=req.id,
        before={"status": "pending"},
        after={"status": "approved", "action": req.action, "member_id": req.member_id,
               "result": result},
    )  # fmt: skip
    session.flush()
    return req


# ============================================================================
# Separation of duties (issue 10, part 4): cash above the till limit; staff accounts and
# partner keys. Kept in one block so other additions to ACTIONS merge cleanly.
# ============================================================================


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
    return str(target), _amount(p), key


def _check_cash_deposit(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    assert member_id is not None
    _, amount, _ = _cash_payload(p)
    member = session.get_one(Member, member_id)
    if member.status not in ("pending_kyc", "active"):
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    return amount


def _exec_cash_deposit(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.members.backoffice.cash_deposit`` as the teller who took the cash (the till's key),
    in the approval's transaction: posted exactly once, or not at all."""
    from core.staff.accounts import principal_for  # core.staff imports this module

    assert req.member_id is not None
    target, amount, key = _cash_payload(p)
    maker = principal_for(session.get_one(StaffUser, req.maker_id))
    posted = cash_deposit(
        session, deps, maker, member_id=req.member_id, target=target, amount_cents=amount,
        idempotency_key=key, approval_id=req.id,
    )  # fmt: skip
    return {"entry": posted.reference, "target": target, "amount_cents": amount}


ACTIONS["deposit.cash"] = ActionSpec(
    "deposits:cash",
    "record a cash deposit above the till limit",
    True,
    _check_cash_deposit,
    _exec_cash_deposit,
    one_pending_per_member=False,
)


def _earlier_cash_request(
    session: Session, actor: Principal, member_id: int, key: str
) -> ApprovalRequest | None:
    if actor.kind != "staff":
        return None
    rows = session.scalars(
        select(ApprovalRequest).where(
            ApprovalRequest.action == "deposit.cash",
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
    earlier = _earlier_cash_request(session, actor, member.id, key)
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


# Staff accounts and partner keys that can move money or read personal data
# (core.staff.permissions.PERMISSION_RISK): asked for with core.staff.accounts.request_staff_account /
# request_api_client, decided by a holder of APPROVER_PERMISSION (never their maker).


def _check_staff(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    from core.staff import accounts as staff

    staff.check_staff_request(session, deps, member_id, p)


def _exec_staff(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    from core.staff import accounts as staff

    return staff.approve_staff_request(session, deps, req, p)


def _check_key(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> None:
    from core.staff import accounts as staff

    staff.check_api_client_request(session, deps, member_id, p)


def _exec_key(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    from core.staff import accounts as staff

    return staff.approve_api_client_request(session, deps, req, p)


ACTIONS["staff.create"] = ActionSpec(
    "staff:manage",
    "create a staff account that can move money or read personal data",
    False,
    _check_staff,
    _exec_staff,
    checker_permission=APPROVER_PERMISSION,
)
ACTIONS["apiclient.create"] = ActionSpec(
    "apiclients:manage",
    "create a partner key that can move money or read personal data",
    False,
    _check_key,
    _exec_key,
    checker_permission=APPROVER_PERMISSION,
)
