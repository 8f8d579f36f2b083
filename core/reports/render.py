"""Renderers: one ``Report`` as CSV, JSON (the API's body) or XLSX (openpyxl).

Every rendering starts with the report's ``meta`` (the date or period, the database it was
read from and the replica's lag) so a printed copy says what it shows. Cents are printed
as KES with two decimals in CSV and XLSX and stay integers in JSON.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from typing import Any

from core.reports.registry import Kind, Report

FORMATS = ("csv", "json", "xlsx")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def kes(cents: int) -> str:
    """``123456`` -> ``"1234.56"``; ``-5`` -> ``"-0.05"`` (exact, no float)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def _text(kind: Kind, value: Any) -> str:
    if value is None:
        return ""
    if kind is Kind.CENTS:
        return kes(int(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value)


def _json_value(kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return value


def to_json(report: Report) -> dict[str, Any]:
    return {
        "name": report.name,
        "title": report.title,
        "meta": dict(report.meta),
        "checks": [{"check": name, "ok": ok} for name, ok in report.checks],
        "sections": [
            {
                "title": s.title,
                "columns": [{"name": c.name, "kind": c.kind.value} for c in s.columns],
                "rows": [
                    [_json_value(c.kind, v) for c, v in zip(s.columns, row, strict=True)]
                    for row in s.rows
                ],
                "notes": list(s.notes),
            }
            for s in report.sections
        ],
    }


def _meta_lines(report: Report) -> list[list[str]]:
    lines = [[report.title]]
    lines += [[key, "" if value is None else str(value)] for key, value in report.meta.items()]
    lines += [["check", name, "ok" if ok else "FAILED"] for name, ok in report.checks]
    return lines


def to_csv(report: Report) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(_meta_lines(report))
    for s in report.sections:
        writer.writerow([])
        writer.writerow([s.title])
        writer.writerow([c.name for c in s.columns])
        for row in s.rows:
            writer.writerow([_text(c.kind, v) for c, v in zip(s.columns, row, strict=True)])
        for note in s.notes:
            writer.writerow([note])
    return out.getvalue().encode("utf-8")


def to_xlsx(report: Report) -> bytes:
    """One sheet: the meta lines, then each section; cents as numbers in KES (2 decimals)."""
    from openpyxl import Workbook  # imported here: only the XLSX path needs it

    book = Workbook()
    sheet = book.active
    sheet.title = report.name[:31]
    for line in _meta_lines(report):
        sheet.append(line)
    for s in report.sections:
        sheet.append([])
        sheet.append([s.title])
        sheet.append([c.name for c in s.columns])
        for row in s.rows:
            cells: list[Any] = []
            for c, v in zip(s.columns, row, strict=True):
                if v is None:
                    cells.append(None)
                elif c.kind is Kind.CENTS:
                    cells.append(Decimal(int(v)) / 100)
                elif c.kind is Kind.PERCENT:
                    cells.append(float(v))
                else:
                    cells.append(v)
            sheet.append(cells)
            for col, c in enumerate(s.columns, start=1):
                if c.kind is Kind.CENTS:
                    sheet.cell(row=sheet.max_row, column=col).number_format = "#,##0.00"
        for note in s.notes:
            sheet.append([note])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def render(report: Report, fmt: str) -> bytes:
    if fmt == "csv":
        return to_csv(report)
    if fmt == "xlsx":
        return to_xlsx(report)
    if fmt == "json":
        import json

        return json.dumps(to_json(report), indent=1).encode("utf-8")
    raise ValueError(f"unknown format {fmt!r}")
