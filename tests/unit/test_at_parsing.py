"""Reading Africa's Talking answers: costs, status codes, send answers, SIM-swap verdicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.africastalking.simswap import parse_sim_swap_answer, parse_swap_time
from sms.sender import (
    ACCEPTED_CODES,
    classify_status_code,
    interpret_send_answer,
    parse_cost_cents,
)

MEMBER = "+254712345678"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)

# Answers with the documented keys but any values in them, so that fuzzing reaches
# the code that reads the fields rather than stopping at the envelope.
recipient_like = st.fixed_dictionaries(
    {},
    optional={
        "statusCode": st.sampled_from([100, 101, 102, 403, 500, "101", "x"]) | json_values,
        "number": st.sampled_from([MEMBER, "+254700000000"]) | json_values,
        "status": json_values,
        "cost": st.sampled_from(["KES 0.8000", "0"]) | json_values,
        "messageId": st.sampled_from(["ATXid_1", "None"]) | json_values,
    },
)
sms_answers = json_values | st.fixed_dictionaries(
    {
        "SMSMessageData": st.fixed_dictionaries(
            {},
            optional={
                "Message": st.sampled_from(["InvalidSenderId", "Sent to 1/1"]) | json_values,
                "Recipients": st.lists(recipient_like | json_values, max_size=3) | json_values,
            },
        )
        | json_values
    }
)
swap_entry_like = st.fixed_dictionaries(
    {},
    optional={
        "phoneNumber": st.sampled_from([MEMBER, "+254700000000"]) | json_values,
        "swapped": json_values,
        "status": st.sampled_from(["Swapped", "NotSwapped"]) | json_values,
        "lastSimSwapDate": st.integers() | st.floats() | json_values,
    },
)
swap_answers = json_values | st.fixed_dictionaries(
    {
        "status": st.sampled_from(["Processed"]) | json_values,
        "responses": st.lists(swap_entry_like | json_values, max_size=3) | json_values,
    }
)

# -- cost ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "cents"),
    [
        ("KES 0.8000", 80),
        ("KES 0.8049", 80),
        ("KES 0.8050", 81),  # half a cent rounds up
        ("KES 1.6000", 160),
        ("KES 12", 1200),
        (" kes 0.80 ", 80),
        ("0", 0),  # what AT puts on a refused recipient
        (0, 0),
    ],
)
def test_cost_in_shillings_becomes_whole_cents(cost: object, cents: int) -> None:
    assert parse_cost_cents(cost) == cents


@pytest.mark.parametrize(
    "cost",
    [
        "USD 0.0080",
        "KES -0.80",
        "KES 1e3",
        "KES NaN",
        "KES",
        "",
        "KES 0,80",
        "KES 100000000000000000000000000",  # beyond any real price: refused, not mangled
        None,
        0.8,
        True,
    ],
)
def test_unreadable_or_foreign_cost_is_unknown_not_guessed(cost: object) -> None:
    assert parse_cost_cents(cost) is None


@given(cents=st.integers(min_value=0, max_value=10**9), sub_cent=st.integers(0, 99))
def test_cost_rounds_half_up_to_the_cent(cents: int, sub_cent: int) -> None:
    text = f"KES {cents // 100}.{cents % 100:02d}{sub_cent:02d}"

    assert parse_cost_cents(text) == cents + (1 if sub_cent >= 50 else 0)


@given(st.text() | st.from_regex(r"\A(KES )?[0-9]{1,40}(\.[0-9]{1,40})?\Z"))
def test_any_cost_text_gives_cents_or_none(text: str) -> None:
    cents = parse_cost_cents(text)
    assert cents is None or cents >= 0


# -- status codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "accepted", "retryable"),
    [
        (100, True, False),
        (101, True, False),
        (102, True, False),
        (401, False, False),  # RiskHold
        (402, False, False),  # InvalidSenderId
        (403, False, False),  # InvalidPhoneNumber
        (404, False, False),  # UnsupportedNumberType
        (405, False, True),  # InsufficientBalance: fine again after a top-up
        (406, False, False),  # UserInBlacklist
        (407, False, True),  # CouldNotRoute
        (409, False, False),  # DoNotDisturbRejection
        (500, False, True),
        (501, False, True),
        (502, False, True),
        (599, False, True),  # unknown server-side code: transient
        (499, False, False),  # unknown client-side code: permanent
    ],
)
def test_status_code_decides_acceptance_and_retry(
    code: int, accepted: bool, retryable: bool
) -> None:
    assert classify_status_code(code) == (accepted, retryable)


@given(st.integers())
def test_only_documented_success_codes_are_accepted_and_never_retried(code: int) -> None:
    accepted, retryable = classify_status_code(code)
    assert accepted == (code in ACCEPTED_CODES)
    assert not (accepted and retryable)


# -- send answers ----------------------------------------------------------------------------


def sms_answer(*recipients: dict[str, object], message: str = "Sent to 1/1") -> str:
    return json.dumps({"SMSMessageData": {"Message": message, "Recipients": list(recipients)}})


def test_documented_sample_answer_is_an_accepted_message() -> None:
    body = sms_answer(
        {
            "statusCode": 101,
            "number": "+254718769882",
            "status": "Success",
            "cost": "KES 0.8000",
            "messageId": "ATPid_SampleTxnId123",
        }
    )

    result = interpret_send_answer(200, body, "+254718769882")

    assert result.accepted and not result.retryable
    assert (result.message_id, result.cost_cents, result.status_code) == (
        "ATPid_SampleTxnId123",
        80,
        101,
    )


def test_refused_recipient_has_no_message_id_even_though_at_sends_the_string_none() -> None:
    body = sms_answer(
        {
            "statusCode": 406,
            "number": MEMBER,
            "status": "UserInBlacklist",
            "cost": "0",
            "messageId": "None",
        }
    )

    result = interpret_send_answer(201, body, MEMBER)

    assert (result.accepted, result.message_id, result.status, result.retryable) == (
        False,
        None,
        "UserInBlacklist",
        False,
    )
    assert result.cost_cents == 0


def test_status_code_sent_as_a_string_is_still_understood() -> None:
    body = sms_answer({"statusCode": "102", "number": MEMBER, "messageId": "ATXid_1"})

    result = interpret_send_answer(201, body, MEMBER)

    assert (result.accepted, result.status, result.message_id) == (True, "Queued", "ATXid_1")


def test_whole_request_refusal_names_the_reason_in_message() -> None:
    body = sms_answer(message="InvalidSenderId")

    result = interpret_send_answer(201, body, MEMBER)

    assert (result.accepted, result.status_code, result.status, result.retryable) == (
        False,
        402,
        "InvalidSenderId",
        False,
    )


@pytest.mark.parametrize(
    ("http_status", "status", "retryable"),
    [
        (401, "Unauthorized", False),
        (400, "HTTP 400", False),
        (429, "HTTP 429", True),
        (500, "HTTP 500", True),
        (503, "HTTP 503", True),
    ],
)
def test_http_errors_decide_retry(http_status: int, status: str, retryable: bool) -> None:
    result = interpret_send_answer(http_status, "some body", MEMBER)

    assert (result.accepted, result.status, result.retryable) == (False, status, retryable)


@pytest.mark.parametrize("body", ["<html>oops</html>", "{}", '{"SMSMessageData": {}}', "[]"])
def test_unreadable_success_answer_is_not_retried_because_it_may_have_been_sent(body: str) -> None:
    result = interpret_send_answer(201, body, MEMBER)

    assert (result.accepted, result.status, result.retryable) == (False, "UnreadableAnswer", False)
    assert result.detail is not None and "may have been sent" in result.detail


@given(sms_answers)
def test_any_json_answer_is_read_without_raising(answer: object) -> None:
    result = interpret_send_answer(201, json.dumps(answer), MEMBER)

    assert not result.accepted or result.status_code in ACCEPTED_CODES


# -- SIM swap ------------------------------------------------------------------------------


def test_sim_swap_verdict_with_date_is_read() -> None:
    answer = {
        "status": "Processed",
        "responses": [
            {"phoneNumber": MEMBER, "swapped": True, "lastSimSwapDate": "2025-01-10T11:00:00+03:00"}
        ],
    }

    result = parse_sim_swap_answer(answer, MEMBER)

    assert (result.ok, result.swapped) == (True, True)
    assert result.last_swap_at == datetime(2025, 1, 10, 8, 0, tzinfo=UTC)


def test_sim_swap_verdict_as_status_word_is_read() -> None:
    answer = {"status": "Processed", "responses": [{"phoneNumber": MEMBER, "status": "NotSwapped"}]}

    assert parse_sim_swap_answer(answer, MEMBER).swapped is False


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "Processed"},  # verdict only by callback
        {"status": "Processed", "responses": [{"phoneNumber": "+254700000000", "swapped": False}]},
        {"status": "Processed", "responses": [{"phoneNumber": MEMBER, "swapped": "maybe"}]},
        {"status": "InvalidPhoneNumber", "responses": []},
        "Processed",
    ],
)
def test_sim_swap_answer_without_a_verdict_for_the_number_is_not_ok(answer: object) -> None:
    result = parse_sim_swap_answer(answer, MEMBER)

    assert (result.ok, result.swapped) == (False, None)
    assert result.error


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-10T08:00:00Z", datetime(2025, 1, 10, 8, tzinfo=UTC)),
        ("2025-01-10 08:00:00", datetime(2025, 1, 10, 8, tzinfo=UTC)),  # naive: taken as UTC
        (1736496000, datetime(2025, 1, 10, 8, tzinfo=UTC)),
        (1736496000000, datetime(2025, 1, 10, 8, tzinfo=UTC)),  # milliseconds
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_swap_time_is_read_as_utc(value: object, expected: datetime | None) -> None:
    assert parse_swap_time(value) == expected


@given(swap_answers)
def test_any_sim_swap_answer_is_read_without_raising(answer: object) -> None:
    result = parse_sim_swap_answer(answer, MEMBER)

    assert result.ok == (result.swapped is not None)
