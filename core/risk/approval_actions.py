"""Risk's maker-checker action (registered with ``core.approvals.engine``): clearing a
SIM swap after staff checked the member's ID, so withdrawals resume."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, register
from core.kernel.deps import CoreDeps
from core.risk import events as sim_swap_events
from db.models import ApprovalRequest


def _check_sim_swap(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    sim_swap_events.check_clearance(session, deps, member_id, p)


def _exec_sim_swap(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``core.risk.events.clear_event``: withdrawals resume for this phone and swap."""
    return sim_swap_events.clear_event(session, deps, req, p)


def register_actions() -> None:
    register(
        "sim_swap.clear",
        ActionSpec(
            "sim_swap:review",
            "clear a SIM swap after an ID check",
            True,
            _check_sim_swap,
            _exec_sim_swap,
        ),
    )
