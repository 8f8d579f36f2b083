"""Pure parsers for what M-Pesa Daraja sends us (no I/O, no clock, no database).

Each parser takes the decoded JSON (or the raw text of a statement export),
accepts exactly the shapes in shared/GATEWAYS.md plus their documented
variations, and raises ``MalformedCallback`` / ``MalformedStatement`` on
anything else. The caller stores the raw body *before* parsing, so a parse
failure parks the callback for staff instead of losing it.

Money comes out as integer cents, converted through ``Decimal``: an amount with
more than two decimals, a negative amount, a bool, NaN or an exponent is
refused, never rounded. Times come out timezone-aware in UTC (Daraja speaks
Africa/Nairobi local time). Phone numbers come out in E.164 (``+2547…``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")

__all__ = [
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


class MalformedStatement(ValueError):
    """A statement export we cannot read without guessing; ``line`` is 1-based."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line


# --- phone numbers -----------------------------------------------------------

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


# --- amounts -----------------------------------------------------------------

_AMOUNT_TEXT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")


def amount_to_cents(value: object, *, allow_negative: bool = False) -> int:
    """An amount as Daraja writes it (``1``, ``1.0``, ``"5.00"``, ``"1,500.00"``) → cents.

    Raises ``ValueError`` for more than two decimals, a negative amount (unless
    allowed), bools, NaN/infinity, exponents or any other text.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("amount is not finite")
        # repr() is the shortest text that round-trips: 1.0 → "1.0", 0.07 → "0.07".
        amount = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("amount is not finite")
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if not _AMOUNT_TEXT.match(text):
            raise ValueError("amount is not a plain decimal number")
        amount = Decimal(text.replace(",", ""))
    else:
        raise ValueError(f"amount has type {type(value).__name__}")
    if amount < 0 and not allow_negative:
        raise ValueError("amount is negative")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError("amount has more than two decimals")
    return int(cents)


def _cents(value: object, what: str) -> int:
    try:
        return amount_to_cents(value)
    except (ValueError, InvalidOperation) as exc:
        raise MalformedCallback(f"{what}: {exc}") from None


# --- times -------------------------------------------------------------------


def _local_time(value: object, formats: Iterable[str]) -> datetime | None:
    """Africa/Nairobi wall-clock text in one of ``formats`` → aware UTC, else None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    for fmt in formats:
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=NAIROBI).astimezone(UTC)
    return None


_COMPACT = ("%Y%m%d%H%M%S",)
_B2C_TIME = ("%d.%m.%Y %H:%M:%S", "%Y%m%d%H%M%S")
_STATEMENT_TIME = (
    "%d-%m-%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%Y%m%d%H%M%S",
)


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
        transaction_date=_local_time(items.get("TransactionDate"), _COMPACT),
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
    trans_time = _local_time(body.get("TransTime"), _COMPACT)
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
        completed_at=_local_time(params.get("TransactionCompletedDateTime"), _B2C_TIME),
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
        finalised_at=_local_time(params.get("FinalisedTime"), _B2C_TIME),
        debit_party=_optional_text(params, "DebitPartyName"),
        credit_party=_optional_text(params, "CreditPartyName"),
        reason_type=_optional_text(params, "ReasonType"),
    )


# --- org portal statement export --------------------------------------------

STATEMENT_COLUMNS = (
    "Receipt No.",
    "Completion Time",
    "Initiation Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
    "Balance Confirmed",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    "A/C No.",
)
_REQUIRED_COLUMNS = ("receipt no", "completion time", "paid in", "withdrawn")
_RECEIPT = re.compile(r"^[A-Za-z0-9]{6,20}$")


@dataclass(frozen=True, slots=True)
class StatementRow:
    receipt: str
    completed_at: datetime | None
    initiated_at: datetime | None
    details: str
    status: str
    paid_in_cents: int
    withdrawn_cents: int  # always >= 0, whatever sign the export used
    balance_cents: int | None
    balance_confirmed: bool | None
    reason_type: str
    other_party: str
    linked_transaction_id: str
    account_no: str


def _column_key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower()).rstrip(".").strip()


def parse_statement_csv(text: str) -> list[StatementRow]:
    """M-Pesa org portal statement export (CSV) → rows, in file order.

    Lines before the header row (account holder, period, ...) are skipped; the
    header is found by its ``Receipt No.`` cell and columns are taken by name,
    so order and extra columns do not matter. Blank lines and footer lines (no
    receipt-like first cell and no amounts) are skipped. A row with a receipt
    whose amount or time can't be read raises ``MalformedStatement``: better
    a loud import failure than a silently dropped payment.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    columns: dict[str, int] | None = None
    rows: list[StatementRow] = []
    try:
        for line, cells in enumerate(reader, start=1):
            if columns is None:
                keys = [_column_key(cell) for cell in cells]
                if "receipt no" in keys:
                    columns = {key: i for i, key in enumerate(keys) if key}
                    missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
                    if missing:
                        raise MalformedStatement(f"header lacks {', '.join(missing)}", line)
                continue
            row = _statement_row(cells, columns, line)
            if row is not None:
                rows.append(row)
    except csv.Error as exc:
        raise MalformedStatement(f"not readable as CSV: {exc}", reader.line_num) from None
    if columns is None:
        raise MalformedStatement("no header row with 'Receipt No.' found")
    return rows


def _statement_row(cells: list[str], columns: dict[str, int], line: int) -> StatementRow | None:
    def cell(key: str) -> str:
        index = columns.get(key)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    receipt = cell("receipt no")
    if not any(c.strip() for c in cells):
        return None
    if not _RECEIPT.match(receipt):
        if cell("paid in") or cell("withdrawn"):
            raise MalformedStatement(f"amount on a line without a receipt: {receipt!r}", line)
        return None  # footer or note line

    def money(key: str, *, signed: bool = False) -> int | None:
        raw = cell(key)
        if not raw:
            return None
        try:
            return amount_to_cents(raw, allow_negative=signed)
        except (ValueError, InvalidOperation):
            raise MalformedStatement(f"{key!r} is not an amount: {raw!r}", line) from None

    def when(key: str) -> datetime | None:
        raw = cell(key)
        if not raw:
            return None
        parsed = _local_time(raw, _STATEMENT_TIME)
        if parsed is None:
            raise MalformedStatement(f"{key!r} is not a time: {raw!r}", line)
        return parsed

    withdrawn = money("withdrawn", signed=True)
    confirmed = cell("balance confirmed").lower()
    return StatementRow(
        receipt=receipt,
        completed_at=when("completion time"),
        initiated_at=when("initiation time"),
        details=cell("details"),
        status=cell("transaction status"),
        paid_in_cents=money("paid in") or 0,
        withdrawn_cents=abs(withdrawn or 0),
        balance_cents=money("balance", signed=True),
        balance_confirmed={"true": True, "false": False}.get(confirmed),
        reason_type=cell("reason type"),
        other_party=cell("other party info"),
        linked_transaction_id=cell("linked transaction id"),
        account_no=cell("a/c no"),
    )
