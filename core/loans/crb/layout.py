"""The submission file's layout, read from data, and its own validator. Pure: no database,
no clock (docs/integrations/crb-submission.md).

A layout (``dst.v1.toml``) lists record types (header, consumer, account, guarantor,
trailer), each an ordered list of fields with a type, a width, whether it is required and,
for codes, the allowed codes. ``render`` writes records as lines; ``validate`` checks every
record against the layout and the trailer against the rows, and names the record (the loan
account or the consumer's member number) and the field of each problem.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

LAYOUT_FILE = Path(__file__).with_name("dst.v1.toml")
FIELD_TYPES = frozenset({"text", "digits", "date", "amount", "int", "code"})

_DIGITS = re.compile(r"[0-9]+")
_AMOUNT = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{2}")
_INT = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    required: bool
    width: int | None = None
    codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordLayout:
    type: str
    name: str
    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    version: str
    separator: str
    records: dict[str, RecordLayout]  # by record type, in file order
    account_status: dict[str, str]

    def names(self, record_type: str) -> tuple[str, ...]:
        return tuple(f.name for f in self.records[record_type].fields)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the file: the line, the record's key, the field, why."""

    line: int
    record: str  # e.g. "account L0000012", "consumer M000034", "trailer"
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.record}, {self.field}: {self.reason}"


def parse_layout(data: dict[str, Any]) -> Layout:
    """A layout from its TOML data; a malformed layout is a programming error (ValueError)."""
    records: dict[str, RecordLayout] = {}
    for rec in data["records"]:
        fields = []
        for f in rec["fields"]:
            if f["type"] not in FIELD_TYPES:
                raise ValueError(f"{rec['name']}.{f['name']}: unknown type {f['type']!r}")
            if f["type"] == "code" and not f.get("codes"):
                raise ValueError(f"{rec['name']}.{f['name']}: a code field needs codes")
            fields.append(
                Field(f["name"], f["type"], bool(f["required"]), f.get("width"),
                      tuple(f.get("codes", ())))
            )  # fmt: skip
        if not fields or fields[0].name != "record_type" or fields[0].codes != (rec["type"],):
            raise ValueError(f"{rec['name']}: the first field must be its record_type")
        records[rec["type"]] = RecordLayout(rec["type"], rec["name"], tuple(fields))
    if set(records) != {"H", "C", "A", "G", "T"}:
        raise ValueError("a layout has the records H, C, A, G and T")
    statuses = dict(data.get("account_status", {}))
    account_codes = next(f.codes for f in records["A"].fields if f.name == "account_status")
    if set(statuses) != set(account_codes):
        raise ValueError("account_status must describe every account status code")
    return Layout(str(data["version"]), str(data["separator"]), records, statuses)


@cache
def current_layout() -> Layout:
    with LAYOUT_FILE.open("rb") as fh:
        return parse_layout(tomllib.load(fh))


# ----------------------------------------------------------------------- values


def amount(cents: int) -> str:
    """KES with two decimals, no separator: 123456 cents -> ``1234.56``."""
    if cents < 0:
        raise ValueError("an amount in the file is never negative")
    return f"{cents // 100}.{cents % 100:02d}"


def amount_cents(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int(frac)


def day(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value is not None else ""


def check_value(f: Field, value: str) -> str | None:
    """Why ``value`` does not fit ``f``, or None."""
    if value == "":
        return "required" if f.required else None
    if any(c in value for c in "|\r\n"):
        return "holds a separator or a line break"
    if f.width is not None and len(value) > f.width:
        return f"longer than {f.width} characters"
    if f.type == "digits" and not _DIGITS.fullmatch(value):
        return "not digits only"
    if f.type == "amount" and not _AMOUNT.fullmatch(value):
        return "not an amount (KES with two decimals)"
    if f.type == "int" and not _INT.fullmatch(value):
        return "not a whole number"
    if f.type == "code" and value not in f.codes:
        return f"not one of {', '.join(f.codes)}"
    if f.type == "date":
        if not re.fullmatch(r"[0-9]{8}", value):
            return "not a date (YYYYMMDD)"
        try:
            date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            return "not a date (YYYYMMDD)"
    return None


# ----------------------------------------------------------------------- file


def render(layout: Layout, records: list[dict[str, str]]) -> bytes:
    """The file: each record (``record_type`` first) as one line in its layout's order."""
    lines = []
    for rec in records:
        names = layout.names(rec["record_type"])
        unknown = set(rec) - set(names)
        if unknown:
            raise ValueError(f"fields not in the layout: {sorted(unknown)}")
        lines.append(layout.separator.join(rec.get(n, "") for n in names))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _key(rtype: str, values: dict[str, str]) -> str:
    if rtype == "C":
        return f"consumer {values.get('member_number', '?')}"
    if rtype in ("A", "G"):
        name = "account" if rtype == "A" else "guarantor of account"
        return f"{name} {values.get('account_number', '?')}"
    return {"H": "header", "T": "trailer"}.get(rtype, "record")


def validate(layout: Layout, content: bytes) -> list[Problem]:
    """Every problem of the file against its layout: each field's type, width, required
    flag and codes; the order H, C…, A…, G…, T; each account's consumer present; each
    guarantor's account present; the trailer's counts and totals equal to the rows'."""
    problems: list[Problem] = []
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [Problem(0, "file", "encoding", "not UTF-8")]
    if not text.endswith("\n"):
        problems.append(Problem(0, "file", "end", "no line break after the last record"))
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    order = "HCAGT"
    last = -1
    seen: dict[str, list[dict[str, str]]] = {t: [] for t in order}
    for n, line in enumerate(lines, start=1):
        parts = line.split(layout.separator)
        rtype = parts[0]
        rec = layout.records.get(rtype)
        if rec is None:
            problems.append(Problem(n, "record", "record_type", f"unknown type {rtype!r}"))
            continue
        values = dict(zip((f.name for f in rec.fields), parts, strict=False))
        key = _key(rtype, values)
        if len(parts) != len(rec.fields):
            problems.append(Problem(n, key, "record", f"{len(parts)} fields, the layout has "
                                                      f"{len(rec.fields)}"))  # fmt: skip
            continue
        if order.index(rtype) < last:
            problems.append(Problem(n, key, "record_type", "out of order (H, C, A, G, T)"))
        last = max(last, order.index(rtype))
        for f in rec.fields:
            reason = check_value(f, values[f.name])
            if reason:
                problems.append(Problem(n, key, f.name, reason))
        seen[rtype].append({**values, "_line": str(n)})
    for rtype in ("H", "T"):
        if len(seen[rtype]) != 1:
            problems.append(Problem(0, _key(rtype, {}), "record_type",
                                    f"{len(seen[rtype])} found, one expected"))  # fmt: skip
    problems.extend(_cross_checks(seen))
    return problems


def _cross_checks(seen: dict[str, list[dict[str, str]]]) -> list[Problem]:
    problems: list[Problem] = []
    ids = Counter(c["national_id"] for c in seen["C"])
    accounts = {a["account_number"] for a in seen["A"]}
    for c in seen["C"]:
        if ids[c["national_id"]] > 1:
            problems.append(Problem(int(c["_line"]), _key("C", c), "national_id",
                                    "the same consumer twice"))  # fmt: skip
    for a in seen["A"]:
        if a["national_id"] not in ids:
            problems.append(Problem(int(a["_line"]), _key("A", a), "national_id",
                                    "no consumer record with this ID"))  # fmt: skip
        if a["listing_flag"] == "N" and a["account_status"] in ("C", "D", "E"):
            problems.append(Problem(int(a["_line"]), _key("A", a), "account_status",
                                    "negative status on a loan not listable"))  # fmt: skip
        if a["listing_flag"] == "N" and _is_positive_amount(a["overdue_balance"]):
            problems.append(Problem(int(a["_line"]), _key("A", a), "overdue_balance",
                                    "arrears reported on a loan not listable"))  # fmt: skip
        if a["account_status"] == "A" and _is_positive_amount(a["current_balance"]):
            problems.append(Problem(int(a["_line"]), _key("A", a), "current_balance",
                                    "a closed account owes nothing"))  # fmt: skip
    for g in seen["G"]:
        if g["account_number"] not in accounts:
            problems.append(Problem(int(g["_line"]), _key("G", g), "account_number",
                                    "no account record with this number"))  # fmt: skip
    if len(seen["T"]) == 1:
        t = seen["T"][0]
        line = int(t["_line"])
        for name, want in (("consumer_count", len(seen["C"])), ("account_count", len(seen["A"])),
                           ("guarantor_count", len(seen["G"]))):  # fmt: skip
            if _INT.fullmatch(t[name]) and int(t[name]) != want:
                problems.append(Problem(line, "trailer", name, f"says {t[name]}, rows {want}"))
        for name, column in (("total_current_balance", "current_balance"),
                             ("total_overdue_balance", "overdue_balance")):  # fmt: skip
            values = [a[column] for a in seen["A"]]
            if _AMOUNT.fullmatch(t[name]) and all(_AMOUNT.fullmatch(v) for v in values):
                total = sum(amount_cents(v) for v in values)
                if amount_cents(t[name]) != total:
                    problems.append(
                        Problem(
                            line, "trailer", name, f"says {t[name]}, rows sum to {amount(total)}"
                        )
                    )
    return problems


def _is_positive_amount(text: str) -> bool:
    return bool(_AMOUNT.fullmatch(text)) and amount_cents(text) > 0
