"""The check-off maker-checker action (registered with ``core.approvals.engine``):
``checkoff.post``, asked by the clerk who uploads a remittance (``checkoff:upload``),
decided by another person holding ``checkoff:post`` (a manager); approval posts it. And
``checkoff.reassign``: a line left in check-off clearing moved to a member, asked and
decided by the same permissions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, register
from core.checkoff import service
from core.kernel.deps import CoreDeps
from core.staff import accounts as staff
from db.models import ApprovalRequest


def _check(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> int:
    return service.check_post(session, p).total_cents


def _execute(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return service.post_remittance(session, deps, staff.checker_of(session, req), p)


def _reject(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return service.reject_remittance(session, p)


def _check_reassign(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    return service.check_reassign(session, member_id, p)


def _execute_reassign(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    assert req.member_id is not None  # needs_member
    return service.reassign_line(
        session, deps, staff.checker_of(session, req), req.member_id, p, approval_id=req.id
    )


def register_actions() -> None:
    register(
        service.POST_ACTION,
        ActionSpec(
            service.MAKER_PERMISSION, "post an employer's check-off remittance", False,
            _check, _execute, checker_permission=service.CHECKER_PERMISSION, on_reject=_reject,
        ),
    )  # fmt: skip
    register(
        service.REASSIGN_ACTION,
        ActionSpec(
            service.MAKER_PERMISSION, "move an unmatched check-off line to a member", True,
            _check_reassign, _execute_reassign, checker_permission=service.CHECKER_PERMISSION,
        ),
    )  # fmt: skip
