"""Pure parsers for what M-Pesa Daraja sends us (no I/O, no clock, no database).

Each parser takes the decoded JSON, accepts exactly the shapes in
shared/GATEWAYS.md plus their documented variations, and raises
``MalformedCallback`` on anything else. The caller stores the raw body *before* parsing, so a parse
failure parks the callback for staff instead of losing it.

Amounts and times are read by ``integrations.mpesa.formats`` (integer cents through
``Decimal``, never rounded; aware UTC from Nairobi wall-clock time), which also
holds the org-portal statement parser the staff import uses; it is re-exported
here. Phone numbers come out in E.164 (``+2547…``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import InvalidOperation

from integrations.mpesa.formats import (
    NAIROBI,
    STATEMENT_COLUMNS,
    MalformedStatement,
    StatementRow,
    amount_to_cents,
    nairobi_time,
    parse_statement_csv,
)

__all__ = [
    "NAIROBI",
    "STATEMENT_COLUMNS",
    "B2CResult",
    "C2BNotification",
    "MalformedCallback",
    "MalformedStatement",
    "StatementRow",
    "StkCallback",
    "TransactionStatusResult",
    "amount_to_cents",
    "parse_b2c_result",
    "parse_c2b",
    "parse_statement_csv",
    "parse_stk_callback",
    "parse_transaction_status_result",
    "to_daraja_msisdn",
    "to_e164",
]


class MalformedCallback(ValueError):
    """A callback body that is not one of the documented shapes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- phone numbers -----------------------------------------------------------
#
# Deliberately not ``core.kernel.identity.normalize_msisdn``: that one decides who may
# register (libphonenumber's allocated mobile ranges, about three numbers in
# four of the 2547/2541 space). This one only reshapes what Safaricom itself
# sends or will be sent (every number a member has is already normalised by
# core), and must not drop a payer's phone because a new range is missing from
# libphonenumber's metadata.

_KE_MOBILE = re.compile(r"^(?:\+?254|0)?([17]\d{8})$")


def to_daraja_msisdn(msisdn: str | int) -> str:
    """Kenyan mobile number in any usual form → Daraja's ``2547…``/``2541…`` (no plus).

    Accepts ``+254712345678``, ``254712345678``, ``0712345678``, ``712345678``
    (spaces and dashes ignored) and the JSON number Daraja itself sends.
    """
    digits = re.sub(r"[\s\-()]", "", str(msisdn))
    match = _KE_MOBILE.match(digits)
    if match is None:
        raise ValueError("not a Kenyan mobile number (2547…/2541…)")
    return "254" + match.group(1)


def to_e164(msisdn: str | int) -> str:
    """Kenyan mobile number in any usual form → ``+2547…``."""
    return "+" + to_daraja_msisdn(msisdn)


# --- amounts and times -------------------------------------------------------


def _cents(value: object, what: str) -> int:
    try:
        return amount_to_cents(value)
    except (ValueError, InvalidOperation) as exc:
        raise MalformedCallback(f"{what}: {exc}") from None


_COMPACT = ("%Y%m%d%H%M%S",)
_B2C_TIME = ("%d.%m.%Y %H:%M:%S", "%Y%m%d%H%M%S")


# --- JSON helpers ------------------------------------------------------------


def _decode(obj: object) -> object:
    if isinstance(obj, str | bytes | bytearray):
        try:
            return json.loads(obj)
        except ValueError:
            raise MalformedCallback("body is not JSON") from None
    return obj


def _mapping(obj: object, key: str) -> Mapping[str, object]:
    if not isinstance(obj, Mapping):
        raise MalformedCallback(f"expected an object holding {key!r}")
    inner = obj.get(key)
    if not isinstance(inner, Mapping):
        raise MalformedCallback(f"{key!r} is missing or not an object")
    return inner


def _text(obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise MalformedCallback(f"{key!r} is missing or empty")
    return str(value).strip()


def _optional_text(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    return text or None


def _code(obj: Mapping[str, object], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool):
        raise MalformedCallback(f"{key!r} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value.strip())
    raise MalformedCallback(f"{key!r} is missing or not a number")


def _pairs(container: object, list_key: str, name_key: str) -> dict[str, object]:
    """Daraja's ``{"Item": [{"Name": .., "Value": ..}]}`` lists → a dict.

    The list may be a single object instead of a list; an entry without a
    value (the old ``Balance`` item) is left out.
    """
    if container is None or container == "":
        return {}
    if not isinstance(container, Mapping):
        raise MalformedCallback(f"{list_key!r} container is not an object")
    items = container.get(list_key)
    if items is None:
        return {}
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        raise MalformedCallback(f"{list_key!r} is not a list")
    pairs: dict[str, object] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get(name_key), str):
            raise MalformedCallback(f"{list_key!r} entry without {name_key!r}")
        if item.get("Value") is not None:
            pairs[str(item[name_key])] = item["Value"]
    return pairs


def _phone_or_none(value: object) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        return None
    try:
        return to_e164(value)
    except ValueError:
        return None


# --- STK push callback -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StkCallback:
    merchant_request_id: str
    checkout_request_id: str
    result_code: int
    result_desc: str
    amount_cents: int | None
    receipt: str | None
    phone: str | None
    transaction_date: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.result_code == 0


def parse_stk_callback(json_obj: object) -> StkCallback:
    """``{"Body": {"stkCallback": {...}}}`` → ``StkCallback``.

    ``CallbackMetadata`` comes only on success; items may lack ``Value``;
    ``Amount`` may be an int, a float or a string; ``PhoneNumber`` a JSON
    number; ``ResultCode`` an int or a numeric string. An unreadable phone or
    date becomes None (the payment is matched on ``CheckoutRequestID``), an
    unreadable amount is refused.
    """
    callback = _mapping(_mapping(_decode(json_obj), "Body"), "stkCallback")
    items = _pairs(callback.get("CallbackMetadata"), "Item", "Name")
    amount = items.get("Amount")
    return StkCallback(
        merchant_request_id=_text(callback, "MerchantRequestID"),
        checkout_request_id=_text(callback, "CheckoutRequestID"),
        result_code=_code(callback, "ResultCode"),
        result_desc=str(callback.get("ResultDesc") or ""),
        amount_cents=None if amount is None else _cents(amount, "Amount"),
        receipt=_optional_text(items, "MpesaReceiptNumber"),
        phone=_phone_or_none(items.get("PhoneNumber")),
        transaction_date=nairobi_time(items.get("TransactionDate"), _COMPACT),
    )


# --- C2B validation / confirmation ------------------------------------------


@dataclass(frozen=True, slots=True)
class C2BNotification:
    trans_id: str
    trans_time: datetime
    amount_cents: int
    bill_ref: str
    shortcode: str
    msisdn_masked_or_hash: str
    first_name: str
    org_balance_cents: int | None
    transaction_type: str
    middle_name: str = ""
    last_name: str = ""
    invoice_number: str = ""


def parse_c2b(json_obj: object) -> C2BNotification:
    """C2B validation or confirmation body → ``C2BNotification``.

    ``MSISDN`` is a SHA-256 hash (v1) or masked (v2): it is kept as given and
    never used to match; match on ``bill_ref``. ``OrgAccountBalance`` may be
    empty; an unreadable balance becomes None since it is informative only.
    """
    body = _decode(json_obj)
    if not isinstance(body, Mapping):
        raise MalformedCallback("C2B body is not an object")
    trans_time = nairobi_time(body.get("TransTime"), _COMPACT)
    if trans_time is None:
        raise MalformedCallback("'TransTime' is missing or not YYYYMMDDHHmmss")
    balance: int | None
    try:
        balance = amount_to_cents(body.get("OrgAccountBalance"), allow_negative=True)
    except (ValueError, InvalidOperation):
        balance = None
    return C2BNotification(
        trans_id=_text(body, "TransID"),
        trans_time=trans_time,
        amount_cents=_cents(body.get("TransAmount"), "TransAmount"),
        bill_ref=_optional_text(body, "BillRefNumber") or "",
        shortcode=_text(body, "BusinessShortCode"),
        msisdn_masked_or_hash=_optional_text(body, "MSISDN") or "",
        first_name=_optional_text(body, "FirstName") or "",
        org_balance_cents=balance,
        transaction_type=_optional_text(body, "TransactionType") or "",
        middle_name=_optional_text(body, "MiddleName") or "",
        last_name=_optional_text(body, "LastName") or "",
        invoice_number=_optional_text(body, "InvoiceNumber") or "",
    )


# --- B2C result and transaction status result --------------------------------


@dataclass(frozen=True, slots=True)
class B2CResult:
    originator_conversation_id: str
    conversation_id: str
    result_code: int
    result_desc: str
    transaction_id: str
    amount_cents: int | None
    receipt: str | None
    receiver_name: str | None
    completed_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.result_code == 0


def _result(json_obj: object) -> tuple[Mapping[str, object], dict[str, object]]:
    result = _mapping(_decode(json_obj), "Result")
    return result, _pairs(result.get("ResultParameters"), "ResultParameter", "Key")


def parse_b2c_result(json_obj: object) -> B2CResult:
    """B2C ``ResultURL`` (or ``QueueTimeOutURL``) body → ``B2CResult``.

    Failures carry no ``ResultParameters``; ``TransactionID`` may then be empty.
    """
    result, params = _result(json_obj)
    amount = params.get("TransactionAmount")
    return B2CResult(
        originator_conversation_id=_text(result, "OriginatorConversationID"),
        conversation_id=_optional_text(result, "ConversationID") or "",
        result_code=_code(result, "ResultCode"),
        result_desc=str(result.get("ResultDesc") or ""),
        transaction_id=_optional_text(result, "TransactionID") or "",
        amount_cents=None if amount is None else _cents(amount, "TransactionAmount"),
        receipt=_optional_text(params, "TransactionReceipt"),
        receiver_name=_optional_text(params, "ReceiverPartyPublicName"),
        completed_at=nairobi_time(params.get("TransactionCompletedDateTime"), _B2C_TIME),
    )


@dataclass(frozen=True, slots=True)
class TransactionStatusResult:
    """A transaction-status answer (at its ``ResultURL``) about an earlier transaction."""

    query_originator_conversation_id: str
    query_conversation_id: str
    result_code: int
    result_desc: str
    receipt: str | None
    status: str | None  # "Completed", "Failed", ... as Daraja words it
    amount_cents: int | None
    original_conversation_id: str | None
    original_originator_conversation_id: str | None
    finalised_at: datetime | None
    debit_party: str | None
    credit_party: str | None
    reason_type: str | None


def parse_transaction_status_result(json_obj: object) -> TransactionStatusResult:
    result, params = _result(json_obj)
    amount = params.get("Amount")
    return TransactionStatusResult(
        query_originator_conversation_id=_optional_text(result, "OriginatorConversationID") or "",
        query_conversation_id=_optional_text(result, "ConversationID") or "",
        result_code=_code(result, "ResultCode"),
        result_desc=str(result.get("ResultDesc") or ""),
        receipt=_optional_text(params, "ReceiptNo"),
        status=_optional_text(params, "TransactionStatus"),
        amount_cents=None if amount is None else _cents(amount, "Amount"),
        original_conversation_id=_optional_text(params, "ConversationID"),
        original_originator_conversation_id=_optional_text(params, "OriginatorConversationID"),
        finalised_at=nairobi_time(params.get("FinalisedTime"), _B2C_TIME),
        debit_party=_optional_text(params, "DebitPartyName"),
        credit_party=_optional_text(params, "CreditPartyName"),
        reason_type=_optional_text(params, "ReasonType"),
    )
