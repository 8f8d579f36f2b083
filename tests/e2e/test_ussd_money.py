"""The USSD Deposit and Withdraw menus end to end: a handset dials the app over real HTTP
(werkzeug), the app talks to the Daraja and Africa's Talking stand-ins, the stand-in calls
back, and the ledger, the outbox and the screens show what the member gets.
``verify_ledger`` is asserted after every test (``mpesa_harness.serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import select, update

from core.approvals import engine as approvals
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from core.staff import accounts as staff_core
from db.models import Account, Hold
from db.models_loans import LoanRepayment
from db.models_mpesa import B2CPayout, SimSwapEvent, StkRequest
from tests.e2e.gateway import GatewayPhone
from tests.e2e.mpesa_harness import Env, post, wait_for
from tests.loanutil import disbursed_loan
from ussd.store import resume_key

pytestmark = pytest.mark.slow
PIN = "4826"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def phone(env: Env, http: requests.Session, msisdn: str) -> GatewayPhone:
    return GatewayPhone(http, env.url, msisdn)


def stk_rows(env: Env, member_id: int) -> list[StkRequest]:
    with env.unit_of_work() as s:
        return list(s.scalars(select(StkRequest).where(StkRequest.member_id == member_id)))


def payouts(env: Env, member_id: int) -> list[B2CPayout]:
    with env.unit_of_work() as s:
        return list(s.scalars(select(B2CPayout).where(B2CPayout.member_id == member_id)))


def holds(env: Env, member_id: int) -> list[Hold]:
    with env.unit_of_work() as s:
        savings = members.member_account_ids(s, member_id)["savings"]
        return list(s.scalars(select(Hold).where(Hold.account_id == savings)))


def settled_stk(env: Env, member_id: int) -> StkRequest | None:
    rows = stk_rows(env, member_id)
    return rows[0] if rows and rows[0].status in ("succeeded", "failed") else None


def settled_payout(env: Env, member_id: int) -> B2CPayout | None:
    rows = payouts(env, member_id)
    return rows[0] if rows and rows[0].status in mpesa.B2C_FINAL else None


def payout_done(env: Env, payout_id: int) -> bool:
    return bool(env.row(B2CPayout, payout_id).status == "succeeded")


def stale_offer(env: Env, msisdn: str) -> str:
    """The resume offer the store holds for this phone now (to put back later, as a crash
    between the commit and the offer's deletion would have left it)."""
    offer = env.app.extensions["sacco.ussd"].store.get(resume_key(msisdn))
    assert offer, "no resume offer"
    return offer.decode() if isinstance(offer, bytes) else str(offer)


def restore_offer(env: Env, msisdn: str, offer: str) -> None:
    env.app.extensions["sacco.ussd"].store.put(resume_key(msisdn), offer, 120)


# ------------------------------------------------------------------ deposits


def test_ussd_deposit_pushes_once_credits_once_and_queues_the_receipt(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000201")
    float_before = env.code_balance("1010")
    p = phone(env, http, m.msisdn)
    assert p.dial().endswith("5. Deposit\n6. Withdraw\n98 More")
    assert p.send("5") == "Deposit by M-Pesa. Enter amount in KES:"
    assert p.send("500") == "Deposit to:\n1. Savings\n2. Deposits\n3. Shares"
    assert p.send("1") == (
        "Deposit KES 500 to Savings\nFee: none\nTotal: KES 500\n"
        "Paid by M-Pesa from +254712000201\n1. Confirm\n2. Cancel"
    )
    assert p.send("1") == "Enter your PIN:"
    assert stk_rows(env, m.id) == []  # nothing recorded before the PIN
    done = p.send(PIN)
    assert p.ended
    assert done == (
        "Approve the M-Pesa prompt for KES 500 on +254712000201. "
        f"You will get an SMS. Ref {m.member_number}"
    )
    row = wait_for(lambda: settled_stk(env, m.id), what="the STK callback")
    assert row.status == "succeeded" and row.paid_cents == 50_000 and row.target == "savings"
    assert env.balance(m.id).balance_cents == 50_000
    assert env.code_balance("1010") - float_before == 50_000
    [sms] = env.sms(m.id, "deposit_received")
    assert "KES 500 received into your savings" in sms.body and row.receipt in sms.body
    assert "New balance KES 500" in sms.body
    pushes = [e for e in env.log()["requests"] if e["path"].endswith("/stkpush/v1/processrequest")]
    assert len(pushes) == 1
    # The gateway repeating the last hop acts on nothing: one push, one credit.
    p.dial_.hops -= 1  # type: ignore[union-attr]
    p.ended = False
    p._hop()
    assert len(stk_rows(env, m.id)) == 1 and env.balance(m.id).balance_cents == 50_000


def test_ussd_deposit_to_shares_in_swahili_and_limits_reprompt(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000202")
    with env.unit_of_work() as s:
        members.set_language(s, m.id, "sw")
    p = phone(env, http, m.msisdn)
    p.dial()
    assert p.send("5") == "Weka pesa kwa M-Pesa. Andika kiasi (KES):"
    assert p.send("5") == "Kiwango cha chini ni KES 10.\nWeka pesa kwa M-Pesa. Andika kiasi (KES):"
    assert p.send("200000").startswith("Kiwango cha juu ni KES 150,000.\n")
    assert p.send("50") == "Weka kwenye:\n1. Akiba\n2. Amana\n3. Hisa"
    assert p.send("0") == "Weka pesa kwa M-Pesa. Andika kiasi (KES):"
    assert p.send("250.50").startswith("M-Pesa inapokea shilingi kamili tu.\n")
    assert p.send("250") == "Weka kwenye:\n1. Akiba\n2. Amana\n3. Hisa"
    assert p.send("3").startswith("Weka KES 250 kwenye Hisa\nAda: hakuna\n")
    p.send("1")
    assert p.send(PIN).startswith("Kubali ombi la M-Pesa la KES 250 kwenye +254712000202.")
    wait_for(lambda: settled_stk(env, m.id), what="the STK callback")
    assert env.balance(m.id, "shares").balance_cents == 25_000
    assert env.balance(m.id).balance_cents == 0
    assert len(env.sms(m.id, "deposit_received")) == 1


def test_a_cancelled_mpesa_prompt_credits_nothing_and_says_so(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712300001")  # ends 0001: the stand-in's member cancels the prompt
    p = phone(env, http, m.msisdn)
    p.dial()
    for typed in ("5", "700", "1", "1"):
        p.send(typed)
    assert p.send(PIN).startswith("Approve the M-Pesa prompt for KES 700")
    row = wait_for(lambda: settled_stk(env, m.id), what="the STK callback")
    assert row.status == "failed" and row.result_code == 1032
    assert env.balance(m.id).balance_cents == 0
    assert env.sms(m.id, "deposit_received") == []
    [sms] = env.sms(m.id, "deposit_cancelled")
    assert "No money was taken" in sms.body


def test_a_pending_member_may_deposit_but_not_withdraw(env: Env, http: requests.Session) -> None:
    m = env.member("+254712000203", status="pending_kyc")
    p = phone(env, http, m.msisdn)
    menu = p.dial()
    assert "4. Deposit" in menu and "Withdraw" not in menu
    assert p.send("5").startswith("Invalid choice.")
    assert p.send("4") == "Deposit by M-Pesa. Enter amount in KES:"


def test_a_replayed_deposit_confirm_never_pushes_twice(env: Env, http: requests.Session) -> None:
    m = env.member("+254712000204")
    p = phone(env, http, m.msisdn)
    p.dial()
    for typed in ("5", "300", "2", "1"):
        p.send(typed)
    offer = stale_offer(env, m.msisdn)  # at the PIN after the confirmation
    p.send(PIN)
    wait_for(lambda: settled_stk(env, m.id), what="the STK callback")
    # A crash after the commit left the old offer behind; the member continues it.
    restore_offer(env, m.msisdn, offer)
    again = phone(env, http, m.msisdn)
    assert again.dial().startswith("You did not finish last time.")
    assert again.send("1").startswith("Deposit KES 300 to Deposits")
    again.send("1")
    assert again.send(PIN).startswith("Approve the M-Pesa prompt for KES 300")
    assert len(stk_rows(env, m.id)) == 1
    assert env.balance(m.id, "deposits").balance_cents == 30_000
    assert len(env.sms(m.id, "deposit_received")) == 1
    pushes = [e for e in env.log()["requests"] if e["path"].endswith("/stkpush/v1/processrequest")]
    assert len(pushes) == 1


def test_ussd_loan_repayment_by_mpesa_pushes_once_and_repays_the_loan_once(
    env: Env, http: requests.Session
) -> None:
    """Loans > Repay a loan > By M-Pesa: an STK push whose account is the loan's reference;
    the stand-in's callback repays the loan (not savings), once."""
    with env.unit_of_work() as s:
        loan, borrower, _ = disbursed_loan(s, env.deps)
        reference, loan_account, msisdn = loan.reference, loan.account_id, borrower.msisdn
        owed = ledger.get_balance(s, loan_account).balance_cents
    env.control(outcomes={msisdn: 0})  # the member approves, whatever the number's digits
    savings_before = env.balance(borrower.id).balance_cents
    p = phone(env, http, msisdn)
    p.dial()
    assert p.send("7") == "Enter your PIN:"
    p.send(PIN)
    p.send("6")  # Repay a loan
    p.send("1")  # the loan
    assert (
        p.send("2")
        == f"Loan {reference}: balance KES 100,000.\nEnter amount in KES to pay by M-Pesa:"
    )
    assert p.send("2500").startswith(
        f"Repay KES 2,500 to loan {reference} by M-Pesa from {msisdn}?"
    )
    assert p.send("1").startswith("Check your phone for the M-Pesa prompt for KES 2,500")
    assert p.ended
    row = wait_for(lambda: settled_stk(env, borrower.id), what="the STK callback")
    assert (row.status, row.target, row.paid_cents) == ("succeeded", reference, 250_000)
    [push] = [e for e in env.log()["requests"] if e["path"].endswith("/stkpush/v1/processrequest")]
    assert push["body"]["AccountReference"] == reference
    with env.unit_of_work() as s:
        assert ledger.get_balance(s, loan_account).balance_cents == owed - 250_000
        [repaid] = s.scalars(select(LoanRepayment).where(LoanRepayment.loan_id == loan.id)).all()
        assert (repaid.source, repaid.receipt, repaid.amount_cents) == ("mpesa", row.receipt,
                                                                         250_000)  # fmt: skip
    assert env.balance(borrower.id).balance_cents == savings_before  # not a deposit
    [sms] = env.sms(borrower.id, "loan_repayment")
    assert f"KES 2,500 received for loan {reference}" in sms.body
    assert len(stk_rows(env, borrower.id)) == 1


# ------------------------------------------------------------------ withdrawals


def test_ussd_withdrawal_holds_pays_and_posts_amount_and_fee(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000211", savings_kes=5000)
    fees_before = env.code_balance("4100")
    p = phone(env, http, m.msisdn)
    p.dial()
    assert p.send("6") == "Enter your PIN:"  # first: the amount's check reads the savings
    assert p.send(PIN) == "Withdraw savings to M-Pesa. Enter amount in KES:"
    assert p.send("1000") == (
        "Withdraw KES 1,000\nFee: KES 13\nTotal from savings: KES 1,013\n"
        "To M-Pesa +254712000211\n1. Confirm\n2. Cancel"
    )
    done = p.send("1")  # the PIN was given: no second one
    [w] = payouts(env, m.id)
    assert done == (
        f"KES 1,000 is on its way to M-Pesa +254712000211. Ref {w.reference}. You will get an SMS."
    )
    row = wait_for(lambda: settled_payout(env, m.id), what="the B2C result")
    assert row.status == "succeeded"
    bal = env.balance(m.id)
    assert (bal.balance_cents, bal.held_cents) == (500_000 - 101_300, 0)
    assert env.code_balance("4100") - fees_before == 1_300
    [hold] = holds(env, m.id)
    assert hold.status == "posted" and hold.amount_cents == 101_300
    [sms] = env.sms(m.id, "withdrawal_paid")
    assert w.reference in sms.body and "Fee KES 13" in sms.body


def test_insufficient_savings_and_limits_reprompt_without_any_hold(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000212", savings_kes=500)
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("6")
    p.send(PIN)
    assert p.send("1000") == (
        "Not enough savings: KES 500 available, fee included.\n"
        "Withdraw savings to M-Pesa. Enter amount in KES:"
    )
    assert p.send("50").startswith("The minimum is KES 100.\n")
    assert p.send("100").startswith("Withdraw KES 100\nFee: KES 0\nTotal from savings: KES 100")
    assert p.send("2") == "Cancelled. Nothing was done."
    assert holds(env, m.id) == [] and payouts(env, m.id) == []
    assert env.balance(m.id).balance_cents == 50_000


def test_savings_spent_before_the_confirm_are_refused_at_the_confirm_without_a_hold(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000213", savings_kes=2000)
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("6")
    p.send(PIN)
    assert p.send("1500").startswith("Withdraw KES 1,500\nFee: KES 23\n")
    with env.unit_of_work() as s:  # meanwhile another withdrawal takes most of the savings
        mpesa.request_withdrawal(
            s,
            env.deps,
            member_id=m.id,
            amount_cents=100_000,
            policy=env.ctx.policy,
            sim_swap=env.ctx.sim_swap,
            idempotency_key="elsewhere",
        )
    assert p.send("1").startswith("Not enough savings: KES 987 available, fee included.\n")
    assert not p.ended
    assert len(payouts(env, m.id)) == 1 and len(holds(env, m.id)) == 1  # only the other one
    assert p.send("00").startswith("Umoja SACCO")


def test_a_recent_sim_swap_refuses_on_the_phone_with_what_to_do(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000214", savings_kes=3000)
    swapped = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    post(env.at.url + "/_control", {"number": m.msisdn, "swapped": True, "last_swap_date": swapped})
    p = phone(env, http, m.msisdn)
    p.dial()
    for typed in ("6", PIN, "1000"):
        p.send(typed)
    assert p.send("1") == (
        "For your safety, withdrawals are paused after a SIM change. "
        "Visit our office with your ID. Your savings are safe."
    )
    assert payouts(env, m.id) == [] and holds(env, m.id) == []
    assert env.balance(m.id).balance_cents == 300_000
    assert env.count(SimSwapEvent, SimSwapEvent.member_id == m.id) == 1
    assert len(env.sms(m.id, "withdrawal_blocked_sim_swap")) == 1


def test_a_replayed_withdrawal_confirm_never_pays_twice(env: Env, http: requests.Session) -> None:
    m = env.member("+254712000215", savings_kes=5000)
    p = phone(env, http, m.msisdn)
    p.dial()
    for typed in ("6", PIN, "2000"):
        p.send(typed)
    offer = stale_offer(env, m.msisdn)
    first = p.send("1")
    wait_for(lambda: settled_payout(env, m.id), what="the B2C result")
    restore_offer(env, m.msisdn, offer)
    again = phone(env, http, m.msisdn)
    again.dial()
    assert again.send("1") == "Enter your PIN:"  # a new session: the quote is behind it
    assert again.send(PIN).startswith("Withdraw KES 2,000\nFee: KES 33\n")
    assert again.send("1") == first  # the same payout, the same reference
    assert len(payouts(env, m.id)) == 1 and len(holds(env, m.id)) == 1
    assert env.balance(m.id).balance_cents == 500_000 - 203_300
    b2c = [e for e in env.log()["requests"] if e["path"].endswith("/b2c/v3/paymentrequest")]
    assert len(b2c) == 1


def test_a_confirmation_shown_again_after_the_savings_changed_asks_the_amount_again(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000216", savings_kes=2000)
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("6")
    p.send(PIN)
    assert p.send("1500").startswith("Withdraw KES 1,500\n")
    with env.unit_of_work() as s:
        mpesa.request_withdrawal(
            s,
            env.deps,
            member_id=m.id,
            amount_cents=100_000,
            policy=env.ctx.policy,
            sim_swap=env.ctx.sim_swap,
            idempotency_key="elsewhere",
        )
    # A wrong key re-shows the confirmation, which quotes again from the ledger.
    assert p.send("9") == (
        "Not enough savings: KES 987 available, fee included.\n"
        "Withdraw savings to M-Pesa. Enter amount in KES:"
    )
    assert p.send("900").startswith("Withdraw KES 900\nFee: KES 13\nTotal from savings: KES 913")
    assert p.send("1").startswith("KES 900 is on its way")
    paid = [r for r in payouts(env, m.id) if r.amount_cents == 90_000]
    wait_for(lambda: payout_done(env, paid[0].id), what="the B2C result")
    bal = env.balance(m.id)  # the other withdrawal is still held (never sent in this test)
    assert (bal.balance_cents, bal.held_cents) == (200_000 - 91_300, 101_300)


def test_a_failed_sim_swap_check_above_the_allowed_amount_refuses_on_the_phone(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000217", savings_kes=9000)
    post(env.at.url + "/_control", {"fail_next": 1})  # default: refused above KES 1,000
    p = phone(env, http, m.msisdn)
    p.dial()
    for typed in ("6", PIN, "5000"):
        p.send(typed)
    assert p.send("1") == (
        "We could not check your SIM, so nothing was sent. "
        "Try a smaller amount later, or visit our office with your ID."
    )
    assert payouts(env, m.id) == [] and holds(env, m.id) == []
    assert len(env.sms(m.id, "withdrawal_blocked_check")) == 1


def test_while_the_check_fails_the_phone_says_when_todays_unverified_limit_is_used_up(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000220", savings_kes=9000)
    post(env.at.url + "/_control", {"fail_next": 2})  # default: KES 1,000 a day unverified

    def withdraw(kes: str) -> str:
        p = phone(env, http, m.msisdn)
        p.dial()
        for typed in ("6", PIN, kes):  # the PIN comes before the amount
            p.send(typed)
        return p.send("1")

    assert withdraw("600").startswith("KES 600 is on its way")
    assert withdraw("600") == (
        "We could not check your SIM and today's limit without the check is used up, "
        "so nothing was sent. Try again tomorrow, or visit our office with your ID."
    )
    assert [p.amount_cents for p in payouts(env, m.id)] == [60_000]
    [sms] = env.sms(m.id, "withdrawal_blocked_check_cap")
    assert len(sms.body) <= 160


def test_a_member_suspended_mid_session_cannot_withdraw_and_sees_it_on_the_next_dial(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000218", savings_kes=2000)
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("6")
    p.send(PIN)
    assert p.send("500").startswith("Withdraw KES 500\n")
    with env.unit_of_work() as s:  # staff suspend the member while the session is open
        member = members.get_member(s, m.id)
        member.status = "suspended"
        s.commit()
    refused = p.send("1")
    assert refused == "Your account cannot do this now. Nothing was changed. Call 0700 000 000."
    assert holds(env, m.id) == [] and payouts(env, m.id) == []
    assert env.balance(m.id).balance_cents == 200_000
    menu = phone(env, http, m.msisdn).dial()
    assert "Withdraw" not in menu and "Deposit" not in menu


def test_dormant_savings_refuse_a_ussd_withdrawal_and_say_how_to_wake_them(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000219", savings_kes=2000)
    with env.unit_of_work() as s:  # what mark-dormant does after DORMANCY_MONTHS unused
        s.execute(
            update(Account)
            .where(Account.member_id == m.id, Account.purpose == "savings")
            .values(dormant_since=datetime.now(UTC))
        )
        s.commit()
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("6")
    p.send(PIN)
    refused = p.send("500")
    assert refused.startswith("Your savings are dormant") and "with your ID" in refused
    assert holds(env, m.id) == [] and payouts(env, m.id) == []
    assert env.balance(m.id).balance_cents == 200_000


def test_a_swap_two_staff_cleared_after_an_id_check_lets_the_member_withdraw(
    env: Env, http: requests.Session
) -> None:
    m = env.member("+254712000219", savings_kes=3000)
    swapped = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    post(env.at.url + "/_control", {"number": m.msisdn, "swapped": True, "last_swap_date": swapped})

    def withdraw_1000() -> str:
        p = phone(env, http, m.msisdn)
        p.dial()
        for typed in ("6", PIN, "1000"):
            p.send(typed)
        return p.send("1")

    assert withdraw_1000().startswith("For your safety, withdrawals are paused")
    with env.unit_of_work() as s:
        [event] = s.scalars(select(SimSwapEvent).where(SimSwapEvent.member_id == m.id)).all()
        teller, manager = (
            staff_core.principal_for(
                staff_core.create_staff(
                    s,
                    env.deps,
                    SYSTEM,
                    username=f"{role}219",
                    full_name=f"Test {role}",
                    role=role,
                    password="correct horse battery staple",
                )
            )  # fmt: skip
            for role in ("teller", "manager")
        )
        ask = {"event_id": event.id, "in_person": True}
        req = approvals.request_approval(
            s, env.deps, teller, "sim_swap.clear", payload=ask, member_id=m.id,
            note="ID seen: SIM replaced after the phone was stolen", large_threshold_cents=10**9,
        )  # fmt: skip
        with pytest.raises(approvals.SelfApproval):
            approvals.decide(s, env.deps, teller, req.id, approve=True)
        assert approvals.decide(s, env.deps, manager, req.id, approve=True).status == "approved"
    [told] = env.sms(m.id, "withdrawals_resumed")
    assert "withdraw to M-Pesa again" in told.body

    done = withdraw_1000()
    assert done.startswith("KES 1,000 is on its way to M-Pesa +254712000219."), done
    row = wait_for(lambda: settled_payout(env, m.id), what="the B2C result")
    assert row.status == "succeeded"
    assert len(payouts(env, m.id)) == 1  # the refused attempt left no payout behind
    bal = env.balance(m.id)
    assert (bal.balance_cents, bal.held_cents) == (300_000 - 101_300, 0)  # KES 1,000 + 13 fee
    assert env.count(SimSwapEvent, SimSwapEvent.member_id == m.id) == 1


def test_the_savings_products_minimum_balance_fee_and_daily_limit_reprompt_on_the_phone(
    env: Env, http: requests.Session
) -> None:
    """Issue 14, part 1: the product's rules refuse like an M-Pesa limit (a re-prompt naming
    the rule and the most that may go) and its fee joins M-Pesa's on the confirmation."""
    from dataclasses import replace as replace_terms

    from core.savings import products
    from db.models_savings import SavingsProduct

    with env.unit_of_work() as s:
        sav = s.scalars(select(SavingsProduct).where(SavingsProduct.default_for == "savings")).one()
        terms = replace_terms(
            products.get_product(s, sav.id).terms, min_balance_cents=400_000,
            withdrawal_fee_cents=2_000, daily_withdrawal_limit_cents=150_000,
        )  # fmt: skip
        products.change_product(s, env.deps, SYSTEM, sav.id, sav.current_version, terms)
    m = env.member("+254712000231", savings_kes=5000)
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("6")
    p.send(PIN)
    assert p.send("1600") == (
        "Daily limit: KES 1,500 left today.\nWithdraw savings to M-Pesa. Enter amount in KES:"
    )
    # 5,000 - 4,000 kept - KES 20 product fee - M-Pesa's KES 13: KES 967 at most
    assert p.send("1000").startswith(
        "Savings keep a minimum balance: up to KES 967 can go.\nWithdraw savings"
    )
    assert p.send("900") == (
        "Withdraw KES 900\nFee: KES 33\nTotal from savings: KES 933\n"
        "To M-Pesa +254712000231\n1. Confirm\n2. Cancel"
    )
    assert p.send("2") == "Cancelled. Nothing was done."
    assert holds(env, m.id) == [] and payouts(env, m.id) == []


def test_a_member_opens_a_holiday_account_on_the_phone_and_deposits_into_it(
    env: Env, http: requests.Session
) -> None:
    """Issue 14, part 1: the product chosen from those open to members, behind the PIN;
    the deposit's "Deposit to:" then offers the new account, and the STK push credits it."""
    from core.savings import products
    from core.savings.member_accounts import account_for_target

    with env.unit_of_work() as s:
        products.create_product(
            s, env.deps, SYSTEM, "HOLI",
            products.parse_terms({**products.DEFAULTS, "name": "Holiday",
                                  "kind": "ordinary_savings"}),
        )  # fmt: skip
    m = env.member("+254712000232")
    p = phone(env, http, m.msisdn)
    p.dial()
    assert p.send("8") == "Enter your PIN:"
    assert p.send(PIN) == "Open which savings account?\n1. Holiday"
    assert p.send("1") == "Open a Holiday account for you?\n1. Confirm\n2. Cancel"
    assert p.send("1") == (
        f"Your Holiday account is open. Save in it by M-Pesa paybill, account "
        f"{m.member_number}HOLI. You will get an SMS."
    )
    assert p.ended
    [sms] = env.sms(m.id, "savings_account_opened")
    assert f"account {m.member_number}HOLI" in sms.body
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("8")
    p.send(PIN)
    p.send("1")
    assert p.send("1").startswith("You already hold this account")  # one per product
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("5")
    assert p.send("500") == "Deposit to:\n1. Savings\n2. Deposits\n3. Shares\n4. Holiday"
    assert p.send("4").startswith("Deposit KES 500 to Holiday\n")
    p.send("1")
    p.send(PIN)
    row = wait_for(lambda: settled_stk(env, m.id), what="the STK callback")
    assert row.status == "succeeded" and row.target == "@HOLI"
    with env.unit_of_work() as s:
        assert account_for_target(s, m.id, "@HOLI").balance_cents == 50_000
    assert env.balance(m.id).balance_cents == 0  # main savings untouched
    # Balances and the statement now ask which account first.
    p = phone(env, http, m.msisdn)
    p.dial()
    assert p.send("1") == "Enter your PIN:"
    assert p.send(PIN) == "Which account?\n1. Main accounts\n2. Holiday"
    assert p.send("2").startswith("Holiday\nBalance KES 500\nAvailable KES 500")
    p = phone(env, http, m.msisdn)
    assert "No, start again" in p.dial()  # the balance screen left a resume offer
    p.send("2")
    p.send("2")
    p.send(PIN)
    one = p.send("2")
    assert one.startswith("Statement (KES) 1/1\n") and "+500" in one
    p = phone(env, http, m.msisdn)
    p.dial()
    p.send("2")  # start again
    p.send("1")
    p.send(PIN)
    assert p.send("1").startswith("Savings KES 0\n")  # the main accounts, as before


def test_a_withdrawal_from_a_holiday_account_keeps_its_own_products_rules(
    env: Env, http: requests.Session
) -> None:
    """Issue 14, part 1: with more than one savings account the member picks which to
    withdraw from; the hold, the payout's entry and the minimum balance are that account's."""
    from core.savings import member_accounts, products
    from core.savings.accounts import Credit, CreditSource, credit_member

    m = env.member("+254712000233", savings_kes=100)
    with env.unit_of_work() as s:
        products.create_product(
            s, env.deps, SYSTEM, "HOLI",
            products.parse_terms({**products.DEFAULTS, "name": "Holiday",
                                  "kind": "ordinary_savings", "min_balance_cents": 100_000}),
        )  # fmt: skip
        member_accounts.open_savings_account(s, env.deps, member_id=m.id, product_code="HOLI")
        credit_member(s, env.deps, Credit(
            member_id=m.id, target="@HOLI", amount_cents=500_000, source=CreditSource.CASH,
            idempotency_key="holi-cash-1", business_key="holi-cash-1",
        ))  # fmt: skip
    p = phone(env, http, m.msisdn)
    p.dial()
    assert p.send("6") == "Enter your PIN:"
    assert p.send(PIN) == "Which account?\n1. Savings\n2. Holiday"
    assert p.send("2") == "Withdraw savings to M-Pesa. Enter amount in KES:"
    # 5,000 - 1,000 kept - M-Pesa's KES 23 fee for 1,500+: at most KES 3,977 goes
    assert p.send("4000").startswith("Savings keep a minimum balance: up to KES 3,9")
    assert p.send("1000").startswith("Withdraw KES 1,000\nFee: KES 13\n")
    p.send("1")
    row = wait_for(lambda: settled_payout(env, m.id), what="the B2C result")
    assert row.status == "succeeded"
    with env.unit_of_work() as s:
        holiday = member_accounts.account_for_target(s, m.id, "@HOLI")
        assert row.account_id == holiday.account_id
        assert (holiday.balance_cents, holiday.available_cents) == (500_000 - 101_300,) * 2
    assert env.balance(m.id).balance_cents == 10_000  # the main savings untouched
