"""Loan products (issue 12, part 1): maker-checker creation and change, immutable versions,
exact decimals on both backends, every validation rule, and the demo's seeded products."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.approvals.engine import NotAChecker, SelfApproval
from core.approvals.vocabulary import ApprovalStatus
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput
from core.kernel.permissions import SYSTEM, Principal
from core.loans import products
from core.loans.vocabulary import (
    AllocationOrder,
    Channel,
    EarlyPayoffInterest,
    FeeKind,
    FeeTiming,
    GuarantorPolicy,
    RatePeriod,
    RepaymentMethod,
)
from core.staff import accounts as staff_core
from db.models import ApprovalRequest, AuditEvent
from db.models_loans import LoanProduct, LoanProductFee, LoanProductVersion
from db.session import make_engine

ROOT = Path(__file__).resolve().parents[2]
BIG = 10**12  # the manager threshold does not matter: products name their checker

# Issue 12, "Products seen in the field": development loan, 3x deposits, 1% a month reducing.
DEVELOPMENT: dict[str, Any] = {
    "code": "DEV",
    "name": "Development loan",
    "rate_percent": "1",
    "rate_period": "monthly",
    "method": "reducing_equal_instalments",
    "frequency": "monthly",
    "min_term": 6,
    "max_term": 48,
    "min_amount_cents": 500_000,
    "max_amount_cents": 100_000_000,
    "deposit_multiplier": "3",
    "fees": [{"kind": "processing", "timing": "deducted_at_disbursement", "percent": "1"}],
}


def staff(session: Session, deps: CoreDeps, role: str, name: str) -> Principal:
    row = staff_core.create_staff(
        session, deps, SYSTEM, username=name, full_name=name.title(), role=role,
        password="correct horse battery staple",
    )  # fmt: skip
    return staff_core.principal_for(row)


def ask_create(session: Session, deps: CoreDeps, maker: Principal, **over: Any) -> ApprovalRequest:
    return approvals.request_approval(
        session, deps, maker, products.CREATE_ACTION, payload={**DEVELOPMENT, **over},
        large_threshold_cents=BIG,
    )  # fmt: skip


def ask_change(
    session: Session, deps: CoreDeps, maker: Principal, product_id: int, **changes: Any
) -> ApprovalRequest:
    return approvals.request_approval(
        session, deps, maker, products.CHANGE_ACTION,
        payload={"product_id": product_id, **changes}, large_threshold_cents=BIG,
    )  # fmt: skip


def counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.scalar(select(func.count()).select_from(model)) or 0
        for model in (ApprovalRequest, LoanProduct, LoanProductVersion, LoanProductFee)
    )


@pytest.fixture
def people(db_session: Session, deps: CoreDeps) -> dict[str, Principal]:
    return {
        "officer": staff(db_session, deps, "loan_officer", "lucy.loans"),
        "officer2": staff(db_session, deps, "loan_officer", "otieno.loans"),
        "manager": staff(db_session, deps, "manager", "peter.manager"),
        "manager2": staff(db_session, deps, "manager", "mary.manager"),
        "teller": staff(db_session, deps, "teller", "tom.teller"),
    }


def test_a_new_product_needs_a_second_person_who_is_a_manager(
    db_session: Session, deps: CoreDeps, people: dict[str, Principal]
) -> None:
    req = ask_create(db_session, deps, people["officer"])
    assert req.status == ApprovalStatus.PENDING
    assert req.checker_permission == "approvals:decide_large"
    assert products.list_products(db_session) == []  # nothing exists until approved
    payload = json.loads(req.payload)
    assert payload["code"] == "DEV" and payload["terms"]["guarantor_cover_percent"] == "100"

    with pytest.raises(SelfApproval):
        approvals.decide(db_session, deps, people["officer"], req.id, approve=True)
    with pytest.raises(NotAChecker):  # another loan officer decides loans, not products
        approvals.decide(db_session, deps, people["officer2"], req.id, approve=True)
    assert products.list_products(db_session) == []

    done = approvals.decide(db_session, deps, people["manager"], req.id, approve=True)
    assert done.status == ApprovalStatus.APPROVED, done.result
    [view] = products.list_products(db_session)
    assert (view.code, view.version, view.approval_id) == ("DEV", 1, req.id)
    assert view.terms.rate_percent == Decimal("1") and view.terms.rate_period is RatePeriod.MONTHLY
    assert view.terms.method is RepaymentMethod.REDUCING_EQUAL_INSTALMENTS
    assert view.terms.guarantor_policy is GuarantorPolicy.REQUIRED
    assert view.terms.guarantor_cover_percent == Decimal(100)
    assert view.terms.channels == frozenset({Channel.STAFF})
    assert view.terms.fees_for(12)[0].percent == Decimal(1)
    audited = db_session.scalar(
        select(AuditEvent).where(AuditEvent.action == "loan_product.created")
    )
    assert audited is not None and audited.actor_id == people["manager"].id


def test_a_teller_cannot_ask_for_a_product(
    db_session: Session, deps: CoreDeps, people: dict[str, Principal]
) -> None:
    with pytest.raises(NotAChecker, match="create a loan product"):
        ask_create(db_session, deps, people["teller"])


def test_a_change_makes_a_new_version_and_the_old_one_stays_as_it_was(
    db_session: Session, deps: CoreDeps, people: dict[str, Principal]
) -> None:
    created = ask_create(db_session, deps, people["officer"])
    approvals.decide(db_session, deps, people["manager"], created.id, approve=True)
    [v1] = products.list_products(db_session)

    change = ask_change(
        db_session, deps, people["officer"], v1.id, rate_percent="1.2", max_term=72,
        fees=[{"kind": "processing", "timing": "deducted_at_disbursement", "percent": "0.5"}],
    )  # fmt: skip
    assert json.loads(change.payload)["changed"] == ["fees", "max_term", "rate_percent"]
    assert products.get_product(db_session, v1.id).version == 1  # not before approval
    approvals.decide(db_session, deps, people["manager"], change.id, approve=True)

    now = products.get_product(db_session, v1.id)
    assert (now.version, now.current_version, now.versions) == (2, 2, (1, 2))
    assert now.terms.rate_percent == Decimal("1.2") and now.terms.max_term == 72
    old = products.get_product(db_session, v1.id, version=1)
    assert old.terms == v1.terms and old.version == 1 and old.current_version == 2
    assert products.version_terms(db_session, v1.version_id) == v1.terms  # what a loan keeps

    off = ask_change(db_session, deps, people["manager"], v1.id, active=False)
    approvals.decide(db_session, deps, people["manager2"], off.id, approve=False)  # rejected
    off = ask_change(db_session, deps, people["officer"], v1.id, active=False)
    approvals.decide(db_session, deps, people["manager"], off.id, approve=True)
    assert products.list_products(db_session, active=True) == []
    assert [v.version for v in products.list_products(db_session, active=False)] == [3]
    changed = db_session.scalars(
        select(AuditEvent.after).where(AuditEvent.action == "loan_product.changed")
    ).all()
    assert [json.loads(a or "{}") for a in changed][-1] == {"version": 3, "active": False}


def test_a_change_approved_after_another_fails_instead_of_undoing_it(
    db_session: Session, deps: CoreDeps, people: dict[str, Principal]
) -> None:
    created = ask_create(db_session, deps, people["officer"])
    approvals.decide(db_session, deps, people["manager"], created.id, approve=True)
    [view] = products.list_products(db_session)
    first = ask_change(db_session, deps, people["officer"], view.id, rate_percent="1.1")
    second = ask_change(db_session, deps, people["officer2"], view.id, max_term=60)
    approvals.decide(db_session, deps, people["manager"], first.id, approve=True)
    late = approvals.decide(db_session, deps, people["manager"], second.id, approve=True)
    assert late.status == ApprovalStatus.FAILED
    assert "changed since" in json.loads(late.result or "{}")["detail"]
    now = products.get_product(db_session, view.id)
    assert (now.version, now.terms.max_term, now.terms.rate_percent) == (2, 48, Decimal("1.1"))


def test_a_code_is_taken_once_even_while_it_waits(
    db_session: Session, deps: CoreDeps, people: dict[str, Principal]
) -> None:
    ask_create(db_session, deps, people["officer"])
    with pytest.raises(DomainError, match="waits for approval"):
        ask_create(db_session, deps, people["officer2"], code="dev")


def test_versions_and_fees_are_immutable_on_postgresql(db_session: Session, deps: CoreDeps) -> None:
    products.create_product(db_session, deps, SYSTEM, "DEV", products.parse_terms(terms()))
    for sql in (
        "UPDATE loan_product_versions SET rate_percent = 2",
        "DELETE FROM loan_product_fees",
    ):
        with pytest.raises(DBAPIError, match="immutable"), db_session.begin_nested():
            db_session.execute(text(sql))


def terms(**over: Any) -> dict[str, Any]:
    body = {**products.DEFAULTS, **DEVELOPMENT, **over}
    body.pop("code")
    return body


def test_decimals_are_exact_on_both_backends(any_session: Session, deps: CoreDeps) -> None:
    exact = terms(
        rate_percent="1.2345", deposit_multiplier="3.75", penalty_rate_percent="0.0001",
        guarantor_cover_percent="66.67",
        fees=[
            {"kind": "processing", "timing": "added_to_schedule", "percent": "7.5",
             "min_term": 6, "max_term": 6},
            {"kind": "processing", "timing": "added_to_schedule", "percent": "10",
             "min_term": 7},
            {"kind": "insurance", "timing": "deducted_at_disbursement", "percent": "0.35"},
        ],
    )  # fmt: skip
    view = products.create_product(any_session, deps, SYSTEM, "EXA", products.parse_terms(exact))
    any_session.expire_all()
    back = products.get_product(any_session, view.id).terms
    assert back.rate_percent == Decimal("1.2345")
    assert back.deposit_multiplier == Decimal("3.75")
    assert back.penalty_rate_percent == Decimal("0.0001")
    assert back.guarantor_cover_percent == Decimal("66.67")
    assert [f.percent for f in back.fees_for(6)] == [Decimal("7.5"), Decimal("0.35")]
    assert [f.percent for f in back.fees_for(12)] == [Decimal(10), Decimal("0.35")]
    assert products.terms_payload(back) == products.terms_payload(products.parse_terms(exact))


# Every rule: the field it names. Each refuses with nothing written.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"min_term": 12, "max_term": 6}, "max_term"),
    ({"min_amount_cents": 200, "max_amount_cents": 100}, "max_amount_cents"),
    ({"min_amount_cents": 0}, "min_amount_cents"),
    ({"min_term": 0}, "min_term"),
    ({"max_term": 361}, "max_term"),
    ({"rate_percent": "-1"}, "rate_percent"),
    ({"rate_percent": "12"}, "rate_percent"),  # 12% a month: above the cap
    ({"rate_percent": "121", "rate_period": "annual"}, "rate_percent"),
    ({"rate_percent": "1.00001"}, "rate_percent"),  # more decimals than stored
    ({"rate_percent": 1.2}, "rate_percent"),  # a float, never
    ({"rate_percent": "1e9"}, "rate_percent"),
    ({"rate_percent": "NaN"}, "rate_percent"),
    ({"rate_percent": "abc"}, "rate_percent"),
    ({"deposit_multiplier": "0"}, "deposit_multiplier"),
    ({"deposit_multiplier": "11"}, "deposit_multiplier"),
    ({"method": "balloon"}, "method"),
    ({"frequency": "daily"}, "frequency"),
    ({"rate_period": "weekly"}, "rate_period"),
    ({"rounding": "ten"}, "rounding"),
    ({"name": "x"}, "name"),
    ({"code": "d"}, "code"),
    ({"code": "TOOLONGCODE"}, "code"),
    ({"channels": []}, "channels"),
    ({"channels": ["ussd", "ussd"]}, "channels"),
    ({"channels": ["whatsapp"]}, "channels"),
    ({"guarantor_cover_percent": "0"}, "guarantor_cover_percent"),
    ({"guarantor_cover_percent": "101"}, "guarantor_cover_percent"),
    ({"guarantor_cover_percent": None}, "guarantor_cover_percent"),
    ({"guarantor_policy": "none", "guarantor_cover_percent": "50"}, "guarantor_cover_percent"),
    ({"max_guarantees_per_guarantor": 0}, "max_guarantees_per_guarantor"),
    ({"grace_instalments": 6}, "grace_instalments"),  # nothing left to repay principal
    ({"penalty_grace_days": -1}, "penalty_grace_days"),
    ({"min_membership_months": -1}, "min_membership_months"),
    ({"min_deposits_cents": True}, "min_deposits_cents"),
    ({"auto_approve_ceiling_cents": -5}, "auto_approve_ceiling_cents"),
    ({"fees": [{"kind": "insurance", "timing": "added_to_schedule"}]}, "fees[0].percent"),
    ({"fees": [{"kind": "insurance", "timing": "later", "percent": "1"}]}, "fees[0].timing"),
    ({"fees": [{"kind": "gift", "timing": "added_to_schedule", "percent": "1"}]}, "fees[0].kind"),
    ({"fees": [{"kind": "insurance", "timing": "added_to_schedule", "percent": "26"}]},
     "fees[0].percent"),
    ({"fees": [{"kind": "insurance", "timing": "added_to_schedule", "fixed_cents": 100}]},
     "fees[0].fixed_cents"),
    ({"fees": [{"kind": "processing", "timing": "added_to_schedule", "percent": "1",
                "min_term": 1}]}, "fees[0].min_term"),  # below the product's min_term
    ({"fees": [{"kind": "processing", "timing": "added_to_schedule", "percent": "1"},
               {"kind": "processing", "timing": "added_to_schedule", "percent": "2",
                "min_term": 12}]}, "fees[1].min_term"),  # two processing fees for 12
    ({"unknown_field": 1}, "unknown_field"),
    ({"allocation_order": "principal_first"}, "allocation_order"),
    ({"allocation_order": None}, "allocation_order"),
    ({"allocation_order": ["interest", "principal"]}, "allocation_order"),
    ({"early_payoff_interest": "charge_half"}, "early_payoff_interest"),
    ({"early_payoff_interest": -5}, "early_payoff_interest"),
    ({"early_payoff_interest": "waive" * 10_000}, "early_payoff_interest"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "field"), BAD, ids=[f for _, f in BAD])
def test_every_rule_refuses_naming_its_field_and_writes_nothing(
    db_session: Session,
    deps: CoreDeps,
    people: dict[str, Principal],
    bad: dict[str, Any],
    field: str,
) -> None:
    before = counts(db_session)
    with pytest.raises(InvalidInput) as refused:
        ask_create(db_session, deps, people["officer"], **bad)
    assert refused.value.field == field, refused.value.detail
    assert counts(db_session) == before


def test_a_change_is_validated_as_a_whole_and_must_change_something(
    db_session: Session, deps: CoreDeps, people: dict[str, Principal]
) -> None:
    view = products.create_product(db_session, deps, SYSTEM, "DEV", products.parse_terms(terms()))
    before = counts(db_session)
    for changes, field in (
        ({"min_term": 60}, "max_term"),  # against the current max_term 48
        ({"rate_percent": "1"}, "rate_percent"),  # the same: nothing changes
        ({"code": "NEW"}, "code"),
        ({}, "body"),
    ):
        with pytest.raises(InvalidInput) as refused:
            ask_change(db_session, deps, people["officer"], view.id, **changes)
        assert refused.value.field == field
    assert counts(db_session) == before
    # Guarantors no longer required: the cover goes with them.
    req = ask_change(db_session, deps, people["officer"], view.id, guarantor_policy="none")
    assert json.loads(req.payload)["terms"]["guarantor_cover_percent"] is None


DECIMALS = st.decimals(min_value=0, max_value=10, places=4, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    rate=DECIMALS,
    multiplier=st.decimals(min_value=Decimal("0.01"), max_value=10, places=2),
    low=st.integers(1, 360),
    span=st.integers(0, 360),
    fee=st.decimals(min_value=Decimal("0.0001"), max_value=25, places=4),
)
def test_terms_survive_their_payload_exactly(
    rate: Decimal, multiplier: Decimal, low: int, span: int, fee: Decimal
) -> None:
    raw = terms(
        rate_percent=str(rate), deposit_multiplier=str(multiplier), min_term=low,
        max_term=min(low + span, 360), grace_instalments=0,
        fees=[{"kind": "top_up_commission", "timing": "deducted_at_disbursement",
               "percent": str(fee)}],
    )  # fmt: skip
    parsed = products.parse_terms(raw)
    assert parsed.rate_percent == rate and parsed.deposit_multiplier == multiplier
    assert parsed.fees[0].kind is FeeKind.TOP_UP_COMMISSION
    assert parsed.fees[0].timing is FeeTiming.DEDUCTED
    assert products.parse_terms(products.terms_payload(parsed)) == parsed


def test_the_demo_seeds_the_three_products_seen_in_the_field(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env.update(SACCO_ENV="demo", DATABASE_URL=url, PYTHONPATH=str(ROOT))
    for args in (["migrate"], ["seed-demo"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    engine = make_engine(url)
    with Session(engine) as s:
        seeded = {v.code: v.terms for v in products.list_products(s)}
    engine.dispose()
    assert set(seeded) == {"DEV", "EMG", "INST"}
    dev, emg, inst = seeded["DEV"], seeded["EMG"], seeded["INST"]
    assert (dev.deposit_multiplier, dev.rate_percent, dev.rate_period) == (
        Decimal(3),
        Decimal(1),
        RatePeriod.MONTHLY,
    )
    assert (dev.min_term, dev.max_term) == (6, 48)
    assert (dev.min_amount_cents, dev.max_amount_cents) == (500_000, 100_000_000)
    assert dev.guarantor_cover_percent == Decimal(100)
    assert (emg.max_term, emg.max_amount_cents, emg.rate_percent) == (
        12,
        10_000_000,
        Decimal("1.2"),
    )
    assert inst.guarantor_policy is GuarantorPolicy.NONE
    assert (inst.min_term, inst.max_term, inst.min_amount_cents, inst.max_amount_cents) == (
        1,
        3,
        50_000,
        2_000_000,
    )
    assert [f.percent for f in inst.fees_for(1)] == [Decimal("7.5")]
    assert [f.percent for f in inst.fees_for(3)] == [Decimal(10)]
    for seeded_terms in (dev, emg, inst):  # named in the definitions: today's behaviour
        assert seeded_terms.allocation_order is AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL
        assert seeded_terms.early_payoff_interest is EarlyPayoffInterest.WAIVE
