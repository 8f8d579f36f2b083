"""How M-Pesa writes amounts, times and statements: pure parsers, no I/O.

Shared by the Daraja callback parsers (``integrations.mpesa.parse``), the statement
reader (``integrations.mpesa.statement``, used by the ``reconcile-statement`` command
and the staff API) and the stand-in, so an amount or a Nairobi time is read one way
everywhere. Core never sees these formats: it gets cents, aware times and typed rows.

Money comes out as integer cents, converted through ``Decimal``: an amount with
more than two decimals, a negative amount, a bool, NaN or an exponent is
refused, never rounded. Times come out timezone-aware in UTC (M-Pesa speaks
Africa/Nairobi local time).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")

__all__ = [
    "NAIROBI",
    "STATEMENT_COLUMNS",
    "MalformedStatement",
    "StatementRow",
    "amount_to_cents",
    "decode_statement",
    "nairobi_time",
    "parse_statement_csv",
]


class MalformedStatement(ValueError):
    """A statement export we cannot read without guessing; ``line`` is 1-based."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line


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


# --- times -------------------------------------------------------------------


def nairobi_time(value: object, formats: Iterable[str]) -> datetime | None:
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


_STATEMENT_TIME = (
    "%d-%m-%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%Y%m%d%H%M%S",
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


def decode_statement(data: bytes) -> str:
    """The bytes of an uploaded export → text: UTF-8 (with or without a BOM), else
    Windows-1252, which is what a statement re-saved by Excel on Windows is in.
    Receipts, times and amounts are ASCII either way; only names in ``Details``
    could differ."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise MalformedStatement("neither UTF-8 nor Windows-1252 text") from None


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
        parsed = nairobi_time(raw, _STATEMENT_TIME)
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
