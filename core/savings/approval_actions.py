"""Savings' maker-checker actions (registered with ``core.approvals.engine``).

``savings_product.create`` / ``savings_product.change`` (also how a product's rate is set
and how one is deactivated): asked by a holder of ``savings_products:manage``, decided by
another person holding ``approvals:decide_large`` (a manager): a product's rate is what
the SACCO owes every member under it (``core.savings.products``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, register
from core.kernel.deps import CoreDeps
from core.savings import products
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


def _exec_create(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_create(session, deps, staff.checker_of(session, req), req.id, p)


def _exec_change(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_change(session, deps, staff.checker_of(session, req), req.id, p)


def register_actions() -> None:
    for action, describe, check, execute in (
        (products.CREATE_ACTION, "create a savings product", _check_create, _exec_create),
        (products.CHANGE_ACTION, "change a savings product", _check_change, _exec_change),
    ):
        register(
            action,
            ActionSpec(
                products.MAKER_PERMISSION, describe, False, check, execute,
                checker_permission=products.CHECKER_PERMISSION,
            ),
        )  # fmt: skip
