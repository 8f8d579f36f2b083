"""Check-off files, pure: reading an employer's remittance (CSV or XLSX) into lines, and
writing the expected deductions for its payroll (CSV or XLSX).

A remittance has a header row and one line per employee. Columns (any case, spaces or
``-`` for ``_``, a UTF-8 BOM tolerated): ``payroll_number`` and/or ``national_id`` (one of
them per line), ``name`` (optional), ``amount`` (KES, ``12,345.50``: thousands
separators, at most two decimals). Every refusal names the line, the header being line 1.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from core.kernel.errors import InvalidInput

MAX_LINES = 50_000
MAX_BYTES = 20 * 1024 * 1024
COLUMNS = ("payroll_number", "national_id", "name", "amount")
ALIASES = {"payroll_no": "payroll_number", "payroll": "payroll_number", "id_number":
           "national_id", "national_id_number": "national_id", "amount_kes": "amount"}  # fmt: skip
XLSX_MAGIC = b"PK\x03\x04"
_AMOUNT = re.compile(r"[0-9]{1,3}(,[0-9]{3})*(\.[0-9]{1,2})?|[0-9]+(\.[0-9]{1,2})?")


class FileRefused(InvalidInput):
    """A remittance file that cannot be read; ``line`` names the line (1: the header)."""

    code = "checkoff_file_invalid"

    def __init__(self, detail: str, *, line: int | None = None) -> None:
        where = f"line {line}" if line is not None else "file"
        super().__init__(f"{where}: {detail}", field=where, reason="checkoff_file")
        self.line = line


@dataclass(frozen=True)
class FileLine:
    line_no: int
    payroll_number: str | None
    national_id: str | None
    name: str
    amount_cents: int


def parse_amount(text: object, line: int) -> int:
    """KES as written by a payroll (``12,345.50``, ``12345``, a number cell) -> cents."""
    if isinstance(text, bool):
        raise FileRefused("amount is not a number", line=line)
    if isinstance(text, int):
        text = str(text)
    elif isinstance(text, float):
        text = format(Decimal(repr(text)), "f")
    raw = str(text or "").strip().replace(" ", "")
    if not raw:
        raise FileRefused("amount is missing", line=line)
    if not _AMOUNT.fullmatch(raw):
        raise FileRefused(f"amount {raw[:20]!r} is not KES like 12,345.50", line=line)
    try:
        cents = Decimal(raw.replace(",", "")) * 100
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise FileRefused("amount is not a number", line=line) from exc
    if cents != cents.to_integral_value():
        raise FileRefused("amount has more than two decimals", line=line)
    if cents <= 0:
        raise FileRefused("amount must be more than zero", line=line)
    if cents > 10**13:
        raise FileRefused("amount is too large", line=line)
    return int(cents)


def _header(cells: Sequence[object]) -> list[str]:
    names = []
    for cell in cells:
        name = re.sub(r"[\s\-]+", "_", str(cell or "").strip().lstrip("\ufeff").lower())
        names.append(ALIASES.get(name, name))
    if "amount" not in names:
        raise FileRefused("the header has no amount column", line=1)
    if "payroll_number" not in names and "national_id" not in names:
        raise FileRefused("the header needs payroll_number or national_id", line=1)
    return names


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def lines_of(rows: Iterable[Sequence[object]]) -> list[FileLine]:
    """Rows (the header first) -> lines; blank rows are skipped; a payroll number or
    national ID may appear once per file."""
    it = iter(rows)
    try:
        names = _header(next(it))
    except StopIteration:
        raise FileRefused("the file is empty", line=1) from None
    out: list[FileLine] = []
    seen: dict[tuple[str, str | None], int] = {}
    for n, row in enumerate(it, start=2):
        cells = {name: _cell(row[i]) if i < len(row) else "" for i, name in enumerate(names)}
        if not any(cells.values()):
            continue
        if len(out) >= MAX_LINES:
            raise FileRefused(f"more than {MAX_LINES} lines", line=n)
        payroll = cells.get("payroll_number") or None
        national = re.sub(r"\s", "", cells.get("national_id", "")) or None
        if payroll is None and national is None:
            raise FileRefused("neither a payroll number nor a national ID", line=n)
        if payroll is not None and len(payroll) > 32:
            raise FileRefused("payroll number longer than 32 characters", line=n)
        if national is not None and not re.fullmatch(r"[0-9]{6,9}", national):
            raise FileRefused("national ID must be 6-9 digits", line=n)
        for key in (("payroll", payroll), ("id", national)):
            if key[1] is None:
                continue
            if key in seen:
                raise FileRefused(f"{key[1]} is also on line {seen[key]}", line=n)
            seen[key] = n
        raw_amount = row[names.index("amount")] if names.index("amount") < len(row) else ""
        out.append(
            FileLine(n, payroll, national, cells.get("name", "")[:120],
                     parse_amount(raw_amount, n))
        )  # fmt: skip
    if not out:
        raise FileRefused("the file has no lines", line=2)
    return out


def read_remittance(data: bytes, filename: str = "") -> list[FileLine]:
    """A CSV or XLSX file (told apart by its first bytes) -> its lines."""
    if len(data) > MAX_BYTES:
        raise FileRefused("the file is larger than 20 MB")
    if data.startswith(XLSX_MAGIC) or filename.lower().endswith(".xlsx"):
        return lines_of(_xlsx_rows(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:  # pragma: no cover - cp1252 maps nearly all
            raise FileRefused("the file is neither UTF-8 nor Windows text") from exc
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") and "\t" not in sample else ","
    if sample.count("\t") > sample.count(delimiter):
        delimiter = "\t"
    return lines_of(csv.reader(io.StringIO(text), delimiter=delimiter))


def _xlsx_rows(data: bytes) -> Iterable[Sequence[object]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a bad file
        raise FileRefused("not a readable XLSX workbook") from exc
    sheet = book.worksheets[0]
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


# ------------------------------------------------------------------ export


EXPORT_COLUMNS = ("payroll_number", "member_number", "name", "amount", "loans", "deposits",
                  "shares", "savings")  # fmt: skip


def _kes(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def export_csv(rows: Sequence[dict[str, object]]) -> bytes:
    """The expected deductions as CSV (KES with two decimals, no separators)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            [row[c] if not c.endswith(("amount", "loans", "deposits", "shares", "savings"))
             else _kes(int(row[c])) for c in EXPORT_COLUMNS]  # type: ignore[call-overload]
        )  # fmt: skip
    return out.getvalue().encode()


def export_xlsx(rows: Sequence[dict[str, object]]) -> bytes:
    """The expected deductions as an XLSX workbook (amounts as exact decimal numbers)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("deductions")
    sheet.append(list(EXPORT_COLUMNS))
    for row in rows:
        sheet.append(
            [Decimal(int(row[c])) / 100  # type: ignore[call-overload]
             if c in ("amount", "loans", "deposits", "shares", "savings") else row[c]
             for c in EXPORT_COLUMNS]
        )  # fmt: skip
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
