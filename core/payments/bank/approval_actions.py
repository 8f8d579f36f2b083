"""Bank maker-checker actions: a transfer only staff can settle (``bank_transfer.resolve``)
and a float sweep above the threshold (``bank.sweep``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, register
from core.kernel.deps import CoreDeps
from core.payments.bank.sweeps import check_sweep, sweep_dict, sweep_float
from core.payments.bank.transfers import check_resolution, resolve_transfer
from core.staff.accounts import checker_of
from db.models import ApprovalRequest


def _check_resolve(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    return check_resolution(session, p)


def _exec_resolve(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return resolve_transfer(
        session, deps, transfer_id=p["transfer_id"], resolution=p["resolution"],
        bank_reference=p.get("bank_reference") or None, staff=f"approval {req.id}",
    )  # fmt: skip


def _check_sweep(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> int:
    return check_sweep(session, p.get("amount_cents"))


def _exec_sweep(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    row = sweep_float(
        session, deps, checker_of(session, req), amount_cents=p["amount_cents"],
        idempotency_key=f"approval:{req.id}", approval_id=req.id,
    )  # fmt: skip
    return sweep_dict(row)


def register_actions() -> None:
    register(
        "bank_transfer.resolve",
        ActionSpec(
            "ledger:adjust", "settle a bank transfer only staff can settle", False,
            _check_resolve, _exec_resolve, one_pending_per_member=False,
        ),
    )  # fmt: skip
    register(
        "bank.sweep",
        ActionSpec(
            "ledger:adjust", "sweep the M-Pesa float to the bank", False, _check_sweep,
            _exec_sweep, one_pending_per_member=False,
        ),
    )  # fmt: skip
