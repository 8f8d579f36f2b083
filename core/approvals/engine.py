"""Maker-checker: a sensitive action is requested by one person and decided by another.

A generic engine: it knows no action. Each domain registers the actions it owns with
``register`` (``core/<domain>/approval_actions.py``: a check run when the request is made,
so nobody approves nonsense, and the verb run when it is approved); the composition root
registers them all once (``core.actions.register_all``).

``request_approval`` checks the request can work now, records it ``pending`` and audits
it. ``decide`` locks the request row: only a pending request is decided, never by its
maker, only by someone holding its checker permission (``approvals:decide``, or
``approvals:decide_large`` above the manager threshold, or the action's own) who can see
its branch. Approval runs the action's verb inside the approval's unit of work, in a
savepoint, so it executes exactly once; if the verb refuses (say the member changed
meanwhile), nothing of it is written and the request is marked ``failed`` with the reason.
An action may also say what a rejection does (``on_reject``: a loan application is
rejected with its request), run in the rejection's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.approvals.vocabulary import ApprovalStatus
from core.audit import log as audit
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound, SaccoError
from core.kernel.permissions import SYSTEM, Principal, can_access_branch
from core.ledger import entries as ledger
from db.models import ApprovalRequest, Member


class SelfApproval(DomainError):
    code = "self_approval"


class NotAChecker(DomainError):
    code = "forbidden"


class AlreadyDecided(DomainError):
    code = "already_decided"


Check = Callable[[Session, CoreDeps, int | None, dict[str, Any]], int | None]
Execute = Callable[[Session, CoreDeps, ApprovalRequest, dict[str, Any]], dict[str, Any]]
# What the decision needs learnt before its transaction (a check that calls out): the
# edge's ports come in as keywords (``sim_swap=``, ``policy=``).
Facts = Callable[..., dict[str, str]]


@dataclass(frozen=True)
class ActionSpec:
    maker_permission: str
    describe: str
    needs_member: bool
    check: Check
    execute: Execute
    # False where several requests for one member may wait at once (two cash deposits).
    one_pending_per_member: bool = True
    # Who decides, when not the amount-based approvals:decide / approvals:decide_large.
    checker_permission: str | None = None
    facts: Facts | None = None
    # Run when a checker rejects the request, in the rejection's transaction (a loan
    # application is rejected with it and the member told); None: nothing to undo.
    on_reject: Execute | None = None


ACTIONS: dict[str, ActionSpec] = {}
# Called for every new request inside its unit of work (staff e-mail alerts).
RequestListener = Callable[[Session, CoreDeps, ApprovalRequest], object]
_ON_REQUEST: list[RequestListener] = []


def on_request(listener: RequestListener) -> None:
    """Call ``listener(session, deps, request)`` for every request made from now on, in
    the request's own transaction (so what it writes commits with it, or not at all)."""
    if listener not in _ON_REQUEST:
        _ON_REQUEST.append(listener)


def register(action: str, spec: ActionSpec) -> None:
    """Make ``action`` requestable. Registering the same spec again is a no-op; another
    spec under a taken name is a programming error."""
    known = ACTIONS.get(action)
    if known is not None and known != spec:
        raise ValueError(f"approval action {action!r} is already registered")
    ACTIONS[action] = spec


def payload_amount(p: Mapping[str, Any], field: str = "amount_cents") -> int:
    """A positive amount in cents from a request's payload (shared by money actions)."""
    amount = p.get(field)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput("amount must be more than zero", field=field)
    if amount > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field=field, reason="too_large")
    return amount


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
        member = session.get(Member, member_id)
        if member is None or not can_access_branch(actor, member.branch):
            raise NotFound("no such member")
        branch = member.branch
        duplicate = session.scalar(
            select(ApprovalRequest.id).where(
                ApprovalRequest.member_id == member_id,
                ApprovalRequest.action == action,
                ApprovalRequest.status == ApprovalStatus.PENDING,
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
        status=ApprovalStatus.PENDING,
        maker_id=actor.id,
        maker_note=" ".join((note or "").split())[:200],
        created_at=deps.now(),
    )
    session.add(req)
    session.flush()
    audit.record(
        session, actor, "approval.request", target_type="approval", target_id=req.id,
        after={"action": action, "member_id": member_id, "payload": body, "checker": checker},
        now=deps.now(),
    )  # fmt: skip
    for listener in _ON_REQUEST:
        listener(session, deps, req)
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


def decision_facts(
    session: Session, deps: CoreDeps, actor: Principal, request_id: int, **ports: Any
) -> dict[str, str]:
    """What ``decide`` needs learnt outside its transaction, from the action's ``facts``
    hook (a PIN reset asks the SIM-swap checker, which calls out); ``{}`` for the others.
    ``ports``: what the edge holds for such checks (``sim_swap=``, ``policy=``)."""
    req = visible_request(session, actor, request_id)
    spec = ACTIONS.get(req.action)
    if spec is None or spec.facts is None or req.status != ApprovalStatus.PENDING:
        return {}
    return spec.facts(session, deps, req, **ports)


def lapse(session: Session, deps: CoreDeps, request_id: int, reason: SaccoError) -> None:
    """Mark a pending request ``failed`` because its domain knows it can no longer run (a
    loan recommendation whose guarantor withdrew): nobody is left deciding a request that
    would fail, and a new one may be asked. Audited as the system's; no-op unless pending."""
    req = session.scalar(
        select(ApprovalRequest).where(ApprovalRequest.id == request_id).with_for_update()
    )
    if req is None or req.status != ApprovalStatus.PENDING:
        return
    req.status = ApprovalStatus.FAILED
    req.decided_at = deps.now()
    req.result = audit.canonical({"error": reason.code, "detail": reason.detail})
    audit.record(
        session, SYSTEM, "approval.failed", target_type="approval", target_id=req.id,
        before={"status": "pending"}, after={"status": "failed", "error": reason.code},
        now=deps.now(),
    )  # fmt: skip
    session.flush()


def decide(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    request_id: int,
    *,
    approve: bool,
    note: str = "",
    facts: Mapping[str, Any] | None = None,
    ports: Mapping[str, Any] | None = None,
) -> ApprovalRequest:
    """Approve (and execute, exactly once) or reject a pending request.

    ``facts``: what the edge learnt outside the transaction for this decision, from
    ``decision_facts`` (``{"sim_swap": "none" | "cleared" | "recent" | "unknown" |
    "not_checked"}`` for a PIN reset). ``ports``: objects the edge holds that the verb
    may need (a loan approval's M-Pesa payout, ``loan_payout``), given to it as
    ``p["_ports"]``; never stored.
    """
    req = session.scalar(
        select(ApprovalRequest).where(ApprovalRequest.id == request_id).with_for_update()
    )
    if req is None or not can_access_branch(actor, req.branch):
        raise NotFound("no such request")
    if req.status != ApprovalStatus.PENDING:
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
        req.status = ApprovalStatus.REJECTED
        spec = ACTIONS.get(req.action)
        if spec is not None and spec.on_reject is not None:
            spec.on_reject(session, deps, req, payload_of(req))
        audit.record(
            session, actor, "approval.reject", target_type="approval", target_id=req.id,
            before={"status": "pending"}, after={"status": "rejected", "note": req.decision_note},
            now=deps.now(),
        )  # fmt: skip
        session.flush()
        return req
    spec = ACTIONS.get(req.action)
    if spec is None:  # a request stored by a version that knew an action this one does not
        raise DomainError(f"no such action {req.action!r} in this version", reason="unknown")
    try:
        with uow.savepoint(session):
            result = spec.execute(
                session,
                deps,
                req,
                {**payload_of(req), "_facts": dict(facts or {}), "_ports": dict(ports or {})},
            )
    except SaccoError as exc:
        req.status = ApprovalStatus.FAILED
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
            now=deps.now(),
        )  # fmt: skip
        session.flush()
        return req
    req.status = ApprovalStatus.APPROVED
    req.result = audit.canonical(result)
    audit.record(
        session, actor, "approval.approve", target_type="approval", target_id=req.id,
        before={"status": "pending"},
        after={"status": "approved", "action": req.action, "member_id": req.member_id,
               "result": result}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return req
