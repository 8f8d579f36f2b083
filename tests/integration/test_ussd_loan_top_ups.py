"""Top-ups on USSD (issue 12, part 7): My loans > an active loan > Top up, through the Flask
client with the gateway's form fields, on PostgreSQL and the Redis session store. The
happy path clears the old loan and pays the rest to savings in one ledger entry; each
refusal of ``core.loans.top_ups`` (not offered, too early, nothing to receive, the loan no
longer active) and arrears is a clear screen that writes nothing; without the right PIN
nothing is applied for. The first loans are paid out weeks before today's (real) clock:
the dates are relative to it, never fixed."""

from __future__ import annotations

import dataclasses
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal
from uuid import uuid4

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.money import format_cents
from core.ledger import entries as ledger
from core.ledger.chart import Purpose
from core.ledger.verify import verify_ledger
from core.loans import book, repayments
from core.loans.terms import current_terms, version_terms
from core.members.registration import member_account_ids
from db.models import Hold, JournalEntry, Member, OutboxMessage
from db.models_loans import Loan, LoanApplication, LoanInstalment, LoanRepayment
from runtime import Runtime
from tests.integration.test_ussd_loans import KES, PIN, Statements, loans_menu, sms
from tests.loanutil import funded_member, make_product, pay
from tests.ussdutil import Phone
from ussd.actions import perform
from ussd.engine import Effect, route
from ussd.menus import TOP_UP_ERRORS

TOP_UP_FEES = [
    {"kind": "processing", "percent": Decimal("1.0000"), "timing": "deducted_at_disbursement"},
    {"kind": "top_up_commission", "percent": Decimal("2.0000"),
     "timing": "deducted_at_disbursement"},
]  # fmt: skip


def on_day(deps: CoreDeps, moment: datetime) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: moment)


def shifted(deps: CoreDeps, days_ago: int) -> CoreDeps:
    day = (deps.now() - timedelta(days=days_ago)).date()
    return on_day(deps, datetime.combine(day, time(9), tzinfo=deps.now().tzinfo))


def first_loan(
    s: Session,
    deps: CoreDeps,
    *,
    days_ago: int = 40,
    paid: int = 1,
    deposits_cents: int = 50_000 * KES,
    **product: Any,
) -> tuple[Loan, Member]:
    """KES 100,000 over 12 months at 1% a month, paid to savings ``days_ago`` days ago
    (auto-approved, no guarantors), its first ``paid`` instalments paid by M-Pesa on their
    due dates; the product offers top-ups after one instalment unless changed."""
    changes: dict[str, Any] = {
        "name": "Development loan",
        "rounding": "cent",
        "auto_approve_ceiling_cents": 500_000 * KES,
        "guarantor_policy": "none",
        "guarantor_cover_percent": None,
        "top_up_min_instalments_paid": 1,
        **product,
    }
    prod = make_product(s, deps, fees=TOP_UP_FEES, **changes)
    member = funded_member(s, deps, deposits_cents=deposits_cents, name="Amina Wanjiru")
    then = shifted(deps, days_ago)
    application = book.apply_for_loan(
        s, then, member.id, prod.code, 100_000 * KES, 12, "staff", f"first-{uuid4().hex[:10]}"
    )
    loan = s.scalars(select(Loan).where(Loan.application_id == application.id)).one()
    rows = s.scalars(
        select(LoanInstalment).where(LoanInstalment.loan_id == loan.id)
        .order_by(LoanInstalment.number)
    ).all()  # fmt: skip
    for row in rows[:paid]:
        on_due = on_day(deps, datetime.combine(row.due_on, time(9), tzinfo=then.now().tzinfo))
        pay(s, on_due, loan, row.due_cents, f"mpesa:receipt:TU{loan.id:04d}{row.number:03d}")
    return loan, member


def savings(s: Session, member: Member) -> int:
    return ledger.get_balance(s, member_account_ids(s, member.id)[Purpose.SAVINGS]).balance_cents


def footprint(s: Session) -> tuple[int, ...]:
    return tuple(
        int(s.scalar(select(func.count()).select_from(model)) or 0)
        for model in (LoanApplication, Loan, LoanRepayment, Hold, JournalEntry, OutboxMessage)
    )


def percent_of(cents: int, percent: str) -> int:
    return int((Decimal(cents) * Decimal(percent) / 100).quantize(Decimal(1), ROUND_HALF_UP))


def to_top_up(client: FlaskClient, member: Member, loan: Loan) -> Phone:
    """Loans (PIN), My loans, the loan, which offers Top up."""
    phone = loans_menu(client, member)
    assert phone.send("3").startswith(f"CON My loans 1/1\n1. {loan.reference} Repaying")
    assert phone.send("1").endswith("Arrears KES 0\n1. Top up\n0 Back 00 Home")
    return phone


# ------------------------------------------------------------------ the happy path


def test_a_top_up_on_the_phone_clears_the_old_loan_and_pays_the_rest_to_savings(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps)
    payoff = repayments.position(s, deps, old.id).payoff_cents
    # The principal left after one instalment of 8,884.88 (7,884.88 principal, 1,000
    # interest); the interest not yet due is waived on an early payoff (the default rule).
    assert payoff == 9_211_512
    before = savings(s, member)
    phone = to_top_up(client, member, old)
    assert phone.send("1") == (
        f"CON Top up {old.reference}: balance {format_cents(payoff)}. New loan up to "
        "KES 150,000.\nEnter amount in KES:"  # 3 x 50,000 deposits: the old loan left out
    )
    assert phone.send("120000") == ("CON Top up to KES 120,000: repay over how many months? (1-48)")
    commission = percent_of(payoff, "2")
    processing = 1_200 * KES
    received = 120_000 * KES - payoff - commission - processing
    terms = current_terms(s, version_terms(s, old.product_version_id).code)
    instalment = book.quote(terms, 120_000 * KES, 12, deps).instalment_cents
    assert phone.send("12") == (
        f"CON Clears {format_cents(payoff)}\n"
        f"Commission & fees {format_cents(commission + processing)}\n"
        f"To savings {format_cents(received)}\nRepay 12 x {format_cents(instalment)}\n"
        "1. Confirm\n2. Cancel"
    )
    assert s.scalar(select(func.count()).select_from(LoanApplication)) == 1  # the old one
    done = phone.send("1")  # the PIN was given at the Loans menu
    new = s.scalars(select(Loan).where(Loan.top_up_of_loan_id == old.id)).one()
    first = s.scalars(
        select(LoanInstalment).where(LoanInstalment.loan_id == new.id)
        .order_by(LoanInstalment.number).limit(1)
    ).one()  # fmt: skip
    assert done == (
        f"END Loan {old.reference} is paid off and new loan {new.reference} gave "
        f"{format_cents(received)} to your savings. First instalment "
        f"{format_cents(first.due_cents)} due {first.due_on:%d/%m/%Y}."
    )
    s.refresh(old)
    assert old.status == "closed"
    assert ledger.get_balance(s, old.account_id).balance_cents == 0
    assert new.status == "active" and new.principal_cents == 120_000 * KES
    assert ledger.get_balance(s, new.account_id).balance_cents == 120_000 * KES
    assert (new.top_up_payoff_cents, new.top_up_commission_cents) == (payoff, commission)
    assert savings(s, member) == before + received  # the net, to the cent
    application = s.get(LoanApplication, new.application_id)
    assert application is not None
    assert (application.channel, application.disburse_to) == ("ussd", "savings")
    [text] = sms(s, member, "loan_topped_up")
    assert old.reference in text and format_cents(received) in text
    assert verify_ledger(s).ok


def test_the_same_top_up_in_swahili(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps)
    member.language = "sw"
    s.flush()
    payoff = repayments.position(s, deps, old.id).payoff_cents
    phone = loans_menu(client, member)
    assert phone.send("3") == f"CON Mikopo yangu 1/1\n1. {old.reference} Unalipwa"
    assert phone.send("1").endswith("Malimbikizo KES 0\n1. Ongeza\n0 Rudi 00 Mwanzo")
    assert phone.send("1") == (
        f"CON Ongeza {old.reference}: salio {format_cents(payoff)}. Mkopo mpya hadi "
        "KES 150,000.\nAndika kiasi:"
    )
    assert phone.send("120000") == "CON Ongeza hadi KES 120,000: utalipa kwa miezi ngapi? (1-48)"
    assert phone.send("12").startswith(f"CON Inalipa {format_cents(payoff)}\nKamisheni na ada ")
    assert phone.send("1").startswith(f"END Mkopo {old.reference} umelipwa na mkopo mpya ")
    assert verify_ledger(s).ok


def test_a_top_up_above_the_auto_approval_ceiling_waits_for_staff_and_clears_nothing_yet(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps, auto_approve_ceiling_cents=110_000 * KES)
    before = savings(s, member)
    phone = to_top_up(client, member, old)
    for typed in ("1", "120000", "12"):
        phone.send(typed)
    done = phone.send("1")
    application = s.scalars(
        select(LoanApplication).where(LoanApplication.top_up_of_loan_id == old.id)
    ).one()
    assert done == (
        f"END Top-up applied: ref {application.reference}. Loan {old.reference} is paid off "
        "when it is approved; we will SMS you."
    )
    assert application.status == "pending_approval"
    s.refresh(old)
    assert old.status == "active" and savings(s, member) == before
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ refusals


def test_a_product_without_top_ups_ends_saying_so_and_writes_nothing(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps, top_up_min_instalments_paid=None)
    phone = to_top_up(client, member, old)
    seen = footprint(s)
    assert phone.send("1") == (
        "END This loan cannot be topped up. Nothing was changed. See My limit for a new loan."
    )
    assert footprint(s) == seen


def test_too_early_ends_with_the_instalments_paid_and_needed(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps, top_up_min_instalments_paid=3)
    phone = to_top_up(client, member, old)
    seen = footprint(s)
    assert phone.send("1") == (
        "END A top-up needs 3 instalments paid in full; you have paid 1. Nothing was changed."
    )
    assert footprint(s) == seen


def test_arrears_on_the_loan_end_with_how_to_pay_them(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    # Paid out 75 days ago: the first instalment paid, the second overdue.
    old, member = first_loan(s, deps, days_ago=75)
    phone = loans_menu(client, member)
    phone.send("3")
    assert "\nArrears KES " in phone.send("1") and "Arrears KES 0\n" not in phone.last
    seen = footprint(s)
    assert phone.send("1") == (
        "END Your loan is in arrears. Pay it up under Repay a loan, then top up. "
        "Nothing was changed."
    )
    assert footprint(s) == seen


def test_an_amount_that_leaves_nothing_is_asked_again_at_the_amount_and_at_the_quote(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps)
    payoff = repayments.position(s, deps, old.id).payoff_cents
    phone = to_top_up(client, member, old)
    prompt = phone.send("1").removeprefix("CON ")
    seen = footprint(s)
    # Not even the balance: refused on the amount itself.
    assert phone.send("50000") == "CON Nothing would be left for you: enter more.\n" + prompt
    # Above the balance, but the commission and the fee (known with the term) take the rest.
    just_above = format_cents(payoff + 100 * KES).removeprefix("KES ").replace(",", "")
    assert phone.send(just_above).startswith("CON Top up to ")
    assert phone.send("12") == "CON Nothing would be left for you: enter more.\n" + prompt
    # Above the limit: asked again with the limit.
    assert phone.send("150001") == "CON Above your limit of KES 150,000.\n" + prompt
    assert footprint(s) == seen
    assert phone.send("120000").startswith("CON Top up to KES 120,000")


def test_a_loan_repaid_after_it_was_shown_cannot_be_topped_up(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps)
    phone = to_top_up(client, member, old)
    payoff = repayments.position(s, deps, old.id).payoff_cents
    pay(s, deps, old, payoff, "mpesa:receipt:TUCLOSED01")  # repaid by paybill meanwhile
    seen = footprint(s)
    assert phone.send("1") == (
        "END Only a loan you are repaying can be topped up. Nothing was changed."
    )
    assert footprint(s) == seen
    # My loans now shows it as repaid, with no Top up.
    again = loans_menu(client, member)
    assert again.send("3") == f"CON My loans 1/1\n1. {old.reference} Repaid"
    assert again.send("1").endswith("Arrears KES 0\n0 Back 00 Home")


def test_another_members_loan_in_a_forged_choice_is_refused_as_not_found(
    db_session: Session, deps: CoreDeps, runtime: Runtime
) -> None:
    s = db_session
    _, member = first_loan(s, deps)
    other, _ = first_loan(s, deps)
    seen = footprint(s)
    kinds: tuple[tuple[str, Literal["load", "act"]], ...] = (
        ("top_up_offer", "load"), ("top_up_quote", "load"), ("top_up_apply", "act"),
    )  # fmt: skip
    for name, kind in kinds:
        effect = Effect(kind, name, "en", inputs={"loan": f"l{other.id}", "amount": "12000000",
                        "term": "12"}, key=f"ussd:forged:{name}")  # fmt: skip
        result = perform(runtime, effect, member_id=member.id, msisdn=member.msisdn)
        assert (result.ok, result.error) == (False, "not_found")
        assert route(TOP_UP_ERRORS, result.error) == "tu_not_active"
    assert footprint(s) == seen


def test_without_the_right_pin_a_resumed_top_up_applies_for_nothing(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    old, member = first_loan(s, deps)
    phone = to_top_up(client, member, old)
    for typed in ("1", "120000"):
        phone.send(typed)
    assert phone.send("12").startswith("CON Clears ")  # the confirmation, then the call drops
    assert phone.hang_up() == 200
    seen = footprint(s)
    resumed = Phone(client, member.msisdn)
    assert resumed.dial().startswith("CON You did not finish last time.")
    assert resumed.send("1") == "CON Enter your PIN:"  # a new session: the PIN again
    assert resumed.send("1111") == "CON Wrong PIN. 2 tries left.\nEnter your PIN:"
    assert footprint(s)[:3] == seen[:3]  # no application, loan or settlement
    assert resumed.send(PIN).startswith("CON Clears ")
    assert resumed.send("1").startswith(f"END Loan {old.reference} is paid off")
    s.refresh(old)
    assert old.status == "closed"
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ statement budget
# As the apply hops' (tests/integration/test_ussd_loans.py): what each top-up hop costs in
# SQL statements on the app's engine, so the work does not creep up unseen.

# The offer: the open-application check, the loan, its product's terms, the member, the
# appraisal's facts (the loan left out), its instalments and penalties for the payoff.
# The amount and the term hops: their check, then the next screen's load (the term hop's
# is the quote). The apply: the appraisal again, the new loan paid out, the old one
# caught up, settled, closed and its pledges released, in one entry; SMS and audits.
TOP_UP_HOP_BUDGET = {"offer": 10, "amount": 12, "term": 12, "apply": 48}


def test_top_up_hops_keep_to_their_statement_budget(
    client: FlaskClient, db_session: Session, deps: CoreDeps, runtime: Runtime
) -> None:
    old, member = first_loan(db_session, deps)
    db_session.commit()
    phone = to_top_up(client, member, old)
    counted = Statements(runtime)
    spent: dict[str, int] = {}
    try:
        for name, typed in (("offer", "1"), ("amount", "120000"), ("term", "12"), ("apply", "1")):
            screen, spent[name] = counted.hop(phone, typed)
    finally:
        counted.close()
    assert screen.startswith(f"END Loan {old.reference} is paid off")
    over = {k: v for k, v in spent.items() if v > TOP_UP_HOP_BUDGET[k]}
    assert not over, (spent, TOP_UP_HOP_BUDGET)
    assert verify_ledger(db_session).ok
