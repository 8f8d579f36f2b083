"""Loans' maker-checker actions (registered with ``core.approvals.engine``).

* ``loan_product.create`` / ``loan_product.change`` (also how a product is deactivated):
  asked by a holder of ``loan_products:manage``, decided by another person holding
  ``approvals:decide_large`` (a manager): a product sets the terms of every loan made under it.
* ``loan.approve``: a loan officer recommends an application that is pending approval
  (maker permission ``loans:recommend``); another person decides with the engine's rules
  (``approvals:decide``; above the manager threshold ``approvals:decide_large``). Approval
  appraises again, checks the cover and disburses where the application asks (savings, or
  savings then M-Pesa with the payout port the edge passes as ``ports["loan_payout"]``) in
  the approval's transaction (``core.loans.disbursement``); rejection rejects the application with the
  checker's note as the reason the member reads by SMS (``on_reject``). An application
  within its product's auto-approval ceiling needs no request (``core.loans.book.route``).
* ``loan.write_off`` (``core.loans.write_off``: maker ``loans:write_off``, checker a
  manager) and ``loan.reschedule`` (``core.loans.reschedule``: maker ``loans:reschedule``,
  checker by amount): issue 13, part 8, registered here with the others.
* ``loan.recover``: a holder of ``loans:recover`` asks for a defaulted loan to be recovered
  from the borrower's deposits and the guarantors' pledges; another person decides by the
  amount (``core.loans.recovery``, docs/loans/recovery.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals import engine
from core.approvals.engine import ActionSpec, register
from core.approvals.vocabulary import ApprovalStatus
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.permissions import Principal, can_access_branch
from core.loans import book, products, recovery, reschedule, write_off
from core.loans.disbursement import approve_application, check_approvable, disburse
from core.loans.vocabulary import BEFORE_APPROVAL, DisburseTo
from core.members.registration import get_member
from core.staff import accounts as staff
from db.models import ApprovalRequest
from db.models_loans import Loan, LoanApplication

ACTION = "loan.approve"
MAKER_PERMISSION = "loans:recommend"
DEFAULT_REASON = "not approved"


def _application(session: Session, member_id: int | None, p: dict[str, Any]) -> LoanApplication:
    application_id = p.get("application_id")
    if isinstance(application_id, bool) or not isinstance(application_id, int):
        raise InvalidInput("application_id is required", field="application_id")
    application = session.get(LoanApplication, application_id)
    if application is None or (member_id is not None and application.member_id != member_id):
        raise NotFound("no such loan application")
    return application


def _check(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> int:
    application = _application(session, member_id, p)
    check_approvable(session, deps, application)
    return application.amount_cents


def _execute(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    application = _application(session, req.member_id, p)
    checker = staff.checker_of(session, req)
    if p.get("disburse_to") in tuple(DisburseTo):  # what the request says is what is done
        application.disburse_to = p["disburse_to"]
    approve_application(
        session, deps, checker, application.id, approval_id=req.id, note=req.decision_note
    )
    payout = (p.get("_ports") or {}).get("loan_payout")
    loan = disburse(session, deps, checker, application.id, payout=payout)
    return {"application": application.reference, "loan_id": loan.id, "to": application.disburse_to}


def payout_member(session: Session, request_id: int) -> int | None:
    """The member an approval of this request would pay by M-Pesa (a pending
    ``loan.approve`` of an application to be disbursed by M-Pesa), else None: the edge
    then prepares the payout port (its SIM-swap check calls out) before deciding."""
    req = session.get(ApprovalRequest, request_id)
    if req is None or req.action != ACTION or req.status != ApprovalStatus.PENDING:
        return None
    application_id = engine.payload_of(req).get("application_id")
    application = (
        session.get(LoanApplication, application_id) if type(application_id) is int else None
    )
    if application is None or application.disburse_to != DisburseTo.MPESA:
        return None
    return application.member_id


def bank_payout_member(session: Session, request_id: int) -> int | None:
    """As ``payout_member``, for an application to be paid to the member's bank account."""
    req = session.get(ApprovalRequest, request_id)
    if req is None or req.action != ACTION or req.status != ApprovalStatus.PENDING:
        return None
    application_id = engine.payload_of(req).get("application_id")
    application = (
        session.get(LoanApplication, application_id) if type(application_id) is int else None
    )
    if application is None or application.disburse_to != DisburseTo.BANK:
        return None
    return application.member_id


def _on_reject(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    application = _application(session, req.member_id, p)
    if application.status not in BEFORE_APPROVAL:
        return {}
    reason = " ".join(req.decision_note.split())[:60]
    book.reject(
        session,
        deps,
        staff.checker_of(session, req),
        application.id,
        reason=reason if len(reason) >= 3 else DEFAULT_REASON,
        approval_id=req.id,
    )
    return {"application": application.reference, "status": application.status}


def recommend(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    application_id: int,
    *,
    note: str = "",
    large_threshold_cents: int,
    disburse_to: str | None = None,
) -> ApprovalRequest:
    """The loan officer recommends an application pending approval: a ``loan.approve``
    request for another person to decide. ``disburse_to`` (``savings`` or ``mpesa``)
    changes where the member asked the money to go (say, to savings above M-Pesa's limit,
    or after a SIM swap); the checker approves what the request says."""
    if disburse_to is not None and disburse_to not in tuple(DisburseTo):
        raise InvalidInput("disburse_to must be savings or mpesa", field="disburse_to")
    application = session.get(LoanApplication, application_id)
    if application is None:
        raise NotFound("no such loan application")
    payload: dict[str, Any] = {"application_id": application.id}
    if disburse_to is not None:
        payload["disburse_to"] = disburse_to
    req = engine.request_approval(
        session,
        deps,
        actor,
        ACTION,
        payload=payload,
        member_id=application.member_id,
        note=note or f"loan {application.reference}",
        large_threshold_cents=large_threshold_cents,
    )
    application.approval_id = req.id
    if disburse_to is not None:
        application.disburse_to = disburse_to
    application.updated_at = deps.now()
    session.flush()
    return req


def reject_application(
    session: Session, deps: CoreDeps, actor: Principal, application_id: int, *, reason: str
) -> LoanApplication:
    """Reject an application with ``reason`` (3-60 characters, texted to the member). When
    a recommendation is pending, this is the checker's decision on it (the engine's rules:
    not its maker, a checker's permission); before one, a loan officer's (``loans:recommend``)."""
    text = book.check_reason(reason)
    application = session.get(LoanApplication, application_id)
    if application is None:
        raise NotFound("no such loan application")
    member = get_member(session, application.member_id)
    if not can_access_branch(actor, member.branch):
        raise NotFound("no such loan application")
    pending = (
        session.get(ApprovalRequest, application.approval_id)
        if application.approval_id is not None
        else None
    )
    if pending is not None and pending.status == ApprovalStatus.PENDING:
        engine.decide(session, deps, actor, pending.id, approve=False, note=text)
        return application
    if not actor.has(MAKER_PERMISSION):
        raise engine.NotAChecker("you may not reject loan applications")
    return book.reject(session, deps, actor, application.id, reason=text)


def _check_create(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    products.check_create(session, p)


def _check_change(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    products.check_change(session, p)


def _exec_create(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_create(session, deps, staff.checker_of(session, req), req.id, p)


def _exec_change(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_change(session, deps, staff.checker_of(session, req), req.id, p)


def _check_recover(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    return recovery.check_proposal(session, deps, member_id, p)


def _exec_recover(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    loan_id = p.get("loan_id")
    if isinstance(loan_id, bool) or not isinstance(loan_id, int):
        raise InvalidInput("loan_id is required", field="loan_id")
    loan = session.get(Loan, loan_id)
    if loan is None:
        raise NotFound("no such loan")
    done = recovery.recover(
        session, deps, staff.checker_of(session, req), loan_id, approval_id=req.id,
        as_loan=recovery.as_loan_of(session, loan, p),
    )  # fmt: skip
    return done.as_dict()


def register_actions() -> None:
    write_off.register_actions()  # loan.write_off (core/loans/write_off.py)
    reschedule.register_actions()  # loan.reschedule (core/loans/reschedule.py)
    register(
        recovery.ACTION,
        ActionSpec(
            recovery.MAKER_PERMISSION,
            "recover a defaulted loan",
            True,
            _check_recover,
            _exec_recover,
        ),
    )
    register(
        products.CREATE_ACTION,
        ActionSpec(
            products.MAKER_PERMISSION,
            "create a loan product",
            False,
            _check_create,
            _exec_create,
            checker_permission=products.CHECKER_PERMISSION,
        ),
    )
    register(
        products.CHANGE_ACTION,
        ActionSpec(
            products.MAKER_PERMISSION,
            "change a loan product",
            False,
            _check_change,
            _exec_change,
            checker_permission=products.CHECKER_PERMISSION,
        ),
    )
    engine.register(
        ACTION,
        engine.ActionSpec(
            MAKER_PERMISSION,
            "approve a loan",
            True,
            _check,
            _execute,
            on_reject=_on_reject,
        ),
    )
