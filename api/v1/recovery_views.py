"""Default recovery over the staff API (issue 13, part 7; docs/loans/recovery.md): the
preview of who would pay what, and the proposal, a ``loan.recover`` maker-checker request
that another person decides at ``/api/v1/approvals/{id}/approve``. Branch-bound staff see
only their branch's loans (others are 404)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.maker_checker import approval_dict
from api.v1.security import api_state, current, requires, runtime
from core.loans import recovery

blp = Blueprint("api_recovery", __name__, url_prefix="/api/v1", description="Loan recovery")


@blp.route("/loans/<int:loan_id>/recovery", methods=["GET"])
@requires("loans:read")
@blp.response(200, sc.RecoveryPreviewOut)
def preview(loan_id: int) -> Any:
    """Who would pay what if the defaulted loan were recovered now: the payoff, what the
    borrower's free deposits pay first, each guarantor's share of the rest (pro rata to
    their pledge, never above what it still holds) and what would be left. 409
    ``loan_state`` (``not_defaulted``: not doubtful or loss at the last close of day;
    ``not_active``)."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return recovery.plan(s, rt.deps, loan_id, current()).as_dict()


@blp.route("/loans/<int:loan_id>/recovery", methods=["POST"])
@requires("loans:recover")
@blp.arguments(sc.RecoveryIn)
@blp.response(202, sc.ApprovalOut)
def propose(body: dict[str, Any], loan_id: int) -> Any:
    """Propose recovering a defaulted loan: a ``loan.recover`` request (202) whose
    ``payload.preview`` is who pays what as proposed; another person approves it
    (``approvals:decide``, above the manager threshold ``approvals:decide_large``), and the
    approval recovers with the figures of that moment. ``as_loan`` (guarantee ids) with
    ``recovery_product`` and ``recovery_term``: those guarantors' shares become recovery
    loans to them instead of leaving their deposits. 409 ``loan_state`` when the loan is
    not defaulted (or the product deducts fees: ``recovery_product_fees``),
    ``product_unavailable``, ``duplicate`` when a recovery of this member's is already
    pending; 422 bad input."""
    rt = runtime()
    with rt.unit_of_work() as s:
        req = recovery.propose(
            s, rt.deps, current(), loan_id, note=body["note"],
            large_threshold_cents=api_state().large_threshold_cents, as_loan=body["as_loan"],
            recovery_product=body["recovery_product"], recovery_term=body["recovery_term"],
        )  # fmt: skip
        return approval_dict(req), 202
