"""Staff's maker-checker actions (registered with ``core.approvals.engine``): a staff
account or a partner key that can move money or read personal data, decided by a holder of
``APPROVER_PERMISSION`` who is not its maker."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, on_request, register
from core.kernel.deps import CoreDeps
from core.kernel.permissions import APPROVER_PERMISSION
from core.staff import accounts as staff
from core.staff import alerts
from db.models import ApprovalRequest


def _check_staff(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    staff.check_staff_request(session, deps, member_id, p)


def _exec_staff(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return staff.approve_staff_request(session, deps, req, p)


def _check_key(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> None:
    staff.check_api_client_request(session, deps, member_id, p)


def _exec_key(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return staff.approve_api_client_request(session, deps, req, p)


def register_actions() -> None:
    on_request(alerts.approval_waiting)  # e-mail the checkers a request waits for
    register(
        "staff.create",
        ActionSpec(
            "staff:manage",
            "create a staff account that can move money or read personal data",
            False,
            _check_staff,
            _exec_staff,
            checker_permission=APPROVER_PERMISSION,
        ),
    )
    register(
        "apiclient.create",
        ActionSpec(
            "apiclients:manage",
            "create a partner key that can move money or read personal data",
            False,
            _check_key,
            _exec_key,
            checker_permission=APPROVER_PERMISSION,
        ),
    )
