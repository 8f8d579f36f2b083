"""Loans' maker-checker actions (registered with ``core.approvals.engine``): a new loan
product (``loan_product.create``) and a change to one (``loan_product.change``, also how a
product is deactivated). Asked by a holder of ``loan_products:manage``; decided by another
person holding ``approvals:decide_large`` (a manager): a product sets the terms of every
loan made under it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, register
from core.kernel.deps import CoreDeps
from core.kernel.permissions import Principal
from core.loans import products
from core.staff import accounts as staff
from db.models import ApprovalRequest


def _check_create(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    products.check_create(session, p)


def _check_change(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    products.check_change(session, p)


def _checker(session: Session, req: ApprovalRequest) -> Principal:
    assert req.checker_id is not None
    return staff.principal_for(staff.get_staff(session, req.checker_id))


def _exec_create(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_create(session, deps, _checker(session, req), req.id, p)


def _exec_change(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_change(session, deps, _checker(session, req), req.id, p)


def register_actions() -> None:
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
