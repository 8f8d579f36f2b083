"""Deposits end to end: STK push and paybill through the Daraja stand-in, real HTTP both ways."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import LimitExceeded
from db.models import JournalEntry
from db.models_mpesa import C2BPayment, MpesaCallback, StkRequest, SuspenseItem
from tests.e2e.mpesa_harness import Env, post, wait_for
from workers.mpesa import run_reconcile, run_send_stk_push

pytestmark = pytest.mark.slow


def deposit(env: Env, member_id: int, kes: int, target: str = "savings", key: str = "") -> int:
    with env.unit_of_work() as s:
        started = mpesa.start_deposit(
            s,
            env.deps,
            member_id=member_id,
            target=target,
            amount_cents=kes * 100,
            policy=env.ctx.policy,
            idempotency_key=key or f"ussd-{member_id}-{kes}-{target}",
        )
    return started.request_id


def settled(env: Env, request_id: int) -> StkRequest | None:
    row = env.row(StkRequest, request_id)
    return row if row.status in ("succeeded", "failed") else None


def test_stk_deposit_credits_the_member_once_and_queues_a_receipt_with_the_reference(
    env: Env,
) -> None:
    m = env.member("+254712000101")
    float_before = env.code_balance("1010")
    request_id = deposit(env, m.id, 1500)
    assert run_send_stk_push(env.ctx, request_id) == "pending"
    row = wait_for(lambda: settled(env, request_id), what="the STK callback")
    assert row.status == "succeeded" and row.receipt and row.paid_cents == 150_000
    assert env.balance(m.id).balance_cents == 150_000
    assert env.code_balance("1010") - float_before == 150_000
    with env.unit_of_work() as s:
        reference = s.scalar(select(JournalEntry.reference).where(JournalEntry.id == row.entry_id))
    [sms] = env.sms(m.id, "deposit_received")
    assert "KES 1,500" in sms.body and row.receipt in sms.body and str(reference) in sms.body
    assert "New balance KES 1,500" in sms.body and len(sms.body) <= 160
    # Running the job again sends nothing: the request is no longer queued.
    assert run_send_stk_push(env.ctx, request_id) == "skipped"
    assert len([r for r in env.log()["requests"] if "stkpush/v1" in r["path"]]) == 1


def test_deposit_to_shares_uses_the_member_number_with_suffix_as_account_reference(
    env: Env,
) -> None:
    m = env.member("+254712000102")
    request_id = deposit(env, m.id, 200, "shares")
    run_send_stk_push(env.ctx, request_id)
    wait_for(lambda: settled(env, request_id))
    [push] = [r for r in env.log()["requests"] if "stkpush/v1" in r["path"]]
    assert push["body"]["AccountReference"] == f"{m.member_number}S"
    assert env.balance(m.id, "shares").balance_cents == 20_000


@pytest.mark.parametrize(
    ("suffix", "code", "template"),
    [
        ("0001", 1032, "deposit_cancelled"),
        ("0002", 1037, "deposit_failed"),
        ("0003", 2001, "deposit_failed"),
        ("0004", 1, "deposit_failed"),
    ],
)
def test_a_failed_stk_push_credits_nothing_and_says_no_money_was_taken(
    env: Env, suffix: str, code: int, template: str
) -> None:
    m = env.member(f"+25471234{suffix}")
    request_id = deposit(env, m.id, 500)
    run_send_stk_push(env.ctx, request_id)
    row = wait_for(lambda: settled(env, request_id))
    assert row.status == "failed" and row.result_code == code and row.entry_id is None
    assert env.balance(m.id).balance_cents == 0
    [sms] = env.sms(m.id, template)
    assert "No money was taken" in sms.body


def test_the_same_callback_five_times_at_once_credits_once(env: Env) -> None:
    env.control(duplicate=5)
    m = env.member("+254712000103")
    request_id = deposit(env, m.id, 700)
    run_send_stk_push(env.ctx, request_id)
    wait_for(lambda: settled(env, request_id))
    env.daraja.state.join_workers()
    row = env.row(StkRequest, request_id)
    assert env.count(MpesaCallback, MpesaCallback.kind == "stk") == 5
    assert env.balance(m.id).balance_cents == 70_000
    assert (
        env.count(JournalEntry, JournalEntry.idempotency_key == f"mpesa:receipt:{row.receipt}") == 1
    )
    assert len(env.sms(m.id, "deposit_received")) == 1
    assert row.status == "succeeded"


def test_a_callback_that_never_comes_is_settled_by_the_reconciliation_query(env: Env) -> None:
    m = env.member("+254712000104")
    request_id = deposit(env, m.id, 13)  # the stand-in's "never calls back" amount
    run_send_stk_push(env.ctx, request_id)
    env.daraja.state.join_workers()
    assert env.row(StkRequest, request_id).status == "pending"
    summary = run_reconcile(env.ctx, older_than=__import__("datetime").timedelta(0))
    assert summary.stk_settled == 1
    row = env.row(StkRequest, request_id)
    assert row.status == "succeeded" and env.balance(m.id).balance_cents == 1_300
    # The query settles once: a second run finds nothing left to do.
    again = run_reconcile(env.ctx, older_than=__import__("datetime").timedelta(0))
    assert again.stk_settled == 0 and env.balance(m.id).balance_cents == 1_300


def stk_body(checkout: str, amount: Any, receipt: str, phone: int) -> dict[str, Any]:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "1-2-3",
                "CheckoutRequestID": checkout,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20261127102115},
                        {"Name": "PhoneNumber", "Value": phone},
                    ]
                },
            }
        }
    }


@pytest.mark.parametrize("amount", ["5.00", 5, 5.0, "5"])
def test_callback_amounts_as_strings_and_numbers_credit_the_same(env: Env, amount: Any) -> None:
    env.control(never=True)
    m = env.member("+254712000105")
    with env.unit_of_work() as s:
        started = mpesa.start_deposit(
            s,
            env.deps,
            member_id=m.id,
            target="savings",
            amount_cents=1_000,
            policy=env.ctx.policy.__class__(deposit_min_cents=100),
            idempotency_key="amounts",
        )
    run_send_stk_push(env.ctx, started.request_id)
    checkout = env.row(StkRequest, started.request_id).checkout_request_id
    status, answer = env.callback(
        "/mpesa/stk/callback", stk_body(checkout, amount, "NLJ7RT61SV", 254712000105)
    )
    assert status == 200 and answer["ResultCode"] == 0
    assert env.balance(m.id).balance_cents == 500  # what M-Pesa says was paid
    confirmation = c2b_body("RKL51ZDR4F", m.member_number, amount)
    assert env.callback("/mpesa/c2b/confirmation", confirmation)[1]["ResultCode"] == 0
    assert env.balance(m.id).balance_cents == 1_000


def c2b_body(trans_id: str, bill_ref: str | None, amount: Any = "500.00") -> dict[str, Any]:
    return {
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": "20261127121325",
        "TransAmount": amount,
        "BusinessShortCode": "174379",
        "BillRefNumber": bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": "25.00",
        "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 126",
        "FirstName": "JANE",
        "MiddleName": "",
        "LastName": "",
    }


def test_paybill_payments_credit_the_account_the_suffix_names(env: Env) -> None:
    m = env.member("+254712000106")
    for ref, purpose in ((m.member_number, "savings"), (f"{m.member_number}-d", "deposits")):
        result = post(
            env.daraja.url + "/_simulate/c2b",
            {"amount": "250.00", "bill_ref": ref, "msisdn": "+254712000106"},
        )
        assert result["completed"] is True
        assert env.balance(m.id, purpose).balance_cents == 25_000
    assert len(env.sms(m.id, "deposit_received")) == 2


def test_paybill_validation_refuses_unknown_accounts_and_bad_amounts(env: Env) -> None:
    unknown = post(
        env.daraja.url + "/_simulate/c2b",
        {"amount": "100.00", "bill_ref": "12345", "msisdn": "+254712000107"},
    )
    assert unknown["completed"] is False
    assert '"C2B00012"' in unknown["validation"]["response"]
    m = env.member("+254712000107")
    status, answer = env.callback(
        "/mpesa/c2b/validation", c2b_body("RKL51ZDR4X", m.member_number, "10.50")
    )
    assert (status, answer["ResultCode"]) == (200, "C2B00013")
    ok = env.callback("/mpesa/c2b/validation", c2b_body("RKL51ZDR4Y", f"{m.member_number}S"))
    assert ok[1] == {"ResultCode": "0", "ResultDesc": "Accepted"}


def test_a_confirmation_for_an_unknown_account_lands_in_suspense_and_staff_reassign_it(
    env: Env,
) -> None:
    suspense_before = env.code_balance("2200")
    for _ in range(2):  # delivered twice: parked once
        status, answer = env.callback("/mpesa/c2b/confirmation", c2b_body("RKL51ZDR99", "ABC 12"))
        assert (status, answer) == (200, {"ResultCode": 0, "ResultDesc": "Success"})
    assert env.code_balance("2200") - suspense_before == 50_000
    with env.unit_of_work() as s:
        [item] = mpesa.list_suspense(s)
    assert (item.source_ref, item.bill_ref, item.payer_name) == ("RKL51ZDR99", "ABC 12", "JANE")
    assert item.reason == "unknown_account" and item.amount_cents == 50_000
    m = env.member("+254712000108")
    with env.unit_of_work() as s:
        posted = mpesa.assign_suspense(
            s, env.deps, item_id=item.item_id, member_id=m.id, target="savings", staff="clerk1"
        )
    with env.unit_of_work() as s:
        again = mpesa.assign_suspense(
            s, env.deps, item_id=item.item_id, member_id=m.id, target="savings", staff="clerk1"
        )
    assert again.entry_id == posted.entry_id and not again.created
    assert env.balance(m.id).balance_cents == 50_000
    assert env.code_balance("2200") == suspense_before
    other = env.member("+254712000109")
    with env.unit_of_work() as s, pytest.raises(mpesa.SuspenseAlreadyAssigned):
        mpesa.assign_suspense(s, env.deps, item_id=item.item_id, member_id=other.id, staff="x")
    assert env.row(SuspenseItem, item.item_id).status == "assigned"
    assert [p.status for p in _c2b(env)] == ["suspense"]
    assert "RKL51ZDR99" in env.sms(m.id, "deposit_received")[0].body


def _c2b(env: Env) -> list[C2BPayment]:
    with env.unit_of_work() as s:
        return list(s.scalars(select(C2BPayment)))


def test_five_concurrent_confirmations_of_one_payment_credit_once(env: Env) -> None:
    m = env.member("+254712000110")
    barrier = threading.Barrier(5)
    answers: list[Any] = []

    def send() -> None:
        barrier.wait()
        answers.append(
            env.callback("/mpesa/c2b/confirmation", c2b_body("RKL5CONC01", m.member_number))
        )

    threads = [threading.Thread(target=send) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a[0] for a in answers] == [200] * 5
    assert env.balance(m.id).balance_cents == 50_000
    assert len(env.sms(m.id, "deposit_received")) == 1


def test_callbacks_need_the_token_and_malformed_bodies_are_kept_never_a_500(env: Env) -> None:
    status, _ = env.callback("/mpesa/stk/callback", {"Body": {}}, token="wrong")
    assert status == 403 and env.count(MpesaCallback) == 0
    for path in ("/mpesa/stk/callback", "/mpesa/b2c/result", "/mpesa/c2b/confirmation"):
        assert env.callback(path, b"{not json")[0] == 400
        assert env.callback(path, {"Body": {"stkCallback": {"ResultCode": "x"}}})[0] == 400
    status, answer = env.callback("/mpesa/c2b/validation", b"\xff\xfe")
    assert (status, answer["ResultCode"]) == (200, "C2B00016")
    assert env.count(MpesaCallback, MpesaCallback.status == "malformed") == 7


def test_start_deposit_refuses_amounts_outside_the_limits_and_repeats_by_key(env: Env) -> None:
    m = env.member("+254712000111", status="pending_kyc")
    with env.unit_of_work() as s:
        for cents, reason in (
            (500, "below_minimum"),
            (1_050, "not_whole"),
            (10**9, "above_maximum"),
        ):
            with pytest.raises(LimitExceeded) as err:
                mpesa.start_deposit(
                    s,
                    env.deps,
                    member_id=m.id,
                    target="savings",
                    amount_cents=cents,
                    policy=env.ctx.policy,
                    idempotency_key=f"k{cents}",
                )
            assert err.value.reason == reason
    first = deposit(env, m.id, 100, key="same")
    assert deposit(env, m.id, 100, key="same") == first


def test_a_push_whose_answer_timed_out_is_adopted_by_its_callback_and_credited(env: Env) -> None:
    from dataclasses import replace

    from integrations.mpesa.client import DarajaClient
    from integrations.mpesa.wiring import daraja_config

    env.ctx.close()
    config = replace(daraja_config(env.settings, env.daraja.certificate_pem), read_timeout=0.3)
    env.ctx.daraja_factory = lambda: DarajaClient(config)
    env.control(hang_next=[1.0])  # Daraja answers the push after our client gave up
    m = env.member("+254712000112")
    request_id = deposit(env, m.id, 400)
    assert run_send_stk_push(env.ctx, request_id) == "unknown"
    row = wait_for(lambda: settled(env, request_id), what="the late callback")
    assert row.status == "succeeded" and row.checkout_request_id.startswith("ws_CO_")
    assert env.balance(m.id).balance_cents == 40_000
