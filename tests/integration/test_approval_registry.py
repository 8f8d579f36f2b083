"""The approvals engine knows no action: each domain registers its own (core/actions.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.kernel.permissions import Principal
from db.models import ApprovalRequest, StaffUser

EVERY_ACTION = {
    "kyc.approve": "core.members.approval_actions",
    "member.status": "core.members.approval_actions",
    "member.pin_reset": "core.members.approval_actions",
    "deposit.cash": "core.members.approval_actions",
    "member.phone_change": "core.members.approval_actions",
    "ledger.adjustment": "core.accounting.adjustments",
    "loan.approve": "core.loans.approval_actions",
    "loan.recover": "core.loans.approval_actions",
    "suspense.reassign": "core.payments.mpesa.approval_actions",
    "payout.resolve": "core.payments.mpesa.approval_actions",
    "suspense.duplicate": "core.payments.mpesa.approval_actions",
    "sim_swap.clear": "core.risk.approval_actions",
    "staff.create": "core.staff.approval_actions",
    "apiclient.create": "core.staff.approval_actions",
    "loan_product.create": "core.loans.approval_actions",
    "loan_product.change": "core.loans.approval_actions",
    "loan.write_off": "core.loans.write_off",
    "loan.reschedule": "core.loans.reschedule",
    "withdrawal.cash": "core.savings.approval_actions",
    "till.close": "core.savings.approval_actions",
    "savings_product.create": "core.savings.approval_actions",
    "savings_product.change": "core.savings.approval_actions",
    "year_end.post": "core.savings.approval_actions",
    "share.transfer": "core.savings.approval_actions",
    "member.exit": "core.members.exit",
    "bank_transfer.resolve": "core.payments.bank.approval_actions",
    "bank.sweep": "core.payments.bank.approval_actions",
    "checkoff.post": "core.checkoff.approval_actions",
    "checkoff.reassign": "core.checkoff.approval_actions",
    "member.death": "core.members.death",
}


def test_every_action_is_registered_by_the_domain_that_owns_it() -> None:
    assert {
        name: spec.execute.__module__ for name, spec in approvals.ACTIONS.items()
    } == EVERY_ACTION


def test_a_taken_name_cannot_be_registered_again_with_another_action() -> None:
    spec = approvals.ACTIONS["kyc.approve"]
    approvals.register("kyc.approve", spec)  # the same again: nothing happens
    with pytest.raises(ValueError, match="already registered"):
        approvals.register(
            "kyc.approve", approvals.ActionSpec("x", "y", True, spec.check, spec.execute)
        )


def test_an_unknown_action_is_refused_when_asked_and_when_decided(
    db_session: Session, deps: CoreDeps
) -> None:
    maker = StaffUser(username="maker.reg", full_name="M", role="manager", password_hash="x")
    checker = StaffUser(username="checker.reg", full_name="C", role="manager", password_hash="x")
    db_session.add_all([maker, checker])
    db_session.flush()
    everything = frozenset({"ledger:adjust", "approvals:decide", "approvals:decide_large"})
    asker = Principal("staff", maker.id, maker.username, "manager", None, everything)
    with pytest.raises(InvalidInput, match="unknown action"):
        approvals.request_approval(
            db_session, deps, asker, "loan.forgive", payload={}, large_threshold_cents=1
        )
    # A request stored by a version that knew an action this one does not: a clear refusal.
    stray = ApprovalRequest(
        action="loan.forgive", payload=json.dumps({}), status="pending", maker_id=maker.id,
        checker_permission="approvals:decide", created_at=deps.now(), maker_note="",
    )  # fmt: skip
    db_session.add(stray)
    db_session.flush()
    decider = Principal("staff", checker.id, checker.username, "manager", None, everything)
    with pytest.raises(DomainError, match="no such action"):
        approvals.decide(db_session, deps, decider, stray.id, approve=True)
