"""SASRA returns and the ratio dashboard (issue 16, part 4; docs/reports/sasra.md).

A return's layout is data, one versioned TOML file per form in ``data/sasra/``
(``capital_adequacy.v1.toml``, ...): rows in the regulator's order, each either mapped to
general-ledger accounts (``accounts``: exact codes, or ``"2000-*"`` for every account
under a prefix), a figure of the close of day's classification (``category`` and
``measure``), or a ``formula`` over earlier rows (sums and differences; one ``a / b``
gives a percent). A row may carry its regulatory minimum (``minimum_percent``,
``minimum_cents``).

Every line is reconciled to the general ledger as of the date (postings with a value
date on or before it): a mapped line is the sum of its accounts' balances, kept with the
line (``Line.accounts``), and every account of the form's scope (``scope``: account
types, optionally ``scope_prefixes``) holding at least ``materiality_cents`` must be
mapped by some line, or the return is refused (``UnmappedBalance``, the account named):
a balance the layout does not know never drops silently out of a ratio.

Pure: ``load_layout``, ``parse_layout``, ``evaluate``, ``unmapped``, ``rag``, the
exports ``to_csv`` and ``to_xlsx``. Reading: ``gl_balances``, ``build_return``,
``ratio_dashboard``.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.ledger import entries as ledger_entries
from core.ledger.chart import AccountType, NormalSide
from core.loans.vocabulary import CloseDayStep
from db.models import JournalEntry, Posting
from db.models_close_day import CloseDayRun
from db.models_close_day import CloseDayStep as StepRow

DATA = Path(__file__).with_name("data") / "sasra"
FORMS: tuple[str, ...] = (
    "capital_adequacy",
    "liquidity",
    "deposit_return",
    "risk_classification",
)
MEASURES = ("amount", "count")
CLOSE_DAY_MEASURES = ("loans", "exposure_cents", "provision_cents")


class UnmappedBalance(DomainError):
    """An account of the return's scope holds a material balance no line maps."""

    code = "sasra_unmapped_balance"


class NotReconciled(DomainError):
    """A return's line disagrees with the general ledger it must equal."""

    code = "sasra_not_reconciled"


class NoClassification(DomainError):
    """Form 4 needs the close of day's classification of that date, and it has none."""

    code = "sasra_no_classification"


# ------------------------------------------------------------------ pure: layouts


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    accounts: tuple[str, ...] = ()
    measure: str = "amount"  # for mapped rows: "amount" or "count"
    formula: str = ""
    category: str = ""  # a close-of-day category (Form 4)
    minimum_percent: Decimal | None = None
    minimum_cents: int | None = None
    must_be_zero: bool = False  # a reconciling difference


@dataclass(frozen=True)
class Check:
    """A line that must equal the general ledger's total of some account types."""

    row: str
    types: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    form: str
    version: int
    title: str
    source: str
    scope: tuple[str, ...]
    scope_prefixes: tuple[str, ...]
    materiality_cents: int
    rows: tuple[Row, ...]
    checks: tuple[Check, ...] = ()

    def row(self, row_id: str) -> Row:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise KeyError(row_id)


def matches(pattern: str, code: str) -> bool:
    """``"1000"`` is that account; ``"2000-*"`` every account whose code starts ``2000-``."""
    if pattern.endswith("*"):
        return code.startswith(pattern[:-1])
    return code == pattern


def _formula_names(formula: str) -> list[str]:
    tree = ast.parse(formula, mode="eval")
    names: list[str] = []

    def walk(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            walk(node.operand, False)
        elif isinstance(node, ast.BinOp) and (
            isinstance(node.op, ast.Add | ast.Sub) or (isinstance(node.op, ast.Div) and top)
        ):
            walk(node.left, False)
            walk(node.right, False)
        else:
            raise ValueError(f"formula {formula!r}: only names, + and -, and one top-level /")

    walk(tree.body, True)
    return names


def parse_layout(raw: Mapping[str, Any]) -> Layout:
    """A layout from its TOML, checked whole (``ValueError`` naming the fault)."""
    rows: list[Row] = []
    seen: set[str] = set()
    for r in raw["rows"]:
        row = Row(
            id=str(r["id"]),
            label=str(r["label"]),
            accounts=tuple(r.get("accounts", ())),
            measure=str(r.get("measure", "amount")),
            formula=str(r.get("formula", "")),
            category=str(r.get("category", "")),
            minimum_percent=Decimal(r["minimum_percent"]) if "minimum_percent" in r else None,
            minimum_cents=int(r["minimum_cents"]) if "minimum_cents" in r else None,
            must_be_zero=bool(r.get("must_be_zero", False)),
        )
        if row.id in seen:
            raise ValueError(f"row {row.id} appears twice")
        sources = sum(bool(x) for x in (row.accounts, row.formula, row.category))
        if sources != 1:
            raise ValueError(f"row {row.id}: exactly one of accounts, formula, category")
        allowed = CLOSE_DAY_MEASURES if row.category else MEASURES
        if row.formula:
            unknown = [n for n in _formula_names(row.formula) if n not in seen]
            if unknown:
                raise ValueError(f"row {row.id}: formula names {unknown} before they exist")
        elif row.measure not in allowed:
            raise ValueError(f"row {row.id}: measure {row.measure!r} not in {allowed}")
        seen.add(row.id)
        rows.append(row)
    scope = tuple(str(t) for t in raw["scope"])
    for t in scope:
        AccountType(t)  # ValueError on a type the ledger does not have
    checks = tuple(Check(str(c["row"]), tuple(c["types"])) for c in raw.get("checks", ()))
    for c in checks:
        if c.row not in seen:
            raise ValueError(f"check names an unknown row {c.row}")
    return Layout(
        form=str(raw["form"]),
        version=int(raw["version"]),
        title=str(raw["title"]),
        source=str(raw["source"]),
        scope=scope,
        scope_prefixes=tuple(str(p) for p in raw.get("scope_prefixes", ())),
        materiality_cents=int(raw["materiality_cents"]),
        rows=tuple(rows),
        checks=checks,
    )


@cache
def load_layout(form: str, version: int = 1) -> Layout:
    """The form's layout (``NotFound`` for a form there is none of)."""
    if form not in FORMS:
        raise NotFound(f"no SASRA return {form!r}; the returns are {', '.join(FORMS)}")
    with (DATA / f"{form}.v{version}.toml").open("rb") as fh:
        layout = parse_layout(tomllib.load(fh))
    if layout.form != form:
        raise ValueError(f"{form}.v{version}.toml describes {layout.form}")
    return layout


# ------------------------------------------------------------------ pure: evaluation


@dataclass(frozen=True)
class GlBalance:
    """An account's balance on the date, on its type's side (a contra account negative)."""

    code: str
    name: str
    type: str
    cents: int


@dataclass(frozen=True)
class Line:
    id: str
    label: str
    kind: str  # "amount" (cents), "count", "percent"
    value: int | Decimal | None  # None: a percent of nothing
    minimum: int | Decimal | None = None  # cents for amounts, percent for percents
    met: bool | None = None
    accounts: tuple[GlBalance, ...] = ()  # the reconciliation: what the line adds up


@dataclass(frozen=True)
class SasraReturn:
    form: str
    version: int
    title: str
    source: str
    as_of: date
    lines: tuple[Line, ...]
    checks: tuple[tuple[str, int, int], ...] = field(default=())  # row, line, ledger

    def line(self, line_id: str) -> Line:
        for line in self.lines:
            if line.id == line_id:
                return line
        raise KeyError(line_id)


def _in_scope(layout: Layout, gl: GlBalance) -> bool:
    if gl.type not in layout.scope:
        return False
    return not layout.scope_prefixes or any(gl.code.startswith(p) for p in layout.scope_prefixes)


def unmapped(layout: Layout, balances: Iterable[GlBalance]) -> list[GlBalance]:
    """The accounts of the layout's scope holding a material balance that no row maps."""
    patterns = [p for r in layout.rows for p in r.accounts]
    return [
        gl
        for gl in balances
        if _in_scope(layout, gl)
        and abs(gl.cents) >= layout.materiality_cents
        and not any(matches(p, gl.code) for p in patterns)
    ]


def _percent_down(exact: Fraction) -> Decimal:
    """A fraction as a percent to two decimals, rounded down (as year end shows ratios)."""
    hundredths = exact * 10000
    return Decimal(hundredths.numerator // hundredths.denominator).scaleb(-2)


def _eval(node: ast.AST, values: Mapping[str, int]) -> int:
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, values)
    assert isinstance(node, ast.BinOp)
    left, right = _eval(node.left, values), _eval(node.right, values)
    return left + right if isinstance(node.op, ast.Add) else left - right


def evaluate(
    layout: Layout,
    as_of: date,
    balances: Sequence[GlBalance],
    close_day: Mapping[str, Mapping[str, int]] | None = None,
) -> SasraReturn:
    """The return from the ledger's balances (and, for Form 4, the close of day's figures
    by category). Refused with the account named when a material balance is unmapped, and
    when a line the layout checks against the ledger disagrees with it."""
    missing = unmapped(layout, balances)
    if missing:
        first = missing[0]
        raise UnmappedBalance(
            f"account {first.code} ({first.name}) holds {first.cents} cents that no line of "
            f"the {layout.form} return v{layout.version} maps",
            accounts=[gl.code for gl in missing],
        )
    values: dict[str, int] = {}
    lines: list[Line] = []
    for row in layout.rows:
        if row.accounts:
            mine = tuple(gl for gl in balances if any(matches(p, gl.code) for p in row.accounts))
            if row.measure == "count":
                value = sum(1 for gl in mine if gl.cents != 0)
            else:
                value = sum(gl.cents for gl in mine)
            values[row.id] = value
            lines.append(Line(row.id, row.label, row.measure, value, accounts=mine))
            continue
        if row.category:
            figures = (close_day or {}).get(row.category, {})
            value = int(figures.get(row.measure, 0))
            values[row.id] = value
            kind = "count" if row.measure == "loans" else "amount"
            lines.append(Line(row.id, row.label, kind, value))
            continue
        tree = ast.parse(row.formula, mode="eval").body
        if isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Div):
            num, den = _eval(tree.left, values), _eval(tree.right, values)
            exact = Fraction(num, den) if den > 0 else None
            minimum = row.minimum_percent
            met = None
            if exact is not None and minimum is not None:
                met = exact * 100 >= Fraction(minimum)
            elif minimum is not None:
                met = False
            pct = _percent_down(exact) if exact is not None else None
            lines.append(Line(row.id, row.label, "percent", pct, minimum, met))
            continue
        value = _eval(tree, values)
        values[row.id] = value
        met = None
        if row.minimum_cents is not None:
            met = value >= row.minimum_cents
        if row.must_be_zero:
            met = value == 0
        lines.append(Line(row.id, row.label, "amount", value, row.minimum_cents, met))
    checks: list[tuple[str, int, int]] = []
    for check in layout.checks:
        ledger = sum(gl.cents for gl in balances if gl.type in check.types)
        checks.append((check.row, values[check.row], ledger))
        if abs(values[check.row] - ledger) >= layout.materiality_cents:
            raise NotReconciled(
                f"line {check.row} is {values[check.row]} cents, the ledger's "
                f"{'/'.join(check.types)} total {ledger}",
                line=check.row,
            )
    return SasraReturn(
        layout.form, layout.version, layout.title, layout.source, as_of, tuple(lines),
        tuple(checks),
    )  # fmt: skip


# ------------------------------------------------------------------ reading


def gl_balances(session: Session, as_of: date) -> list[GlBalance]:
    """Every account's balance from its postings with a value date on or before ``as_of``
    (one grouped query), on its type's side: a contra account (the loan-loss provision)
    comes out negative among the assets."""
    r = ledger_entries.shard_rollup()  # a sharded hot account's shards as one line
    rows = session.execute(
        select(r.c.code, r.c.name, r.c.type, func.sum(Posting.amount_cents).label("debit"))
        .select_from(Posting)
        .join(r, r.c.account_id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(JournalEntry.value_date <= as_of)
        .group_by(r.c.id, r.c.code, r.c.name, r.c.type)
        .order_by(r.c.code)
    ).tuples()
    out: list[GlBalance] = []
    for code, name, type_, debit in rows:
        debit = int(debit or 0)
        usual = AccountType(type_).normal_side
        out.append(GlBalance(code, name, type_, debit if usual == NormalSide.DEBIT else -debit))
    return out


def close_day_figures(session: Session, as_of: date) -> dict[str, dict[str, int]]:
    """The close of day's classification of ``as_of``: loans, exposure and provision per
    category (``close_day_steps``' classify detail), or ``NoClassification``."""
    detail = session.scalar(
        select(StepRow.detail)
        .join(CloseDayRun, CloseDayRun.id == StepRow.run_id)
        .where(CloseDayRun.business_date == as_of, StepRow.step == CloseDayStep.CLASSIFY.value)
    )
    if detail is None:
        raise NoClassification(
            f"no close-of-day classification for {as_of}: run close-day for that date first"
        )
    by_category: dict[str, dict[str, int]] = json.loads(detail).get("by_category", {})
    return by_category


def check_as_of(as_of: date, today: date | None) -> None:
    """A return is of a day that has begun: a date after ``today`` (the business date of
    the injected clock) is refused."""
    if today is not None and as_of > today:
        raise InvalidInput(
            f"the date {as_of} is after today ({today})", field="date", reason="future"
        )


def build_return(
    session: Session, form: str, as_of: date, *, today: date | None = None
) -> SasraReturn:
    """The ``form`` return as of ``as_of``, reconciled to the ledger (see the module)."""
    layout = load_layout(form)
    check_as_of(as_of, today)
    figures = close_day_figures(session, as_of) if any(r.category for r in layout.rows) else None
    return evaluate(layout, as_of, gl_balances(session, as_of), figures)


# ------------------------------------------------------------------ the dashboard


@dataclass(frozen=True)
class Threshold:
    id: str
    form: str
    minimum: Decimal
    amber_below: Decimal


@dataclass(frozen=True)
class RatioStatus:
    id: str
    label: str
    form: str
    kind: str  # "percent" or "amount"
    value: int | Decimal | None
    minimum: Decimal
    amber_below: Decimal
    status: str  # "green", "amber", "red"


THRESHOLDS_VERSION = 1


@cache
def load_thresholds(version: int = THRESHOLDS_VERSION) -> tuple[Threshold, ...]:
    with (DATA / f"ratios.v{version}.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    out = tuple(
        Threshold(str(r["id"]), str(r["form"]), Decimal(r["minimum"]), Decimal(r["amber_below"]))
        for r in raw["ratios"]
    )
    for t in out:
        if t.amber_below < t.minimum:
            raise ValueError(f"ratio {t.id}: amber_below under the minimum")
        load_layout(t.form).row(t.id)  # KeyError on a ratio the form does not have
    return out


def rag(value: int | Decimal | None, threshold: Threshold) -> str:
    """red below the minimum (or with nothing to divide by), amber below ``amber_below``,
    green from there."""
    if value is None or value < threshold.minimum:
        return "red"
    return "amber" if value < threshold.amber_below else "green"


def ratio_dashboard(
    session: Session, as_of: date, *, today: date | None = None
) -> list[RatioStatus]:
    """Each ratio of ``ratios.v1.toml`` with its value and colour, from the same returns
    (and so the same reconciliation) as the exports."""
    check_as_of(as_of, today)
    returns: dict[str, SasraReturn] = {}
    out: list[RatioStatus] = []
    for t in load_thresholds(THRESHOLDS_VERSION):
        if t.form not in returns:
            returns[t.form] = build_return(session, t.form, as_of)
        line = returns[t.form].line(t.id)
        # A percent is compared rounded down; exactly at the minimum counts as met, as
        # the return's own ``met`` (an exact comparison) says.
        status = rag(line.value, t)
        if line.kind == "percent" and line.met is False:
            status = "red"
        out.append(
            RatioStatus(t.id, line.label, t.form, line.kind, line.value, t.minimum,
                        t.amber_below, status)
        )  # fmt: skip
    return out


# ------------------------------------------------------------------ exports

HEADER = ("Line", "Description", "Value", "Unit", "Minimum", "Status")
RECONCILIATION_HEADER = ("Line", "Account", "Name", "Accounts", "KES")


def _cells(line: Line) -> tuple[Any, ...]:
    """A line as spreadsheet cells: amounts in KES (two decimals), counts, percents."""
    if line.kind == "amount":
        value: Any = Decimal(line.value) / 100 if line.value is not None else None
        minimum: Any = Decimal(line.minimum) / 100 if line.minimum is not None else None
        unit = "KES"
    elif line.kind == "percent":
        value, minimum, unit = line.value, line.minimum, "%"
    else:
        value, minimum, unit = line.value, None, "number"
    status = "" if line.met is None else ("met" if line.met else "NOT MET")
    return (line.id, line.label, value, unit, minimum, status)


def reconciliation_rows(ret: SasraReturn) -> list[tuple[str, str, str, int, int]]:
    """What each mapped line adds up, as the exports show it: ``(line, account, name,
    accounts, cents)``. The SACCO's own accounts one by one; the accounts under a prefix
    (each member's savings ``2000-10019``, each loan ``1100-10019-L7K2M9QX``) summed as
    ``2000-*`` with their number, so no member's balance is named in a return."""
    out: list[tuple[str, str, str, int, int]] = []
    for line in ret.lines:
        grouped: dict[str, list[GlBalance]] = {}
        for gl in line.accounts:
            prefix = gl.code.split("-", 1)[0]
            key = f"{prefix}-*" if "-" in gl.code else gl.code
            grouped.setdefault(key, []).append(gl)
        for key, members in grouped.items():
            name = members[0].name if not key.endswith("*") else f"accounts under {key[:-2]}"
            out.append((line.id, key, name, len(members), sum(g.cents for g in members)))
    return out


def _title_rows(ret: SasraReturn, sacco_name: str) -> list[tuple[str, str]]:
    return [
        ("Sacco society", sacco_name),
        ("Return", f"{ret.title} (layout v{ret.version})"),
        ("As at", ret.as_of.isoformat()),
        ("Source", ret.source),
    ]


def to_csv(ret: SasraReturn, sacco_name: str) -> bytes:
    """The return as CSV: the title rows, a blank row, the header, one row per line, then
    the reconciliation (each mapped line's accounts and balances)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    for k, v in _title_rows(ret, sacco_name):
        w.writerow((k, v))
    w.writerow(())
    w.writerow(HEADER)
    for line in ret.lines:
        w.writerow(["" if c is None else str(c) for c in _cells(line)])
    w.writerow(())
    w.writerow(RECONCILIATION_HEADER)
    for line_id, code, name, n, cents in reconciliation_rows(ret):
        w.writerow((line_id, code, name, n, str(Decimal(cents) / 100)))
    return buf.getvalue().encode()


def to_xlsx(ret: SasraReturn, sacco_name: str) -> bytes:
    """The return as an XLSX workbook: a sheet laid out like the form (title block, then
    the lines), and a ``Reconciliation`` sheet listing each mapped line's accounts."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = ret.title[:31]
    for k, v in _title_rows(ret, sacco_name):
        ws.append((k, v))
        ws.cell(ws.max_row, 1).font = Font(bold=True)
    ws.append(())
    ws.append(HEADER)
    for c in ws[ws.max_row]:
        c.font = Font(bold=True)
    for line in ret.lines:
        cells = tuple(float(c) if isinstance(c, Decimal) else c for c in _cells(line))
        ws.append(cells)
        number_format = "#,##0.00" if line.kind in ("amount", "percent") else "0"
        ws.cell(ws.max_row, 3).number_format = number_format
        ws.cell(ws.max_row, 5).number_format = number_format
    ws.column_dimensions["B"].width = 70
    ws.column_dimensions["C"].width = 20
    rec = wb.create_sheet("Reconciliation")
    rec.append(RECONCILIATION_HEADER)
    for line_id, code, name, n, cents in reconciliation_rows(ret):
        rec.append((line_id, code, name, n, float(Decimal(cents) / 100)))
        rec.cell(rec.max_row, 5).number_format = "#,##0.00"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
