"""Loans on USSD (issue 12, part 4), through the Flask client with the gateway's form
fields, on PostgreSQL and the Redis session store: apply (a development loan with a
guarantor who consents on their own phone; an instant loan paid out at once), my limit,
my loans, guarantee requests, and every refusal a clear screen that writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.ledger import entries as ledger
from core.ledger.chart import Purpose
from core.ledger.verify import verify_ledger
from core.loans import book, guarantees
from core.loans.facts import free_deposits_cents
from core.members.registration import member_account_ids
from core.payments.mpesa import flows as mpesa
from core.savings.accounts import transfer_own
from db.models import Hold, JournalEntry, Member, OutboxMessage
from db.models_loans import Loan, LoanApplication, LoanGuarantee, LoanInstalment, LoanRepayment
from db.models_mpesa import StkRequest
from runtime import Runtime
from tests.loanutil import disbursed_loan, funded_member, make_product
from tests.ussdutil import Phone
from ussd.views import EXTENSION

KES = 100
PIN = "4826"  # tests.ussdutil.make_member's
LOANS_EN = (
    "CON Loans\n1. My limit\n2. Apply for a loan\n3. My loans\n4. Ask a guarantor\n"
    "5. Guarantee requests\n6. Repay a loan\n0 Back 00 Home"
)
INSTANT: dict[str, Any] = {  # the demo's INST (manage.py DEMO_PRODUCTS)
    "name": "Instant mobile loan",
    "rate_percent": Decimal("0.0000"),
    "method": "flat",
    "min_term": 1,
    "max_term": 3,
    "min_amount_cents": 500 * KES,
    "max_amount_cents": 20_000 * KES,
    "deposit_multiplier": Decimal("1.00"),
    "guarantor_policy": "none",
    "guarantor_cover_percent": None,
    "auto_approve_ceiling_cents": 20_000 * KES,
}
INSTANT_FEES = [
    {"kind": "processing", "timing": "added_to_schedule", "percent": Decimal("7.5000"),
     "min_term": 1, "max_term": 1},
    {"kind": "processing", "timing": "added_to_schedule", "percent": Decimal("10.0000"),
     "min_term": 2, "max_term": 3},
]  # fmt: skip


def loans_menu(client: FlaskClient, member: Member) -> Phone:
    """A new dial to the Loans menu: 7 (on the main menu's second page), the PIN."""
    phone = Phone(client, member.msisdn)
    phone.dial()
    assert phone.send("7") in ("CON Enter your PIN:", "CON Andika PIN yako:")
    phone.send(PIN)
    return phone


def sms(s: Session, member: Member, template: str) -> list[str]:
    return list(
        s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == template
            )
        )
    )


def count(s: Session, model: Any) -> int:
    return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def dev(db_session: Session, deps: CoreDeps) -> str:
    """A development loan: 1% a month reducing, 1-48 months, KES 1,000-5,000,000, 3x
    deposits, guarantors for what own deposits do not cover, 1% processing fee."""
    return make_product(db_session, deps, name="Development loan").code


@pytest.fixture
def amina(db_session: Session, deps: CoreDeps) -> Member:
    return funded_member(db_session, deps, deposits_cents=20_000 * KES, name="Amina Wanjiru")


@pytest.fixture
def otieno(db_session: Session, deps: CoreDeps) -> Member:
    return funded_member(db_session, deps, deposits_cents=50_000 * KES, name="Otieno Kamau")


# ------------------------------------------------------------------ apply


def test_a_development_loan_with_a_guarantor_who_accepts_on_their_phone(
    client: FlaskClient, db_session: Session, deps: CoreDeps, dev: str, amina: Member,
    otieno: Member,
) -> None:  # fmt: skip
    phone = loans_menu(client, amina)
    assert phone.last == LOANS_EN
    assert phone.send("2") == "CON Apply for which loan?\n1. Development loan"
    assert phone.send("1") == (
        "CON Development loan: KES 1,000 to KES 5,000,000. Your limit KES 60,000.\n"
        "Enter amount in KES:"
    )
    assert phone.send("50000") == "CON Development loan: repay over how many months? (1-48)"
    assert phone.send("12") == (
        f"CON Where should the loan money go?\n1. Savings\n2. M-Pesa {amina.msisdn}"
    )
    assert phone.send("1") == (
        "CON Loan KES 50,000, 12 months\nInstalment KES 4,443\nTotal KES 53,308.91\n"
        "Fees KES 500\nTo Savings\n1. Confirm\n2. Cancel"
    )
    assert count(db_session, LoanApplication) == 0  # nothing before the confirmation
    asking = phone.send("1")  # the PIN was given at the Loans menu
    application = db_session.scalars(select(LoanApplication)).one()
    assert (
        application.status,
        application.amount_cents,
        application.term,
        application.channel,
    ) == ("awaiting_guarantors", 50_000 * KES, 12, "ussd")
    # Own free deposits (20,000) count towards the cover: guarantors pledge the rest.
    assert asking == (
        f"CON Loan {application.reference}: guarantors must pledge KES 30,000. "
        "Enter a guarantor's member no. or phone:"
    )
    local = "0" + otieno.msisdn.removeprefix("+254")  # a phone as members write it
    assert phone.send(local) == (
        "CON How much should they pledge? Still needed KES 30,000. Amount in KES:"
    )
    assert phone.send("30000") == (
        f"CON Ask Otieno to pledge KES 30,000 for loan {application.reference}? "
        "We will SMS them.\n1. Confirm\n2. Cancel"
    )
    assert phone.send("1") == (
        "END Request sent to Otieno. All that is needed is now asked; we will SMS you their "
        "answers."
    )
    guarantee = db_session.scalars(select(LoanGuarantee)).one()
    assert (guarantee.guarantor_id, guarantee.amount_cents, guarantee.status) == (
        otieno.id,
        30_000 * KES,
        "requested",
    )
    [request] = sms(db_session, otieno, "guarantee_request")
    assert "dial *384*44135# > Loans" in request and f"DECLINE {guarantee.code}" in request

    # The guarantor consents on their own phone, in their own session, with their PIN.
    other = loans_menu(client, otieno)
    assert other.send("5") == "CON Guarantee requests\n1. Amina Wanjiru KES 30,000"
    assert other.send("1") == (
        "CON Amina Wanjiru asks you to pledge KES 30,000 for a loan of KES 50,000.\n"
        "You pledge KES 0 now.\n1. Accept\n2. Decline\n0 Back 00 Home"
    )
    assert other.send("1") == (
        "END You pledged KES 30,000 for Amina Wanjiru. It is held on your deposits until "
        "the loan is repaid."
    )
    db_session.refresh(application)
    db_session.refresh(guarantee)
    assert application.status == "pending_approval"  # covered: staff decide next
    assert guarantee.status == "accepted" and guarantee.hold_id is not None
    assert free_deposits_cents(db_session, otieno.id) == 20_000 * KES
    assert len(sms(db_session, amina, "guarantee_accepted")) == 1

    # The borrower sees it in My loans.
    mine = loans_menu(client, amina)
    assert mine.send("3") == f"CON My loans 1/1\n1. {application.reference} Awaiting approval"
    assert mine.send("1") == (
        f"CON Application {application.reference}: Awaiting approval\n"
        "Development loan KES 50,000\n0 Back 00 Home"
    )
    assert verify_ledger(db_session).ok


def test_an_instant_loan_within_the_ceiling_is_paid_to_savings_at_once(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    make_product(db_session, deps, fees=INSTANT_FEES, **INSTANT)
    member = funded_member(db_session, deps, deposits_cents=10_000 * KES, name="Fatuma Ali")
    phone = loans_menu(client, member)
    phone.send("2")
    assert phone.send("1").startswith(
        "CON Instant mobile loan: KES 500 to KES 20,000. Your limit KES 10,000."
    )
    assert phone.send("5000") == "CON Instant mobile loan: repay over how many months? (1-3)"
    phone.send("1")
    assert phone.send("1") == (
        "CON Loan KES 5,000, 1 months\nInstalment KES 5,375\nTotal KES 5,375\n"
        "Fees KES 375\nTo Savings\n1. Confirm\n2. Cancel"
    )
    done = phone.send("1")
    loan = db_session.scalars(select(Loan).where(Loan.member_id == member.id)).one()
    first = db_session.scalars(
        select(LoanInstalment).where(LoanInstalment.loan_id == loan.id)
    ).one()
    assert done == (
        f"END Loan {loan.reference} approved: KES 5,000 is in your savings. First instalment "
        f"KES 5,375 due {first.due_on:%d/%m/%Y}."
    )
    assert len(sms(db_session, member, "loan_disbursed")) == 1
    balances = Phone(client, member.msisdn)
    balances.dial()
    balances.send("1")
    assert balances.send(PIN) == (
        "CON Savings KES 5,000\nAvailable KES 5,000\nDeposits KES 10,000\nShares KES 0\n"
        "Loans owed KES 5,000\n0 Back 00 Home"
    )
    mine = loans_menu(client, member)
    assert mine.send("3") == f"CON My loans 1/1\n1. {loan.reference} Repaying"
    assert mine.send("1") == (
        f"CON Loan {loan.reference}: Repaying\nBalance KES 5,000\n"
        f"Next KES 5,375 due {first.due_on:%d/%m/%Y}\nArrears KES 0\n0 Back 00 Home"
    )
    assert verify_ledger(db_session).ok


def test_my_limit_shows_each_product_limit_or_its_reason_in_swahili(
    client: FlaskClient, db_session: Session, deps: CoreDeps, dev: str, amina: Member
) -> None:
    make_product(db_session, deps, name="Emergency loan", min_membership_months=6)
    amina.language = "sw"
    db_session.flush()
    phone = loans_menu(client, amina)
    assert phone.last.startswith("CON Mikopo\n1. Kikomo changu\n2. Omba mkopo\n")
    assert phone.send("1") == (
        "CON Vikomo vya mkopo 1/1\nDevelopment loan: KES 60,000\n"
        "Emergency loan: uanachama bado mpya\n0 Rudi 00 Mwanzo"
    )


def test_members_who_may_not_borrow_see_no_loans_or_the_reason(
    client: FlaskClient, db_session: Session, deps: CoreDeps, dev: str
) -> None:
    pending = funded_member(db_session, deps, deposits_cents=1_000 * KES, status="active")
    pending.status = "pending_kyc"
    db_session.flush()
    assert "Loans" not in Phone(client, pending.msisdn).dial()  # the feature is active-only
    broke = funded_member(db_session, deps)  # no deposits: no limit
    phone = loans_menu(client, broke)
    assert phone.send("1") == "CON Loan limits 1/1\nDevelopment loan: limit used up\n0 Back 00 Home"
    phone.send("0")
    phone.send("2")
    assert phone.send("1") == (
        "END Your limit for this loan is used up by what you owe. See My limit."
    )
    assert count(db_session, LoanApplication) == 0


# ------------------------------------------------------ bad input writes nothing


def test_bad_amounts_and_terms_are_asked_again_and_write_nothing(
    client: FlaskClient, db_session: Session, deps: CoreDeps, dev: str, amina: Member
) -> None:
    messages = count(db_session, OutboxMessage)
    phone = loans_menu(client, amina)
    phone.send("2")
    prompt = phone.send("1").removeprefix("CON ")
    assert phone.send("1e9") == "CON Enter an amount up to KES 10,000,000.\n" + prompt
    assert phone.send("-5") == "CON Enter an amount up to KES 10,000,000.\n" + prompt
    assert phone.send("2000").startswith("CON Development loan: repay over")  # resets the count
    phone.send("0")
    assert phone.send("abc") == "CON Enter an amount up to KES 10,000,000.\n" + prompt
    assert phone.send("70000") == "CON Above your limit of KES 60,000.\n" + prompt
    assert phone.send("900") == "END Too many wrong entries. Please dial again."

    phone = loans_menu(client, amina)
    phone.send("2")
    phone.send("1")
    assert phone.send("900").startswith("CON The minimum is KES 1,000.\n")
    term = phone.send("5000").removeprefix("CON ")
    assert phone.send("49") == "CON Choose 1 to 48.\n" + term
    assert phone.send("twelve") == "CON Enter a number of months.\n" + term
    assert phone.send("0").startswith("CON Development loan: KES 1,000")  # back: the amount
    assert count(db_session, LoanApplication) == 0
    assert count(db_session, OutboxMessage) == messages


def test_one_application_at_a_time_and_cancel_does_nothing(
    client: FlaskClient, db_session: Session, deps: CoreDeps, dev: str, amina: Member
) -> None:
    phone = loans_menu(client, amina)
    for typed in ("2", "1", "5000", "6", "1"):
        phone.send(typed)
    assert phone.send("2") == "END Cancelled. Nothing was done."
    assert count(db_session, LoanApplication) == 0
    book.apply_for_loan(db_session, deps, amina.id, dev, 5_000 * KES, 6, "ussd", "test-open-1")
    phone = loans_menu(client, amina)
    assert phone.send("2") == (
        "END You already have a loan application in progress: see Loans, My loans. One at a time."
    )


def test_guarantors_the_rules_refuse_are_asked_again_and_nothing_is_written(
    client: FlaskClient, db_session: Session, deps: CoreDeps, amina: Member, otieno: Member
) -> None:
    code = make_product(db_session, deps, max_guarantees_per_guarantor=1).code
    application = book.apply_for_loan(
        db_session, deps, amina.id, code, 50_000 * KES, 12, "ussd", "test-guarantors-1"
    )
    suspended = funded_member(db_session, deps, deposits_cents=50_000 * KES, status="suspended")
    poor = funded_member(db_session, deps, deposits_cents=1_000 * KES)
    busy = funded_member(db_session, deps, deposits_cents=90_000 * KES)
    other = funded_member(db_session, deps, deposits_cents=10_000 * KES)
    taken = book.apply_for_loan(
        db_session, deps, other.id, code, 20_000 * KES, 6, "ussd", "test-busy-1"
    )
    g = guarantees.request_guarantee(
        db_session, deps, application_id=taken.id, borrower_id=other.id,
        guarantor=busy.member_number or "", amount_cents=5_000 * KES,
    )  # fmt: skip
    guarantees.accept_guarantee(db_session, deps, guarantee_id=g.id, guarantor_id=busy.id)
    before = (
        count(db_session, LoanGuarantee),
        count(db_session, Hold),
        count(db_session, OutboxMessage),
    )

    phone = loans_menu(client, amina)
    who = phone.send("4").removeprefix("CON ")
    assert who.startswith(f"Loan {application.reference}: guarantors must pledge KES 30,000.")
    assert phone.send("12ab") == "CON Enter a member number or a phone number.\n" + who
    assert phone.send("99999") == "CON No member has that number or phone.\n" + who
    cases = [
        (amina, "You cannot guarantee your own loan."),
        (suspended, "That member cannot guarantee now."),
        (poor, "That member's free deposits do not cover it."),
        (busy, "That member guarantees the most loans allowed."),
    ]
    for guarantor, reason in cases:
        phone.send(guarantor.member_number or "")
        phone.send("10000")
        assert phone.send("1") == f"CON {reason}\n" + who, guarantor.full_name
    assert phone.send(otieno.member_number or "").startswith("CON How much")
    assert phone.send("40000").startswith("CON Ask Otieno to pledge KES 40,000")
    assert phone.send("1") == (
        "CON More than still needed (KES 30,000).\n"
        "How much should they pledge? Still needed KES 30,000. Amount in KES:"
    )
    after = (
        count(db_session, LoanGuarantee),
        count(db_session, Hold),
        count(db_session, OutboxMessage),
    )
    assert after == before
    phone.send("10000")
    assert phone.send("1") == (
        "CON Request sent to Otieno. Still needed KES 30,000; asked so far KES 10,000.\n"
        "1. Ask another guarantor\n0 Back 00 Home"
    )
    assert phone.send("1").startswith(f"CON Loan {application.reference}: guarantors must")


def test_a_guarantor_declines_and_the_borrower_is_told(
    client: FlaskClient, db_session: Session, deps: CoreDeps, dev: str, amina: Member,
    otieno: Member,
) -> None:  # fmt: skip
    application = book.apply_for_loan(
        db_session, deps, amina.id, dev, 50_000 * KES, 12, "ussd", "test-decline-1"
    )
    guarantees.request_guarantee(
        db_session, deps, application_id=application.id, borrower_id=amina.id,
        guarantor=otieno.msisdn, amount_cents=30_000 * KES,
    )  # fmt: skip
    phone = loans_menu(client, otieno)
    phone.send("5")
    phone.send("1")
    assert phone.send("2") == (
        "END You declined Amina Wanjiru's request. Nothing of yours is pledged."
    )
    assert db_session.scalars(select(LoanGuarantee.status)).one() == "declined"
    assert len(sms(db_session, amina, "guarantee_declined")) == 1
    again = loans_menu(client, otieno)
    assert again.send("5") == (
        "CON Guarantee requests\nNo guarantee requests wait for you.\n0 Back 00 Home"
    )


def test_a_request_answered_meanwhile_is_no_longer_open(
    client: FlaskClient, db_session: Session, deps: CoreDeps, dev: str, amina: Member,
    otieno: Member,
) -> None:  # fmt: skip
    application = book.apply_for_loan(
        db_session, deps, amina.id, dev, 50_000 * KES, 12, "ussd", "test-meanwhile-1"
    )
    g = guarantees.request_guarantee(
        db_session, deps, application_id=application.id, borrower_id=amina.id,
        guarantor=otieno.msisdn, amount_cents=30_000 * KES,
    )  # fmt: skip
    phone = loans_menu(client, otieno)
    phone.send("5")
    phone.send("1")
    guarantees.decline_by_code(db_session, deps, msisdn=otieno.msisdn, code=g.code)  # by SMS
    assert phone.send("1") == "END This request is no longer open. Nothing was pledged."
    assert count(db_session, Hold) == 0


# ------------------------------------------------------------------ repay


def balance_of(s: Session, account_id: int) -> int:
    return ledger.get_balance(s, account_id).balance_cents


def savings_of(s: Session, member: Member) -> int:
    return balance_of(s, member_account_ids(s, member.id)[Purpose.SAVINGS])


def writes(s: Session) -> tuple[int, ...]:
    return tuple(count(s, model) for model in (JournalEntry, LoanRepayment, OutboxMessage, Hold))


def test_repay_from_savings_reduces_the_loan_and_savings_exactly(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    # KES 100,000 over 12 months, disbursed to savings today: nothing is due, so a
    # repayment is a prepayment of principal (no interest is taken before it is due).
    loan, borrower, _ = disbursed_loan(s, deps)
    had = savings_of(s, borrower)
    assert had == 100_000 * KES
    phone = loans_menu(client, borrower)
    assert phone.send("6") == f"CON Repay which loan?\n1. {loan.reference} KES 100,000"
    assert phone.send("1") == "CON Repay how?\n1. From savings\n2. By M-Pesa\n0 Back 00 Home"
    assert phone.send("1") == (
        f"CON Loan {loan.reference}: balance KES 100,000. Savings available KES 100,000.\n"
        "Enter amount in KES:"
    )
    seen = writes(s)
    assert phone.send("10000.50") == (
        f"CON Repay KES 10,000.50 to loan {loan.reference} from savings?\n"
        "Loan balance after KES 89,999.50\n1. Confirm\n2. Cancel"
    )
    assert writes(s) == seen  # nothing before the confirmation
    assert phone.send("1") == (  # the PIN was given at the Loans menu
        f"END Paid KES 10,000.50 to loan {loan.reference}. Loan balance KES 89,999.50. "
        "We will SMS you."
    )
    assert savings_of(s, borrower) == had - 1_000_050
    assert balance_of(s, loan.account_id) == 10_000_000 - 1_000_050
    [repayment] = s.scalars(select(LoanRepayment)).all()
    assert (repayment.source, repayment.amount_cents, repayment.principal_cents) == (
        "savings",
        1_000_050,
        1_000_050,
    )
    assert repayment.business_key.startswith("loan_repayment:ussd:")
    [receipt] = sms(s, borrower, "loan_repayment")
    assert "KES 10,000.50" in receipt and loan.reference in receipt
    assert verify_ledger(s).ok
    # My loans shows the new balance.
    mine = loans_menu(client, borrower)
    mine.send("3")
    assert "Balance KES 89,999.50" in mine.send("1")


def test_repay_the_whole_balance_closes_the_loan(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, deps, savings_cents=1_000 * KES)
    phone = loans_menu(client, borrower)
    phone.send("6")
    phone.send("1")
    phone.send("1")
    phone.send("100000")
    assert phone.send("1") == (
        f"END Paid KES 100,000: loan {loan.reference} is fully repaid. We will SMS you."
    )
    s.refresh(loan)
    assert loan.status == "closed" and balance_of(s, loan.account_id) == 0
    assert savings_of(s, borrower) == 1_000 * KES
    # No loan left to repay.
    assert loans_menu(client, borrower).send("6") == (
        "CON Repay which loan?\nYou have no loan to repay.\n0 Back 00 Home"
    )
    assert verify_ledger(s).ok


def test_repay_refusals_are_asked_again_and_write_nothing(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, deps)
    # Most of the savings moved to shares: KES 5,000 left to repay from.
    transfer_own(s, deps, member_id=borrower.id, from_purpose="savings", to_purpose="shares",
                 amount=Money(95_000 * KES), idempotency_key="to-shares-0001")  # fmt: skip
    seen = writes(s)
    phone = loans_menu(client, borrower)
    phone.send("6")
    phone.send("1")
    prompt = (
        f"Loan {loan.reference}: balance KES 100,000. Savings available KES 5,000.\n"
        "Enter amount in KES:"
    )
    assert phone.send("1") == "CON " + prompt
    assert phone.send("abc") == "CON Enter an amount up to KES 10,000,000.\n" + prompt
    assert phone.send("100000.01") == "CON More than the loan balance.\n" + prompt
    # A third wrong entry would end the session: dial again and continue where it was left
    # (the PIN asked again first: a new session).
    phone = Phone(client, borrower.msisdn)
    assert phone.dial().startswith("CON You did not finish last time.")
    assert phone.send("1") == "CON Enter your PIN:"
    assert phone.send(PIN) == "CON " + prompt
    assert phone.send("6000") == "CON Not enough savings.\n" + prompt
    assert phone.send("5000").startswith("CON Repay KES 5,000 to loan")
    assert phone.send("2").startswith("END ")  # cancelled
    assert writes(s) == seen
    assert savings_of(s, borrower) == 5_000 * KES
    assert balance_of(s, loan.account_id) == 100_000 * KES
    assert verify_ledger(s).ok


def stk_writes(s: Session) -> tuple[int, ...]:
    return (*writes(s), count(s, StkRequest))


def by_mpesa(client: FlaskClient, borrower: Member) -> Phone:
    """Loans > Repay a loan > the first loan > By M-Pesa (a new dial; an unfinished flow's
    offer to continue is declined)."""
    phone = Phone(client, borrower.msisdn)
    if phone.dial().startswith(("CON You did not finish", "CON Hukumaliza")):
        phone.send("2")  # no, start again
    assert phone.send("7") in ("CON Enter your PIN:", "CON Andika PIN yako:")
    phone.send(PIN)
    phone.send("6")
    phone.send("1")
    phone.send("2")
    return phone


def test_repay_by_mpesa_pushes_an_stk_for_the_loan_and_its_callback_repays_it(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, deps)
    seen = stk_writes(s)
    phone = by_mpesa(client, borrower)
    assert phone.last == (
        f"CON Loan {loan.reference}: balance KES 100,000.\nEnter amount in KES to pay by M-Pesa:"
    )
    assert phone.send("5000") == (
        f"CON Repay KES 5,000 to loan {loan.reference} by M-Pesa from {borrower.msisdn}?\n"
        "Loan balance after KES 95,000\n1. Confirm\n2. Cancel"
    )
    assert stk_writes(s) == seen  # nothing before the confirmation
    assert phone.send("1") == (  # the PIN was given at the Loans menu
        f"END Check your phone for the M-Pesa prompt for KES 5,000 to loan {loan.reference} "
        "and enter your M-Pesa PIN. We will SMS you."
    )
    [row] = s.scalars(select(StkRequest)).all()
    assert (row.member_id, row.target, row.amount_cents, row.status) == (
        borrower.id, loan.reference, 500_000, "queued",
    )  # fmt: skip
    assert writes(s) == seen[:-1]  # no money moved yet: the member approves on the phone
    # The push goes out and M-Pesa calls back: the loan is repaid once.
    job = mpesa.claim_stk_push(s, deps, row.id)
    assert job is not None and job.account_reference == loan.reference
    mpesa.record_stk_accepted(s, deps, row.id, checkout_request_id="ws_CO_ussd_loan_1",
                              merchant_request_id="m-1")  # fmt: skip
    outcome = mpesa.StkOutcome("ws_CO_ussd_loan_1", 0, "ok", 500_000, "RUL0000001",
                               borrower.msisdn)  # fmt: skip
    assert mpesa.settle_stk(s, deps, outcome) == "credited"
    [repayment] = s.scalars(select(LoanRepayment)).all()
    assert (repayment.source, repayment.amount_cents, repayment.receipt) == (
        "mpesa", 500_000, "RUL0000001",
    )  # fmt: skip
    assert balance_of(s, loan.account_id) == 9_500_000
    [receipt] = sms(s, borrower, "loan_repayment")
    assert f"KES 5,000 received for loan {loan.reference}" in receipt
    assert verify_ledger(s).ok


def test_repay_by_mpesa_refuses_amounts_mpesa_cannot_take_and_writes_nothing(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, deps)
    borrower.language = "sw"
    s.flush()
    seen = stk_writes(s)
    prompt = (
        f"Mkopo {loan.reference}: salio KES 100,000.\nAndika kiasi (KES) cha kulipa kwa M-Pesa:"
    )
    phone = by_mpesa(client, borrower)
    assert phone.last == "CON " + prompt
    assert phone.send("-5") == "CON Andika kiasi hadi KES 10,000,000.\n" + prompt
    assert phone.send("1e9") == "CON Andika kiasi hadi KES 10,000,000.\n" + prompt
    assert phone.send("abc") == "END Makosa mengi mno. Tafadhali piga tena."  # a third in a row
    again = by_mpesa(client, borrower)
    assert again.send("100.50") == "CON M-Pesa inapokea shilingi kamili tu.\n" + prompt
    assert again.send("5") == "CON Kiwango cha chini ni KES 10.\n" + prompt
    assert again.send("0").startswith("CON Lipa vipi?")  # 0 is Back, not an amount
    third = by_mpesa(client, borrower)
    assert third.send("100001") == "CON Zaidi ya salio la mkopo: hadi KES 100,000.\n" + prompt
    assert third.send("200000").startswith("CON Kiwango cha juu ni KES 150,000.\n")
    assert third.send("100000").startswith(f"CON Lipa KES 100,000 kwa mkopo {loan.reference}")
    assert third.send("2").startswith("END ")  # cancelled
    assert stk_writes(s) == seen
    assert balance_of(s, loan.account_id) == 100_000 * KES


def test_repay_by_mpesa_after_a_wrong_pin_pushes_nothing_until_the_right_one(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, deps)
    seen = stk_writes(s)
    phone = by_mpesa(client, borrower)
    phone.send("2500")  # at the confirmation, then the call drops
    assert phone.hang_up() == 200
    resumed = Phone(client, borrower.msisdn)
    assert resumed.dial().startswith("CON You did not finish last time.")
    assert resumed.send("1") == "CON Enter your PIN:"  # a new session: the PIN again
    assert resumed.send("1111") == "CON Wrong PIN. 2 tries left.\nEnter your PIN:"
    assert stk_writes(s) == seen
    assert resumed.send(PIN).startswith(f"CON Repay KES 2,500 to loan {loan.reference} by M-Pesa")
    assert resumed.send("1").startswith("END Check your phone for the M-Pesa prompt for KES 2,500")
    [row] = s.scalars(select(StkRequest)).all()
    assert (row.target, row.amount_cents) == (loan.reference, 250_000)


def test_a_loan_repaid_before_the_confirmation_ends_without_a_push(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, deps, savings_cents=1_000 * KES)
    phone = by_mpesa(client, borrower)
    phone.send("100")
    # Meanwhile the whole loan is repaid from savings in another session.
    other = Phone(client, borrower.msisdn)
    other.dial()
    other.send("2")  # no, start again (the first session's flow is on offer)
    other.send("7")
    other.send(PIN)
    for typed in ("6", "1", "1", "100000"):
        other.send(typed)
    assert other.send("1").startswith("END Paid KES 100,000: loan")
    assert phone.send("1") == "END This loan is no longer being repaid. Nothing was paid."
    assert count(s, StkRequest) == 0


def test_without_mpesa_express_by_mpesa_shows_the_paybill_and_the_loan_reference(
    app: Any, client: FlaskClient, db_session: Session, deps: CoreDeps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A paybill with its C2B API but no STK passkey: no Deposit, and repaying by M-Pesa
    shows the paybill (``MoneyPorts.stk`` false)."""
    service = app.extensions[EXTENSION]
    monkeypatch.setattr(service, "money", PaybillOnly(service.money))
    s = db_session
    loan, borrower, _ = disbursed_loan(s, deps)
    seen = stk_writes(s)
    phone = Phone(client, borrower.msisdn)
    assert phone.dial() == (
        "CON Umoja SACCO\n1. Check balances\n2. Mini statement\n3. My account\n"
        "4. Change PIN\n5. Withdraw\n6. Loans"
    )
    phone.send("6")
    assert phone.send(PIN) == LOANS_EN
    phone.send("6")
    phone.send("1")
    assert phone.send("2") == (
        f"END Pay via M-Pesa Paybill 174379, Account {loan.reference}. "
        "We will SMS you when it is received."
    )
    assert stk_writes(s) == seen


@dataclass(frozen=True)
class PaybillOnly:
    """The M-Pesa ports of a SACCO without M-Pesa Express (no STK passkey)."""

    ports: Any
    stk: bool = False

    @property
    def policy(self) -> Any:
        return self.ports.policy

    @property
    def sim_swap(self) -> Any:
        return self.ports.sim_swap

    @property
    def shortcode(self) -> str:
        return str(self.ports.shortcode)


def test_without_mpesa_only_from_savings_is_offered(
    app: Any, client: FlaskClient, db_session: Session, deps: CoreDeps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(app.extensions[EXTENSION], "money", None)  # M-Pesa not configured
    loan, borrower, _ = disbursed_loan(db_session, deps)
    phone = Phone(client, borrower.msisdn)
    phone.dial()
    phone.send("5")  # no Deposit or Withdraw either: Loans is fifth
    assert phone.send(PIN) == LOANS_EN
    phone.send("6")
    assert phone.send("1") == "CON Repay how?\n1. From savings\n0 Back 00 Home"
    assert phone.send("2") == "CON Invalid choice.\nRepay how?\n1. From savings\n0 Back 00 Home"


# ------------------------------------------------------------------ statement budgets
#
# What a loans hop costs in SQL statements, counted on the app's own engine (like Django's
# assertNumQueries): the bench (bench/loans.py) measures the time, this keeps the work
# from creeping back. A hop reads a product's terms with its fees in one statement and a
# member's appraisal facts in one, however many products there are; the apply hop reads
# them once on the way from the appraisal to the payout. Savepoints are not counted.

APPLY_HOP_BUDGET = 27  # appraise, approve, open the loan account, post, schedule, SMS, 2 audits


class Statements:
    def __init__(self, runtime: Runtime) -> None:
        self.count = 0
        event.listen(runtime.engine, "before_cursor_execute", self._seen)
        self.engine = runtime.engine

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Savepoints are not counted: the tests' units of work are savepoints in the
        # test's transaction, where the app's are transactions of their own.
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            self.count += 1

    def hop(self, phone: Phone, typed: str) -> tuple[str, int]:
        self.count = 0
        screen = phone.send(typed)
        return screen, self.count

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_loans_hops_keep_to_their_statement_budget(
    client: FlaskClient, db_session: Session, deps: CoreDeps, runtime: Runtime
) -> None:
    make_product(db_session, deps, fees=INSTANT_FEES, **INSTANT)
    for n in range(4):  # more products: the menus' cost must not grow with them
        make_product(db_session, deps, name=f"Development loan {n}")
    member = funded_member(db_session, deps, deposits_cents=10_000 * KES, name="Fatuma Ali")
    db_session.commit()
    phone = loans_menu(client, member)
    counted = Statements(runtime)
    try:
        limits, at_limits = counted.hop(phone, "1")
        assert limits.startswith("CON Loan limits 1/")
        phone.send("0")
        products, at_products = counted.hop(phone, "2")
        assert "Instant mobile loan" in products
        _, at_product = counted.hop(phone, "1")
        _, at_amount = counted.hop(phone, "5000")
        ways, at_term = counted.hop(phone, "1")
        assert ways.startswith("CON Where should the loan money go?")
        quote, at_to = counted.hop(phone, "1")
        assert quote.startswith("CON Loan KES 5,000, 1 months\nInstalment KES 5,375")
        done, at_apply = counted.hop(phone, "1")
        assert done.startswith("END Loan ") and "approved" in done
    finally:
        counted.close()
    # My limit: the products (one statement for all five), the member, their facts.
    assert at_limits <= 3, at_limits
    assert at_products <= 2, at_products  # an open application? the products
    assert at_product <= 3, at_product  # the product, the member, the facts
    assert at_amount <= 4, at_amount  # the amount's appraisal, then the term prompt's range
    assert at_term <= 1, at_term  # the term's check (the choice of payout reads nothing)
    assert at_to <= 1, at_to  # the quote (terms only)
    assert at_apply <= APPLY_HOP_BUDGET, at_apply
    assert verify_ledger(db_session).ok
