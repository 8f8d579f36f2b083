"""The real DarajaClient against the in-process Daraja stand-in.

Callbacks land in a small local HTTP server that plays our app's callback
routes; every callback is read back through the same parsers the app uses.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from core.payments.mpesa.rules import blocked_url_word
from integrations.mpesa import (
    CallbackUrls,
    DarajaAuthError,
    DarajaClient,
    DarajaConfig,
    DarajaRejected,
    DarajaUnavailable,
    parse_b2c_result,
    parse_c2b,
    parse_statement_csv,
    parse_stk_callback,
    parse_transaction_status_result,
)
from integrations.mpesa.standin import OAUTH_PATH, StandinHandle, start_standin

# What our client gives Daraja (never "/mpesa/...": Daraja blocks such callback URLs).
STK = "/hooks/mobile/stk/callback"
VALIDATION = "/hooks/mobile/c2b/validation"
CONFIRMATION = "/hooks/mobile/c2b/confirmation"
B2C_RESULT = "/hooks/mobile/b2c/result"
STATUS_RESULT = "/hooks/mobile/status/result"
RECEIPT = re.compile(r"^[A-Z][A-Z0-9]{9}$")
MEMBER = "+254712345678"
MakeClient = Callable[..., DarajaClient]


class Receiver:
    """Plays our app's callback routes: records every POST, answers as configured."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.replies: dict[str, Any] = {}
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.changed:
                    receiver.posts.append((path, body))
                    receiver.changed.notify_all()
                reply = receiver.replies.get(path, {"ResultCode": 0, "ResultDesc": "Success"})
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def bodies(self, path: str) -> list[Any]:
        with self.changed:
            return [body for p, body in self.posts if p == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.bodies(path)) >= count, timeout)
        bodies = self.bodies(path)
        assert len(bodies) >= count, f"{len(bodies)} callbacks on {path}, expected {count}"
        return bodies

    def clear(self) -> None:
        with self.changed:
            self.posts.clear()
            self.replies.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.stop()


@pytest.fixture(scope="module")
def daraja_module() -> Iterator[StandinHandle]:
    handle = start_standin(port=0, delay=0)
    yield handle
    handle.stop()


@pytest.fixture
def daraja(daraja_module: StandinHandle, receiver: Receiver) -> StandinHandle:
    post(daraja_module, "/_reset")
    # A callback of the previous test may still be on its way (a loaded machine): let
    # every callback thread finish or give up before this test starts counting.
    daraja_module.state.join_workers()
    receiver.clear()
    return daraja_module


@pytest.fixture
def make_client(daraja: StandinHandle, receiver: Receiver) -> Iterator[Callable[..., DarajaClient]]:
    clients: list[DarajaClient] = []
    state = daraja.state

    def make(clock: Callable[[], float] = time.monotonic, **overrides: Any) -> DarajaClient:
        config = DarajaConfig(
            base_url=daraja.url,
            consumer_key=state.consumer_key,
            consumer_secret=state.consumer_secret,
            shortcode=state.shortcode,
            passkey=state.passkey,
            b2c_shortcode=state.b2c_shortcode,
            initiator_name=state.initiator_name,
            initiator_password=state.initiator_password,
            certificate_pem=daraja.certificate_pem,
            callbacks=CallbackUrls.under(receiver.url, "s3cret-token"),
            connect_timeout=1.0,
            read_timeout=2.0,
            retry_backoff_seconds=0.0,
        )
        client = DarajaClient(replace(config, **overrides), clock=clock)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> DarajaClient:
    return make_client()


def post(daraja: StandinHandle, path: str, payload: Any = None) -> Any:
    answer = requests.post(daraja.url + path, json=payload or {}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def control(daraja: StandinHandle, **settings: Any) -> None:
    post(daraja, "/_control", settings)


def api_log(daraja: StandinHandle, path: str) -> list[dict[str, Any]]:
    log = requests.get(daraja.url + "/_log", timeout=5).json()
    return [entry for entry in log["requests"] if entry["path"] == path]


def statement(daraja: StandinHandle) -> str:
    answer = requests.get(daraja.url + "/_statement.csv", timeout=5)
    assert answer.headers["Content-Type"].startswith("text/csv")
    return answer.text


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STK_PATH = "/mpesa/stkpush/v1/processrequest"
QUERY_PATH = "/mpesa/stkpushquery/v1/query"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"


# --- OAuth ---------------------------------------------------------------------


def test_one_token_serves_many_requests_across_threads(
    daraja: StandinHandle, client: DarajaClient
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def push(i: int) -> None:
        start.wait()  # all eight ask for a token at once
        try:
            client.stk_push(f"+2547123450{i:02d}", 100_00, f"M{i:05d}", "Deposit")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(10, 18)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(api_log(daraja, STK_PATH)) == 8
    assert len(api_log(daraja, OAUTH_PATH)) == 1


def test_token_is_refreshed_a_margin_before_it_expires(
    daraja: StandinHandle, make_client: MakeClient
) -> None:
    control(daraja, expires_in=120)
    now = [1000.0]
    client = make_client(clock=lambda: now[0], token_margin_seconds=60)
    first = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    now[0] += 59  # 61 s of the token's life left: still used
    client.stk_query(first.checkout_request_id)
    assert len(api_log(daraja, OAUTH_PATH)) == 1
    now[0] += 2  # 59 s left: inside the margin, refreshed before use
    client.stk_query(first.checkout_request_id)
    assert len(api_log(daraja, OAUTH_PATH)) == 2


def test_short_lived_token_is_replaced_before_daraja_refuses_it(
    daraja: StandinHandle, make_client: MakeClient
) -> None:
    control(daraja, expires_in=1)  # refreshed half-way through a life shorter than the margin
    now = [1000.0]
    client = make_client(clock=lambda: now[0])
    accepted = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    now[0] += 0.6  # past half the token's life by the client's clock
    assert client.stk_query(accepted.checkout_request_id).result_code == 0
    assert len(api_log(daraja, OAUTH_PATH)) == 2
    assert len(api_log(daraja, QUERY_PATH)) == 1  # never refused


def test_refused_token_is_refreshed_once_and_the_call_repeated(
    daraja: StandinHandle, client: DarajaClient
) -> None:
    accepted = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    control(daraja, revoke_tokens=True)
    result = client.stk_query(accepted.checkout_request_id)
    assert result.result_code == 0
    assert len(api_log(daraja, OAUTH_PATH)) == 2
    assert len(api_log(daraja, QUERY_PATH)) == 2  # refused once, then answered


def test_wrong_consumer_secret_is_an_auth_error(
    daraja: StandinHandle, make_client: MakeClient
) -> None:
    client = make_client(consumer_secret="wrong")
    with pytest.raises(DarajaAuthError) as caught:
        client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    assert caught.value.code == "400.008.01"
    assert not caught.value.retryable
    assert api_log(daraja, STK_PATH) == []


# --- STK push --------------------------------------------------------------------


def test_stk_push_success_callback_carries_amount_receipt_and_phone(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    accepted = client.stk_push(MEMBER, 1500_00, "M00042", "Savings deposit for March")
    assert accepted.checkout_request_id.startswith("ws_CO_")

    (raw,) = receiver.wait_for(STK)
    callback = parse_stk_callback(raw)
    assert callback.checkout_request_id == accepted.checkout_request_id
    assert callback.merchant_request_id == accepted.merchant_request_id
    assert (callback.result_code, callback.amount_cents) == (0, 1500_00)
    assert callback.receipt and RECEIPT.match(callback.receipt)
    assert callback.phone == MEMBER
    assert callback.transaction_date is not None

    sent = api_log(daraja, STK_PATH)[0]["body"]
    assert sent["Amount"] == 1500 and sent["PartyA"] == sent["PhoneNumber"] == "254712345678"
    assert sent["TransactionDesc"] == "Savings depos"  # cut to Daraja's 13 characters
    password = base64.b64decode(sent["Password"]).decode()
    assert password == f"{daraja.state.shortcode}{daraja.state.passkey}{sent['Timestamp']}"


@pytest.mark.parametrize(
    ("msisdn", "code"),
    [
        ("+254712340001", 1032),
        ("+254712340002", 1037),
        ("+254712340003", 2001),
        ("+254112340004", 1),
    ],
)
def test_stk_push_failures_reach_callback_and_query(
    receiver: Receiver, client: DarajaClient, msisdn: str, code: int
) -> None:
    accepted = client.stk_push(msisdn, 100_00, "M00042", "Deposit")
    callback = parse_stk_callback(receiver.wait_for(STK)[0])
    assert callback.result_code == code
    assert (callback.amount_cents, callback.receipt, callback.phone) == (None, None, None)
    query = client.stk_query(accepted.checkout_request_id)
    assert (query.result_code, query.pending) == (code, False)


def test_query_recovers_a_payment_whose_callback_never_came(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    accepted = client.stk_push(MEMBER, 13_00, "M00042", "Deposit")  # KES 13: no callback
    result = client.stk_query(accepted.checkout_request_id)
    daraja.state.join_workers()  # every callback the stand-in meant to send has been sent
    assert (result.result_code, result.pending) == (0, False)
    assert receiver.bodies(STK) == []
    assert "Acc. M00042" in statement(daraja)


def test_query_is_pending_while_the_member_decides(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    control(daraja, delay=0.5)
    accepted = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    early = client.stk_query(accepted.checkout_request_id)
    assert (early.result_code, early.pending) == (None, True)
    receiver.wait_for(STK)
    assert client.stk_query(accepted.checkout_request_id).result_code == 0


def test_late_callback_comes_after_the_query_already_shows_the_outcome(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    control(daraja, late_seconds=1.0)
    accepted = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    assert client.stk_query(accepted.checkout_request_id).result_code == 0
    assert receiver.bodies(STK) == []
    assert parse_stk_callback(receiver.wait_for(STK)[0]).result_code == 0


def test_control_sets_outcomes_per_number_and_per_amount(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    control(daraja, outcomes={"0711000111": 1037}, amount_outcomes={"250": "never"})
    by_number = client.stk_push("+254711000111", 100_00, "M1", "Deposit")
    by_amount = client.stk_push(MEMBER, 250_00, "M2", "Deposit")
    (raw,) = receiver.wait_for(STK)
    assert parse_stk_callback(raw).checkout_request_id == by_number.checkout_request_id
    assert parse_stk_callback(raw).result_code == 1037
    assert client.stk_query(by_amount.checkout_request_id).result_code == 0


def test_duplicate_callbacks_are_delivered_n_times(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    control(daraja, duplicate=3)
    accepted = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    bodies = receiver.wait_for(STK, count=3)
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    assert parse_stk_callback(bodies[0]).checkout_request_id == accepted.checkout_request_id


def test_stk_push_refuses_what_daraja_would_refuse_before_sending(
    daraja: StandinHandle, client: DarajaClient
) -> None:
    with pytest.raises(ValueError, match="whole shillings"):
        client.stk_push(MEMBER, 100_50, "M00042", "Deposit")
    with pytest.raises(ValueError, match="AccountReference"):
        client.stk_push(MEMBER, 100_00, "M000420000000", "Deposit")
    with pytest.raises(ValueError, match="Kenyan"):
        client.stk_push("+255712345678", 100_00, "M00042", "Deposit")
    assert api_log(daraja, STK_PATH) == []


def test_standin_answers_missing_fields_with_daraja_error_json(
    daraja: StandinHandle, client: DarajaClient
) -> None:
    answer = requests.post(
        daraja.url + STK_PATH,
        json={"BusinessShortCode": daraja.state.shortcode},
        headers={"Authorization": f"Bearer {client.access_token()}"},
        timeout=5,
    )
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert (body["errorCode"], body["errorMessage"]) == (
        "400.002.02",
        "Bad Request - Invalid Password",
    )


def test_daraja_refusal_is_rejected_error(client: DarajaClient) -> None:
    with pytest.raises(DarajaRejected) as caught:
        client.stk_query("ws_CO_unknown")
    assert caught.value.code == "400.002.02" and not caught.value.retryable


# --- retries and timeouts ----------------------------------------------------------


def test_stk_push_is_not_repeated_after_a_5xx(daraja: StandinHandle, client: DarajaClient) -> None:
    client.access_token()
    control(daraja, fail_next=[503])
    with pytest.raises(DarajaUnavailable) as caught:
        client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    assert (caught.value.retryable, caught.value.may_have_taken_effect) == (False, True)
    assert len(api_log(daraja, STK_PATH)) == 1


def test_stk_query_is_repeated_after_a_5xx(daraja: StandinHandle, client: DarajaClient) -> None:
    accepted = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    control(daraja, fail_next=[503, 502])
    assert client.stk_query(accepted.checkout_request_id).result_code == 0
    assert len(api_log(daraja, QUERY_PATH)) == 3


def test_unreachable_daraja_is_unavailable_and_nothing_was_sent(make_client: MakeClient) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{closed_port()}", max_attempts=2)
    with pytest.raises(DarajaUnavailable) as caught:
        client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    assert caught.value.code == "connection_error"
    assert (caught.value.retryable, caught.value.may_have_taken_effect) == (True, False)


def test_hanging_daraja_times_out_within_the_read_timeout(
    daraja: StandinHandle, make_client: MakeClient
) -> None:
    client = make_client(read_timeout=0.3, max_attempts=3)
    accepted = client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    control(daraja, hang_seconds=5)

    started = time.monotonic()
    with pytest.raises(DarajaUnavailable) as push_error:
        client.stk_push(MEMBER, 100_00, "M00042", "Deposit")
    push_seconds = time.monotonic() - started
    assert push_error.value.code == "timeout" and not push_error.value.retryable
    assert push_seconds < 1.0  # one attempt: a second prompt would confuse the member

    started = time.monotonic()
    with pytest.raises(DarajaUnavailable) as query_error:
        client.stk_query(accepted.checkout_request_id)
    assert time.monotonic() - started < 2.0  # three attempts of 0.3 s
    assert query_error.value.retryable
    assert len(api_log(daraja, QUERY_PATH)) == 3


# --- B2C -------------------------------------------------------------------------


def test_b2c_payout_result_with_a_valid_security_credential(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    accepted = client.b2c_payment("loan-77-1", MEMBER, 5000_00, "Loan disbursement", "L77")
    assert accepted.originator_conversation_id == "loan-77-1"
    result = parse_b2c_result(receiver.wait_for(B2C_RESULT)[0])
    assert (result.originator_conversation_id, result.conversation_id) == (
        "loan-77-1",
        accepted.conversation_id,
    )
    assert (result.result_code, result.amount_cents) == (0, 5000_00)
    assert result.receipt and RECEIPT.match(result.receipt)
    assert result.receiver_name and result.receiver_name.startswith("254712345678")
    assert result.completed_at is not None
    sent = api_log(daraja, B2C_PATH)[0]["body"]
    assert len(base64.b64decode(sent["SecurityCredential"])) == 256  # RSA-2048 ciphertext
    assert sent["Occassion"] == "L77" and sent["CommandID"] == "BusinessPayment"


def test_b2c_with_wrong_initiator_password_fails_with_2001(
    receiver: Receiver, make_client: MakeClient
) -> None:
    client = make_client(initiator_password="not-the-password")
    client.b2c_payment("loan-78-1", MEMBER, 5000_00, "Loan disbursement")
    result = parse_b2c_result(receiver.wait_for(B2C_RESULT)[0])
    assert (result.result_code, result.amount_cents, result.receipt) == (2001, None, None)


def test_b2c_result_can_arrive_before_the_synchronous_answer(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    control(daraja, result_before_response=True)
    accepted = client.b2c_payment("loan-79-1", MEMBER, 1000_00, "Loan disbursement")
    (raw,) = receiver.bodies(B2C_RESULT)  # already there, without waiting
    assert parse_b2c_result(raw).conversation_id == accepted.conversation_id


def test_b2c_limits_are_checked_before_sending(daraja: StandinHandle, client: DarajaClient) -> None:
    with pytest.raises(ValueError):
        client.b2c_payment("loan-80-1", MEMBER, 9_00, "Too small")
    with pytest.raises(ValueError):
        client.b2c_payment("loan-80-2", MEMBER, 250_001_00, "Too large")
    with pytest.raises(ValueError, match="whole shillings"):
        client.b2c_payment("loan-80-3", MEMBER, 100_01, "Cents")
    assert api_log(daraja, B2C_PATH) == []


def test_b2c_duplicate_originator_id_is_rejected(client: DarajaClient) -> None:
    client.b2c_payment("loan-81-1", MEMBER, 1000_00, "Loan disbursement")
    with pytest.raises(DarajaRejected):
        client.b2c_payment("loan-81-1", MEMBER, 1000_00, "Loan disbursement")
    # A worker resending after an unknown outcome must not read the refusal as "not paid".
    with pytest.raises(DarajaUnavailable) as caught:
        client.b2c_payment("loan-81-1", MEMBER, 1000_00, "Loan disbursement", resent=True)
    assert (caught.value.code, caught.value.may_have_taken_effect) == ("outcome_unknown", True)


def test_b2c_is_not_repeated_after_a_5xx_the_outcome_is_unknown(
    daraja: StandinHandle, client: DarajaClient
) -> None:
    """The payment may have been made: a second request could pay twice (that Daraja
    refuses a repeated OriginatorConversationID is not confirmed)."""
    client.access_token()
    control(daraja, fail_next=[503])
    with pytest.raises(DarajaUnavailable) as caught:
        client.b2c_payment("loan-82-1", MEMBER, 1000_00, "Loan disbursement")
    assert (caught.value.retryable, caught.value.may_have_taken_effect) == (False, True)
    assert len(api_log(daraja, B2C_PATH)) == 1


def test_b2c_is_not_repeated_after_a_timeout_and_the_money_may_have_gone(
    daraja: StandinHandle, receiver: Receiver, make_client: MakeClient
) -> None:
    client = make_client(read_timeout=0.2, retry_backoff_seconds=0.8)
    client.access_token()
    control(daraja, hang_next=[0.5])  # the first attempt is handled after we gave up on it
    with pytest.raises(DarajaUnavailable) as caught:
        client.b2c_payment("loan-83-1", MEMBER, 1000_00, "Loan disbursement")
    assert caught.value.code == "timeout"
    assert (caught.value.retryable, caught.value.may_have_taken_effect) == (False, True)
    assert len(api_log(daraja, B2C_PATH)) == 1
    # The money did go: the result arrives and reconciliation must find it.
    assert parse_b2c_result(receiver.wait_for(B2C_RESULT)[0]).result_code == 0


def test_transaction_status_recovers_a_payout_whose_result_never_came(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    control(daraja, never=True)
    accepted = client.b2c_payment("loan-84-1", MEMBER, 2500_00, "Loan disbursement")
    client.transaction_status(original_conversation_id="loan-84-1")
    status = parse_transaction_status_result(receiver.wait_for(STATUS_RESULT)[0])
    assert (status.result_code, status.status, status.amount_cents) == (0, "Completed", 2500_00)
    assert status.original_conversation_id == accepted.conversation_id
    assert status.original_originator_conversation_id == "loan-84-1"
    assert status.receipt and RECEIPT.match(status.receipt)
    assert receiver.bodies(B2C_RESULT) == []


# --- C2B and the statement -----------------------------------------------------------


def test_c2b_payment_is_validated_then_confirmed(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    client.register_c2b_urls()
    outcome = post(
        daraja, "/_simulate/c2b", {"amount": "500.00", "bill_ref": "M00042", "msisdn": MEMBER}
    )
    assert outcome["completed"] is True
    validation = parse_c2b(receiver.wait_for(VALIDATION)[0])
    confirmation = parse_c2b(receiver.wait_for(CONFIRMATION)[0])
    assert confirmation.trans_id == validation.trans_id == outcome["TransID"]
    assert (confirmation.amount_cents, confirmation.bill_ref) == (500_00, "M00042")
    assert confirmation.shortcode == daraja.state.shortcode
    assert confirmation.msisdn_masked_or_hash == "2547 ***** 678"
    assert validation.org_balance_cents is None and confirmation.org_balance_cents is not None


def test_c2b_rejected_by_validation_is_never_confirmed(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    client.register_c2b_urls()
    receiver.replies[VALIDATION] = {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
    outcome = post(
        daraja, "/_simulate/c2b", {"amount": "500", "bill_ref": "NOPE", "msisdn": MEMBER}
    )
    assert outcome["completed"] is False
    assert receiver.bodies(CONFIRMATION) == []
    assert parse_statement_csv(statement(daraja)) == []


@pytest.mark.parametrize(
    ("response_type", "completed"), [("Completed", True), ("Cancelled", False)]
)
def test_unreachable_validation_follows_the_registered_response_type(
    daraja: StandinHandle,
    receiver: Receiver,
    client: DarajaClient,
    response_type: str,
    completed: bool,
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}{VALIDATION}"
    client.register_c2b_urls(validation_url=dead, response_type=response_type)
    outcome = post(
        daraja, "/_simulate/c2b", {"amount": "75.50", "bill_ref": "M1", "msisdn": MEMBER}
    )
    assert outcome["completed"] is completed
    assert len(receiver.bodies(CONFIRMATION)) == (1 if completed else 0)


def test_statement_csv_round_trips_every_completed_transaction(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient
) -> None:
    client.register_c2b_urls()
    client.stk_push(MEMBER, 1500_00, "M00042", "Deposit")
    client.stk_push("+254712340001", 700_00, "M00043", "Deposit")  # cancelled: not listed
    post(daraja, "/_simulate/c2b", {"amount": "1,234.50", "bill_ref": "M00044", "msisdn": MEMBER})
    client.b2c_payment("loan-85-1", MEMBER, 1000_00, "Loan disbursement")
    stk = [parse_stk_callback(b) for b in receiver.wait_for(STK, count=2)]
    b2c = parse_b2c_result(receiver.wait_for(B2C_RESULT)[0])
    c2b = parse_c2b(receiver.wait_for(CONFIRMATION)[0])

    rows = {row.receipt: row for row in parse_statement_csv(statement(daraja))}
    paid = next(cb for cb in stk if cb.result_code == 0)
    assert paid.receipt and b2c.receipt
    assert set(rows) == {paid.receipt, c2b.trans_id, b2c.receipt}
    assert (rows[paid.receipt].paid_in_cents, rows[paid.receipt].account_no) == (1500_00, "M00042")
    assert rows[c2b.trans_id].paid_in_cents == 1234_50
    assert rows[b2c.receipt].withdrawn_cents == 1000_00
    ordered = list(rows.values())
    for before, after in zip(ordered, ordered[1:], strict=False):
        assert before.balance_cents is not None and after.balance_cents is not None
        assert (
            after.balance_cents
            == before.balance_cents + after.paid_in_cents - after.withdrawn_cents
        )
    assert all(row.status == "Completed" and row.completed_at for row in ordered)


@pytest.mark.parametrize(
    "bad", ["/mpesa/c2b/confirmation", "/M-PESA/confirm", "/m_pesa/x", "/Safaricom/cb"]
)
def test_daraja_refuses_callback_urls_naming_mpesa_and_ours_never_do(
    daraja: StandinHandle, receiver: Receiver, client: DarajaClient, bad: str
) -> None:
    with pytest.raises(DarajaRejected) as caught:
        client.register_c2b_urls(confirmation_url=receiver.url + bad)
    assert "ConfirmationURL" in str(caught.value)
    ours = CallbackUrls.under("https://pay.umoja.example", "t" * 32)
    assert all(blocked_url_word(url) is None for url in astuple(ours))
    with pytest.raises(ValueError, match="Daraja refuses"):
        CallbackUrls.under("https://mpesa.umoja.example", "t" * 32)
