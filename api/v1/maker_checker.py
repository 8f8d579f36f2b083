"""What every view that asks for a second person shares: a request as the API shows it
(``approval_dict``) and asking for one (``ask``).

Its own module so that the view modules never import each other (an import-linter
contract in pyproject.toml keeps them independent).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from flask import Response, current_app
from sqlalchemy.orm import Session

from api.v1.schemas import ApprovalOut
from api.v1.security import api_state, current, runtime
from core.approvals import engine as approvals
from core.loans import approval_actions as loan_actions
from core.members import exit as member_exit
from core.members.registration import member_balances
from core.payments.bank.transfers import prepare_bank_payout
from core.payments.mpesa.exit_refunds import prepare_exit_refund
from core.payments.mpesa.loan_payouts import prepare_loan_payout
from db.models import ApprovalRequest


def approval_dict(req: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "action": req.action,
        "payload": json.loads(req.payload),
        "amount_cents": req.amount_cents,
        "member_id": req.member_id,
        "branch": req.branch,
        "checker_permission": req.checker_permission,
        "status": req.status,
        "maker_id": req.maker_id,
        "maker_note": req.maker_note,
        "checker_id": req.checker_id,
        "decision_note": req.decision_note,
        "result": json.loads(req.result) if req.result else None,
        "created_at": req.created_at,
        "decided_at": req.decided_at,
    }


def cash_answer(session: Session, outcome: Any, member_id: int) -> Any:
    """What a till's cash call (deposit or withdrawal) answers: its pending request above
    the till limit (202), else the entry with the member's balances (201; 200 a replay)."""
    if isinstance(outcome, ApprovalRequest):
        pending = ApprovalOut().dump(approval_dict(outcome))
        return Response(json.dumps(pending), status=202, mimetype="application/json")
    out = {
        "entry_reference": outcome.reference,
        "created": outcome.created,
        "balances": asdict(member_balances(session, member_id)),
    }
    return out, (201 if outcome.created else 200)


def ask(action: str, member_id: int | None, payload: dict[str, Any], note: str) -> Any:
    """Record a pending maker-checker request for ``action``; answers it with 202."""
    rt = runtime()
    with rt.unit_of_work() as s:
        req = approvals.request_approval(
            s, rt.deps, current(), action, payload=payload, member_id=member_id, note=note,
            large_threshold_cents=api_state().large_threshold_cents,
        )  # fmt: skip
    return approval_dict(req), 202


def decision_ports(session: Session, request_id: int) -> dict[str, Any]:
    """What deciding this request may need from the edge (``core.approvals.engine.decide``
    ``ports``): for a loan to be paid by M-Pesa, the payout port, its member's SIM-swap
    status assessed now (it may call the provider), before the decision takes its locks.
    For a loan paid to a bank account, the bank payout port; for a member's exit refunded by
    M-Pesa, the refund port likewise (``core.payments.mpesa.exit_refunds``). Empty when
    M-Pesa is not configured: such an approval then fails ``mpesa_unavailable`` and nothing
    is done."""
    bank_member = loan_actions.bank_payout_member(session, request_id)
    bank_policy = current_app.extensions.get("sacco_bank_policy")
    if bank_member is not None and bank_policy is not None:
        return {"loan_payout": prepare_bank_payout(session, bank_member, bank_policy)}
    policy = current_app.extensions.get("sacco_mpesa_policy")
    checker = current_app.extensions.get("sacco_sim_swap")
    refunded = member_exit.refund_member(session, request_id)
    if refunded is not None and policy is not None and checker is not None:
        refund = prepare_exit_refund(
            session, runtime().deps, member_id=refunded, policy=policy, sim_swap=checker
        )
        return {"exit_refund": refund}
    member_id = loan_actions.payout_member(session, request_id)
    if member_id is None or policy is None or checker is None:
        return {}
    port = prepare_loan_payout(
        session, runtime().deps, member_id=member_id, policy=policy, sim_swap=checker
    )
    return {"loan_payout": port}
