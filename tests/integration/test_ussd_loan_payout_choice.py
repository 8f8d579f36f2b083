"""USSD Apply: the member chooses where the loan goes, savings or M-Pesa (issue 12, parts
4 and 7), through the Flask client with the gateway's form fields, on PostgreSQL and the
Redis session store. M-Pesa's rules (its per-payout maximum and minimum, the SIM-swap
guard) refuse it with the reason on the choice, before anything is written; an
auto-approved loan goes to the phone in the applying hop (the B2C hold and payout row);
one that waits for guarantors or staff keeps the choice for its approval."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members.registration import member_account_ids
from db.models import Hold, Member
from db.models_loans import Loan, LoanApplication, LoanInstalment
from db.models_mpesa import B2CPayout
from tests.integration.test_loan_mpesa_disbursement import Checker
from tests.integration.test_ussd_loans import (
    INSTANT,
    INSTANT_FEES,
    KES,
    PIN,
    count,
    loans_menu,
    sms,
)
from tests.loanutil import funded_member, make_product
from tests.ussdutil import Phone
from ussd.views import EXTENSION


@pytest.fixture(autouse=True)
def never_swapped(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SIM-swap provider answers: never swapped (a test that needs a swap sets one)."""
    monkeypatch.setattr(app.extensions[EXTENSION].money, "sim_swap", Checker())


@pytest.fixture
def instant(db_session: Session, deps: CoreDeps) -> str:
    return make_product(db_session, deps, fees=INSTANT_FEES, **INSTANT).code


def to_confirmation(
    client: FlaskClient, member: Member, amount: str, way: str
) -> tuple[str, Phone]:
    """Loans, PIN, Apply, the first product, the amount, one month, where to: the screen."""
    phone = loans_menu(client, member)
    phone.send("2")
    phone.send("1")
    phone.send(amount)
    assert phone.send("1").startswith(("CON Where should the loan money go?", "CON Pesa za"))
    return phone.send(way), phone


def savings(s: Session, member: Member) -> tuple[int, int]:
    view = ledger.get_balance(s, member_account_ids(s, member.id)["savings"])
    return view.balance_cents, view.held_cents


def writes(s: Session) -> tuple[int, ...]:
    return tuple(count(s, model) for model in (LoanApplication, Loan, B2CPayout, Hold))


def test_an_instant_loan_chosen_to_mpesa_is_sent_to_the_phone_in_the_applying_hop(
    client: FlaskClient, db_session: Session, deps: CoreDeps, instant: str
) -> None:
    s = db_session
    member = funded_member(s, deps, deposits_cents=10_000 * KES, name="Fatuma Ali")
    confirm, phone = to_confirmation(client, member, "5000", "2")
    assert confirm == (
        "CON Loan KES 5,000, 1 months\nInstalment KES 5,375\nTotal KES 5,375\n"
        "Fees KES 375\nTo M-Pesa\n1. Confirm\n2. Cancel"
    )
    done = phone.send("1")  # the PIN was given at the Loans menu
    loan = s.scalars(select(Loan).where(Loan.member_id == member.id)).one()
    first = s.scalars(select(LoanInstalment).where(LoanInstalment.loan_id == loan.id)).one()
    assert done == (
        f"END Loan {loan.reference} approved: KES 5,000 is on its way to M-Pesa "
        f"{member.msisdn}. First instalment KES 5,375 due {first.due_on:%d/%m/%Y}."
    )
    application = s.get(LoanApplication, loan.application_id)
    assert application is not None and application.disburse_to == "mpesa"
    payout = s.scalars(select(B2CPayout).where(B2CPayout.member_id == member.id)).one()
    assert (payout.purpose, payout.amount_cents, payout.fee_cents, payout.msisdn) == (
        "loan", 5_000 * KES, 0, member.msisdn,
    )  # fmt: skip
    # The loan reached savings and is held there until M-Pesa's result posts or frees it.
    assert savings(s, member) == (5_000 * KES, 5_000 * KES)
    (text,) = sms(s, member, "loan_disbursed_mpesa")
    assert f"KES 5,000 on its way to M-Pesa {member.msisdn}" in text
    assert sms(s, member, "loan_disbursed") == []
    assert verify_ledger(s).ok


def test_a_loan_above_mpesas_maximum_is_refused_on_the_choice_and_savings_still_works(
    app: Flask, client: FlaskClient, db_session: Session, deps: CoreDeps, instant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    s = db_session
    money: Any = app.extensions[EXTENSION].money
    monkeypatch.setattr(money, "policy", replace(money.policy, loan_payout_max_cents=3_000 * KES))
    member = funded_member(s, deps, deposits_cents=10_000 * KES, name="Fatuma Ali")
    before = writes(s)
    refused, phone = to_confirmation(client, member, "5000", "2")
    assert refused == (
        "CON M-Pesa sends at most KES 3,000 at once: choose Savings.\n"
        f"Where should the loan money go?\n1. Savings\n2. M-Pesa {member.msisdn}"
    )
    assert writes(s) == before
    assert phone.send("1").endswith("Fees KES 375\nTo Savings\n1. Confirm\n2. Cancel")
    assert phone.send("1").startswith("END Loan ") and "is in your savings" in phone.last
    assert savings(s, member) == (5_000 * KES, 0)
    assert s.scalar(select(func.count()).select_from(B2CPayout)) == before[2]
    assert verify_ledger(s).ok


def test_too_little_for_mpesa_is_refused_on_the_choice_in_swahili(
    app: Flask, client: FlaskClient, db_session: Session, deps: CoreDeps, instant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    money: Any = app.extensions[EXTENSION].money
    monkeypatch.setattr(money, "policy", replace(money.policy, withdrawal_min_cents=600 * KES))
    member = funded_member(db_session, deps, deposits_cents=10_000 * KES, name="Fatuma Ali")
    member.language = "sw"
    db_session.flush()
    before = writes(db_session)
    refused, _ = to_confirmation(client, member, "500", "2")
    assert refused == (
        "CON Kiasi ni kidogo mno kwa M-Pesa (chini KES 600): chagua Akiba.\n"
        f"Pesa za mkopo ziende wapi?\n1. Akiba\n2. M-Pesa {member.msisdn}"
    )
    assert writes(db_session) == before


def test_a_recent_sim_swap_refuses_mpesa_when_applying_and_writes_no_application(
    app: Flask, client: FlaskClient, db_session: Session, deps: CoreDeps, instant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    s = db_session
    money: Any = app.extensions[EXTENSION].money
    now = deps.now()
    swapped = Checker(swapped=True, last_swap_at=now.astimezone(UTC) - timedelta(days=1))
    monkeypatch.setattr(money, "sim_swap", swapped)
    member = funded_member(s, deps, deposits_cents=10_000 * KES, name="Fatuma Ali")
    before = writes(s)
    confirm, phone = to_confirmation(client, member, "5000", "2")
    assert confirm.endswith("To M-Pesa\n1. Confirm\n2. Cancel")
    assert phone.send("1") == (
        "CON Your SIM changed recently, so M-Pesa is paused: choose Savings.\n"
        f"Where should the loan money go?\n1. Savings\n2. M-Pesa {member.msisdn}"
    )
    assert writes(s) == before
    assert sms(s, member, "loan_disbursed_mpesa") == []


def test_an_application_waiting_for_guarantors_keeps_the_mpesa_choice(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    make_product(db_session, deps, name="Development loan")
    member = funded_member(db_session, deps, deposits_cents=20_000 * KES, name="Amina Wanjiru")
    phone = loans_menu(client, member)
    for typed in ("2", "1", "50000", "12"):
        phone.send(typed)
    assert phone.send("2").endswith("Fees KES 500\nTo M-Pesa\n1. Confirm\n2. Cancel")
    assert "guarantors must pledge KES 30,000" in phone.send("1")
    application = db_session.scalars(
        select(LoanApplication).where(LoanApplication.member_id == member.id)
    ).one()
    assert (application.status, application.disburse_to) == ("awaiting_guarantors", "mpesa")
    assert count(db_session, B2CPayout) == 0  # paid by M-Pesa only once approved


def test_without_mpesa_the_choice_offers_savings_only(
    app: Flask, client: FlaskClient, db_session: Session, deps: CoreDeps, instant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(app.extensions[EXTENSION], "money", None)
    member = funded_member(db_session, deps, deposits_cents=10_000 * KES, name="Fatuma Ali")
    phone = Phone(client, member.msisdn)
    phone.dial()
    phone.send("5")  # no Deposit or Withdraw: Loans is fifth
    for typed in (PIN, "2", "1", "5000"):
        phone.send(typed)
    assert phone.send("1") == "CON Where should the loan money go?\n1. Savings"
    assert phone.send("2") == ("CON Invalid choice.\nWhere should the loan money go?\n1. Savings")
