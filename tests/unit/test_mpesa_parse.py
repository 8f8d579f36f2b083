"""Parsing what Daraja sends us: every documented shape and variation, and garbage."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.mpesa.parse import (
    STATEMENT_COLUMNS,
    MalformedCallback,
    MalformedStatement,
    amount_to_cents,
    parse_b2c_result,
    parse_c2b,
    parse_statement_csv,
    parse_stk_callback,
    parse_transaction_status_result,
    to_daraja_msisdn,
    to_e164,
)

# The documented examples, verbatim (shared/GATEWAYS.md).
STK_SUCCESS = json.loads("""
{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1",
 "CheckoutRequestID":"ws_CO_191220191020363925","ResultCode":0,
 "ResultDesc":"The service request is processed successfully.",
 "CallbackMetadata":{"Item":[{"Name":"Amount","Value":1.00},
  {"Name":"MpesaReceiptNumber","Value":"NLJ7RT61SV"},
  {"Name":"TransactionDate","Value":20191219102115},
  {"Name":"PhoneNumber","Value":254708374149}]}}}}
""")
STK_CANCELLED = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": "ws_CO_191220191020363925",
            "ResultCode": 1032,
            "ResultDesc": "Request cancelled by user",
        }
    }
}
C2B = json.loads("""
{"TransactionType":"Pay Bill","TransID":"RKL51ZDR4F","TransTime":"20231121121325",
 "TransAmount":"5.00","BusinessShortCode":"600966","BillRefNumber":"M00042",
 "InvoiceNumber":"","OrgAccountBalance":"25.00","ThirdPartyTransID":"",
 "MSISDN":"2547 ***** 126","FirstName":"JANE","MiddleName":"","LastName":""}
""")
B2C_SUCCESS = json.loads("""
{"Result":{"ResultType":0,"ResultCode":0,"ResultDesc":"The service request is processed successfully.",
 "OriginatorConversationID":"loan-77-1","ConversationID":"AG_20191219_00005797af5d7d75f652","TransactionID":"NLJ41HAY6Q",
 "ResultParameters":{"ResultParameter":[{"Key":"TransactionAmount","Value":10},
  {"Key":"TransactionReceipt","Value":"NLJ41HAY6Q"},
  {"Key":"ReceiverPartyPublicName","Value":"254708374149 - John Doe"},
  {"Key":"TransactionCompletedDateTime","Value":"19.12.2019 11:45:50"}]},
 "ReferenceData":{"ReferenceItem":{"Key":"QueueTimeoutURL","Value":"https://example.org/t"}}}}
""")
B2C_BAD_INITIATOR = {
    "Result": {
        "ResultType": 0,
        "ResultCode": 2001,
        "ResultDesc": "The initiator information is invalid.",
        "OriginatorConversationID": "loan-78-1",
        "ConversationID": "AG_20181024_000043ade8e082b13567",
        "TransactionID": "MJO61H754M",
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://x/t"}},
    }
}


def nairobi(*parts: int) -> datetime:
    """A Nairobi wall-clock time as the UTC instant the parsers return (UTC+3, no DST)."""
    year, month, day, hour, minute, second = parts
    return datetime(year, month, day, hour - 3, minute, second, tzinfo=UTC)


def with_item(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    for item in items:
        if item["Name"] == name:
            item["Value"] = value
    return body


# --- STK callback -------------------------------------------------------------------


def test_stk_success_example_is_read_in_full() -> None:
    callback = parse_stk_callback(STK_SUCCESS)
    assert callback.merchant_request_id == "29115-34620561-1"
    assert callback.checkout_request_id == "ws_CO_191220191020363925"
    assert (callback.result_code, callback.succeeded) == (0, True)
    assert callback.amount_cents == 100
    assert callback.receipt == "NLJ7RT61SV"
    assert callback.phone == "+254708374149"
    assert callback.transaction_date == nairobi(2019, 12, 19, 10, 21, 15)


@pytest.mark.parametrize(
    ("value", "cents"), [(1, 100), (1.0, 100), ("5.00", 500), ("5", 500), (1500.5, 150050)]
)
def test_stk_amount_may_be_int_float_or_string(value: Any, cents: int) -> None:
    assert parse_stk_callback(with_item(STK_SUCCESS, "Amount", value)).amount_cents == cents


def test_stk_item_without_value_is_ignored() -> None:
    body = copy.deepcopy(STK_SUCCESS)
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"].insert(2, {"Name": "Balance"})
    assert parse_stk_callback(body) == parse_stk_callback(STK_SUCCESS)


def test_stk_single_item_object_instead_of_a_list() -> None:
    body = copy.deepcopy(STK_SUCCESS)
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = {"Name": "Amount", "Value": 7}
    callback = parse_stk_callback(body)
    assert (callback.amount_cents, callback.receipt, callback.phone) == (700, None, None)


def test_stk_failure_without_metadata_has_no_money_fields() -> None:
    callback = parse_stk_callback(STK_CANCELLED)
    assert (callback.result_code, callback.succeeded) == (1032, False)
    assert callback.result_desc == "Request cancelled by user"
    assert (callback.amount_cents, callback.receipt, callback.phone, callback.transaction_date) == (
        None,
        None,
        None,
        None,
    )


def test_stk_result_code_as_string_and_body_as_json_text() -> None:
    body = copy.deepcopy(STK_CANCELLED)
    body["Body"]["stkCallback"]["ResultCode"] = "1037"
    assert parse_stk_callback(json.dumps(body)).result_code == 1037
    assert parse_stk_callback(json.dumps(STK_SUCCESS).encode()).amount_cents == 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [(254708374149, "+254708374149"), ("254112345678", "+254112345678"), ("garbage", None)],
)
def test_stk_phone_is_normalised_or_left_out(value: Any, expected: str | None) -> None:
    assert parse_stk_callback(with_item(STK_SUCCESS, "PhoneNumber", value)).phone == expected


def test_stk_unreadable_date_is_left_out() -> None:
    assert (
        parse_stk_callback(with_item(STK_SUCCESS, "TransactionDate", "yesterday")).transaction_date
        is None
    )


def broken_stk(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(STK_SUCCESS)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


CB = ("Body", "stkCallback")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "not json",
        b"\xff",
        {},
        {"Body": {}},
        {"Body": {"stkCallback": "x"}},
        broken_stk((*CB, "CheckoutRequestID"), KeyError),
        broken_stk((*CB, "CheckoutRequestID"), ""),
        broken_stk((*CB, "MerchantRequestID"), None),
        broken_stk((*CB, "ResultCode"), KeyError),
        broken_stk((*CB, "ResultCode"), "zero"),
        broken_stk((*CB, "ResultCode"), True),
        broken_stk((*CB, "ResultCode"), 0.0),
        broken_stk((*CB, "CallbackMetadata"), ["Amount"]),
        broken_stk((*CB, "CallbackMetadata", "Item"), "Amount"),
        broken_stk((*CB, "CallbackMetadata", "Item"), [{"Value": 1}]),
        with_item(STK_SUCCESS, "Amount", "1.005"),
        with_item(STK_SUCCESS, "Amount", -1),
        with_item(STK_SUCCESS, "Amount", "-1.00"),
        with_item(STK_SUCCESS, "Amount", True),
        with_item(STK_SUCCESS, "Amount", "1e3"),
        with_item(STK_SUCCESS, "Amount", "NaN"),
        with_item(STK_SUCCESS, "Amount", "KES 5"),
        with_item(STK_SUCCESS, "Amount", {"v": 1}),
    ],
)
def test_stk_garbage_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedCallback) as caught:
        parse_stk_callback(body)
    assert caught.value.reason


# --- amounts ------------------------------------------------------------------------------

CENTS = st.integers(min_value=0, max_value=10**13)


@given(CENTS)
def test_amount_text_with_two_decimals_is_exact(cents: int) -> None:
    assert amount_to_cents(f"{cents // 100}.{cents % 100:02d}") == cents


@given(CENTS)
def test_amount_with_thousands_separators_is_exact(cents: int) -> None:
    assert amount_to_cents(f"{Decimal(cents) / 100:,.2f}") == cents


@given(CENTS)
def test_amount_as_json_float_is_exact(cents: int) -> None:
    value = json.loads(json.dumps(float(Decimal(cents) / 100)))
    assert amount_to_cents(value) == cents


@given(st.integers(min_value=0, max_value=10**11))
def test_amount_as_whole_number_is_shillings(shillings: int) -> None:
    assert amount_to_cents(shillings) == shillings * 100
    assert amount_to_cents(str(shillings)) == shillings * 100


@given(CENTS, st.integers(min_value=1, max_value=9))
def test_amount_with_a_third_decimal_is_refused(cents: int, extra: int) -> None:
    with pytest.raises(ValueError):
        amount_to_cents(f"{cents // 100}.{cents % 100:02d}{extra}")


@given(st.integers(min_value=1, max_value=10**13))
def test_negative_amounts_are_refused_unless_allowed(cents: int) -> None:
    text = f"-{Decimal(cents) / 100:.2f}"
    with pytest.raises(ValueError):
        amount_to_cents(text)
    assert amount_to_cents(text, allow_negative=True) == -cents


@given(CENTS)
def test_stk_amount_round_trips_through_the_callback(cents: int) -> None:
    body = with_item(STK_SUCCESS, "Amount", f"{Decimal(cents) / 100:.2f}")
    assert parse_stk_callback(body).amount_cents == cents


# --- phone numbers -----------------------------------------------------------------------


@given(st.sampled_from("17"), st.integers(min_value=0, max_value=10**8 - 1))
def test_every_usual_kenyan_form_gives_one_daraja_number(prefix: str, rest: int) -> None:
    subscriber = f"{prefix}{rest:08d}"
    forms = [
        f"+254{subscriber}",
        f"254{subscriber}",
        f"0{subscriber}",
        subscriber,
        f"+254 {subscriber[:3]} {subscriber[3:]}",
    ]
    assert {to_daraja_msisdn(form) for form in forms} == {f"254{subscriber}"}
    assert to_e164(forms[2]) == f"+254{subscriber}"


@pytest.mark.parametrize(
    "bad", ["", "+255712345678", "25471234567", "2547123456789", "0812345678", "phone"]
)
def test_non_kenyan_mobile_numbers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        to_daraja_msisdn(bad)


# --- C2B -----------------------------------------------------------------------------------


def test_c2b_example_is_read_in_full() -> None:
    note = parse_c2b(C2B)
    assert (note.trans_id, note.transaction_type) == ("RKL51ZDR4F", "Pay Bill")
    assert note.trans_time == nairobi(2023, 11, 21, 12, 13, 25)
    assert (note.amount_cents, note.org_balance_cents) == (500, 2500)
    assert (note.bill_ref, note.shortcode) == ("M00042", "600966")
    assert (note.msisdn_masked_or_hash, note.first_name) == ("2547 ***** 126", "JANE")


def test_c2b_variations_hashed_msisdn_empty_balance_numbers() -> None:
    body = dict(
        C2B, MSISDN="a" * 64, OrgAccountBalance="", TransAmount=1500, BusinessShortCode=600966
    )
    del body["FirstName"]
    note = parse_c2b(body)
    assert note.msisdn_masked_or_hash == "a" * 64
    assert (note.org_balance_cents, note.amount_cents, note.shortcode, note.first_name) == (
        None,
        150000,
        "600966",
        "",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"TransID": ""},
        {"TransID": None},
        {"TransTime": "21-11-2023"},
        {"TransAmount": "5.001"},
        {"TransAmount": "-5.00"},
        {"TransAmount": None},
        {"BusinessShortCode": ""},
    ],
)
def test_c2b_garbage_is_malformed(changes: dict[str, Any]) -> None:
    with pytest.raises(MalformedCallback):
        parse_c2b({**C2B, **changes})


def test_c2b_non_object_is_malformed() -> None:
    with pytest.raises(MalformedCallback):
        parse_c2b(["TransID"])


# --- B2C and transaction status ---------------------------------------------------------------


def test_b2c_success_example_is_read_in_full() -> None:
    result = parse_b2c_result(B2C_SUCCESS)
    assert (result.originator_conversation_id, result.result_code, result.succeeded) == (
        "loan-77-1",
        0,
        True,
    )
    assert result.conversation_id == "AG_20191219_00005797af5d7d75f652"
    assert (result.amount_cents, result.receipt, result.transaction_id) == (
        1000,
        "NLJ41HAY6Q",
        "NLJ41HAY6Q",
    )
    assert result.receiver_name == "254708374149 - John Doe"
    assert result.completed_at == nairobi(2019, 12, 19, 11, 45, 50)


def test_b2c_failure_has_no_result_parameters() -> None:
    result = parse_b2c_result(B2C_BAD_INITIATOR)
    assert (result.result_code, result.succeeded) == (2001, False)
    assert (result.amount_cents, result.receipt, result.receiver_name, result.completed_at) == (
        None,
        None,
        None,
        None,
    )


def test_b2c_single_parameter_object_and_string_codes() -> None:
    body = copy.deepcopy(B2C_SUCCESS)
    body["Result"]["ResultCode"] = "0"
    body["Result"]["ResultParameters"]["ResultParameter"] = {
        "Key": "TransactionAmount",
        "Value": "250.00",
    }
    result = parse_b2c_result(body)
    assert (result.result_code, result.amount_cents, result.receipt) == (0, 25000, None)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Result": []},
        {"Result": {"ResultCode": 0}},
        {"Result": {"OriginatorConversationID": "x", "ResultCode": "ok"}},
        {
            "Result": {
                **B2C_SUCCESS["Result"],
                "ResultParameters": {
                    "ResultParameter": [{"Key": "TransactionAmount", "Value": 10.001}]
                },
            }
        },
        {
            "Result": {
                **B2C_SUCCESS["Result"],
                "ResultParameters": {"ResultParameter": [{"Value": 1}]},
            }
        },
    ],
)
def test_b2c_garbage_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedCallback):
        parse_b2c_result(body)


def test_transaction_status_result_describes_the_original_transaction() -> None:
    params = [
        {"Key": "DebitPartyName", "Value": "600000 - SACCO"},
        {"Key": "CreditPartyName", "Value": "254708374149 - John Doe"},
        {"Key": "OriginatorConversationID", "Value": "loan-77-1"},
        {"Key": "InitiatedTime", "Value": 20200120164825},
        {"Key": "TransactionReason"},
        {"Key": "ReasonType", "Value": "Business Payment to Customer via API"},
        {"Key": "TransactionStatus", "Value": "Completed"},
        {"Key": "FinalisedTime", "Value": 20200120164825},
        {"Key": "Amount", "Value": 10},
        {"Key": "ConversationID", "Value": "AG_20200120_00005fb4c4d6ac50ee56"},
        {"Key": "ReceiptNo", "Value": "NLL0000000"},
    ]
    body = {
        "Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": "10816-694520-2",
            "ConversationID": "AG_20200120_0000657265d5fa9ae5c0",
            "TransactionID": "NLL0000000",
            "ResultParameters": {"ResultParameter": params},
            "ReferenceData": {"ReferenceItem": {"Key": "Occasion"}},
        }
    }
    status = parse_transaction_status_result(body)
    assert (status.result_code, status.status, status.receipt, status.amount_cents) == (
        0,
        "Completed",
        "NLL0000000",
        1000,
    )
    assert status.original_originator_conversation_id == "loan-77-1"
    assert status.original_conversation_id == "AG_20200120_00005fb4c4d6ac50ee56"
    assert status.query_conversation_id == "AG_20200120_0000657265d5fa9ae5c0"
    assert status.finalised_at == nairobi(2020, 1, 20, 16, 48, 25)
    assert (status.debit_party, status.credit_party) == (
        "600000 - SACCO",
        "254708374149 - John Doe",
    )


# --- statement export ------------------------------------------------------------------------

HEADER = ",".join(f'"{c}"' for c in STATEMENT_COLUMNS)
PREAMBLE = 'Account Holder:,"UMOJA SACCO"\nShort Code:,600966\nTime Period:,From 01-11-2023 To 30-11-2023\n\n'
ROW_IN = 'RKL51ZDR4F,21-11-2023 12:13:25,21-11-2023 12:13:20,Pay Bill from 2547***126 - JANE Acc. M00042,Completed,"1,500.00",,"26,500.00",true,Pay Bill,2547***126 - JANE,,M00042'
ROW_OUT = 'RKL61ABCDE,2023-11-22 09:00:00,2023-11-22 08:59:59,Business Payment to 2547***678,Completed,,-500.00,"26,000.00",false,Business Payment to Customer via API,2547***678 - JOHN,,'


def test_statement_with_preamble_thousands_and_signed_withdrawals() -> None:
    rows = parse_statement_csv(
        "\ufeff" + PREAMBLE + HEADER + "\n" + ROW_IN + "\n\n" + ROW_OUT + "\n"
    )
    assert [r.receipt for r in rows] == ["RKL51ZDR4F", "RKL61ABCDE"]
    paid, out = rows
    assert (paid.paid_in_cents, paid.withdrawn_cents, paid.balance_cents) == (150000, 0, 2650000)
    assert (out.paid_in_cents, out.withdrawn_cents, out.balance_cents) == (0, 50000, 2600000)
    assert paid.completed_at == nairobi(2023, 11, 21, 12, 13, 25)
    assert out.completed_at == nairobi(2023, 11, 22, 9, 0, 0)
    assert (paid.balance_confirmed, out.balance_confirmed) == (True, False)
    assert (paid.account_no, paid.reason_type, paid.status) == ("M00042", "Pay Bill", "Completed")


def test_statement_columns_are_taken_by_name_and_footer_lines_skipped() -> None:
    text = "Receipt No.,Withdrawn,Paid In,Completion Time\nRKL51ZDR4F,,250.00,21/11/2023 12:13\nTotal,,,\nPrinted by portal\n"
    (row,) = parse_statement_csv(text)
    assert (row.receipt, row.paid_in_cents, row.balance_cents, row.details) == (
        "RKL51ZDR4F",
        25000,
        None,
        "",
    )
    assert row.completed_at == nairobi(2023, 11, 21, 12, 13, 0)


def test_statement_with_only_a_header_is_empty() -> None:
    assert parse_statement_csv(PREAMBLE + HEADER + "\n") == []


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (HEADER + "\n" + ROW_IN.replace('"1,500.00"', "1500.005"), 2),
        (HEADER + "\n" + ROW_IN.replace("21-11-2023 12:13:25", "someday"), 2),
        (HEADER + "\n" + ',,,,,"10.00"', 2),
        ("Receipt No.,Paid In\n", 1),
        ("no header here\n" + ROW_IN, None),
    ],
)
def test_statement_garbage_fails_loudly_with_the_line(text: str, line: int | None) -> None:
    with pytest.raises(MalformedStatement) as caught:
        parse_statement_csv(text)
    assert caught.value.line == line
