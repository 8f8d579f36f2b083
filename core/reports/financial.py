"""Financial statements at any date, from the ledger alone (issue 16, part 1).

**The reporting date is the entry's ``value_date``**, the business day (Nairobi) the
money counts from (``journal_entries.value_date``, migration 0012): a balance "at D" is the
sum of the postings of entries whose value date is on or before D; a period is a range of
value dates, both ends included. An entry written after midnight for the day before (an
accrual, a back-dated teller correction) counts on the day it is for, and a statement of a
closed day does not move when a later day's entry is written. Stored balances
(``accounts.balance_cents``) are not read: they have no history.

The chart maps to statement lines by data (``statement_lines.toml``, versioned): a line
takes account-code prefixes. An account no line takes, with a balance, is shown under
"Unmapped" in its type's section and named in the notes, never dropped. Each statement
carries its checks (assets = liabilities + equity + the result not yet closed; debits =
credits; the position's totals equal the trial balance's by type).

Pure parts (``load_mapping``, ``line_for``, ``position_from``, ``income_from``,
``month_bounds``) take plain values; the ``@report`` functions read the database once each.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import Date, and_, case, func, literal, select
from sqlalchemy.orm import Session

from core.ledger import entries as ledger_entries
from core.ledger.chart import AccountType
from core.reports.registry import Column, Kind, Param, Report, ReportParams, Section, report
from db.models import JournalEntry, Posting

MAPPING_FILE = Path(__file__).with_name("statement_lines.toml")

_SECTION_TYPES = {
    "assets": AccountType.ASSET,
    "liabilities": AccountType.LIABILITY,
    "equity": AccountType.EQUITY,
    "income": AccountType.INCOME,
    "expenses": AccountType.EXPENSE,
}
_TYPE_SECTION = {t: s for s, t in _SECTION_TYPES.items()}
_DEBIT_TYPES = (AccountType.ASSET, AccountType.EXPENSE)


@dataclass(frozen=True)
class Line:
    statement: str  # position | income
    section: str  # assets | liabilities | equity | income | expenses
    key: str
    label: str
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class StatementMapping:
    version: int
    effective_from: date
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class AccountRow:
    code: str
    name: str
    type: str
    amounts: tuple[int, ...]  # debit-positive sums, one per column asked for


def parse_mapping(doc: Mapping[str, object]) -> StatementMapping:
    """Validate the mapping: known statements and sections, unique keys, no prefix twice."""
    raw_lines = doc.get("line")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise ValueError("statement mapping: no [[line]]")
    lines: list[Line] = []
    seen_keys: set[str] = set()
    seen_prefixes: dict[str, str] = {}
    for raw in raw_lines:
        line = Line(
            statement=str(raw["statement"]),
            section=str(raw["section"]),
            key=str(raw["key"]),
            label=str(raw["label"]),
            accounts=tuple(str(a) for a in raw["accounts"]),
        )
        if line.statement not in ("position", "income"):
            raise ValueError(f"line {line.key}: unknown statement {line.statement!r}")
        allowed = (
            ("assets", "liabilities", "equity")
            if line.statement == "position"
            else ("income", "expenses")
        )
        if line.section not in allowed:
            raise ValueError(f"line {line.key}: section {line.section!r} not in {allowed}")
        if line.key in seen_keys:
            raise ValueError(f"line {line.key}: key used twice")
        seen_keys.add(line.key)
        for prefix in line.accounts:
            if prefix in seen_prefixes:
                raise ValueError(
                    f"account {prefix} on lines {seen_prefixes[prefix]} and {line.key}"
                )
            seen_prefixes[prefix] = line.key
        lines.append(line)
    return StatementMapping(
        version=int(doc["version"]),  # type: ignore[call-overload]
        effective_from=date.fromisoformat(str(doc["effective_from"])),
        lines=tuple(lines),
    )


@cache
def load_mapping() -> StatementMapping:
    with MAPPING_FILE.open("rb") as fh:
        return parse_mapping(tomllib.load(fh))


def line_for(mapping: StatementMapping, code: str) -> Line | None:
    """The line whose prefix takes ``code`` (equal, or the prefix then ``-``); the longest
    prefix wins."""
    best: tuple[int, Line] | None = None
    for line in mapping.lines:
        for prefix in line.accounts:
            if (code == prefix or code.startswith(prefix + "-")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), line)
    return best[1] if best else None


def natural(type_: str, debit_positive: int) -> int:
    """A balance on the account type's usual side (assets, expenses: debit)."""
    return debit_positive if type_ in _DEBIT_TYPES else -debit_positive


# ----------------------------------------------------------------------------- dates


def month_start(d: date) -> date:
    return d.replace(day=1)


def previous_month_end(d: date) -> date:
    return d.replace(day=1) - timedelta(days=1)


def same_day_last_year(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year - 1, day=28)


def income_columns(as_of: date) -> list[tuple[str, date, date]]:
    """This month to date, last month (whole), year to date, last year to the same day."""
    last_end = previous_month_end(as_of)
    ly = same_day_last_year(as_of)
    return [
        (f"this month ({month_start(as_of)} to {as_of})", month_start(as_of), as_of),
        (f"last month ({month_start(last_end)} to {last_end})", month_start(last_end), last_end),
        (
            f"year to date ({as_of.replace(month=1, day=1)} to {as_of})",
            as_of.replace(month=1, day=1),
            as_of,
        ),
        (
            f"last year to date ({ly.replace(month=1, day=1)} to {ly})",
            ly.replace(month=1, day=1),
            ly,
        ),
    ]


# ----------------------------------------------------------------------------- reads


def account_sums(session: Session, ranges: Sequence[tuple[date | None, date]]) -> list[AccountRow]:
    """Per account, the debit-positive sum of its postings with value date in each range
    (``None`` start: from the beginning), in one scan. Accounts with no posting in any
    range are left out."""
    vd = JournalEntry.value_date
    cols = []
    for i, (start, end) in enumerate(ranges):
        cond = vd <= end if start is None else and_(vd >= start, vd <= end)
        cols.append(
            func.coalesce(func.sum(case((cond, Posting.amount_cents), else_=0)), 0).label(f"c{i}")
        )
    latest = max(end for _, end in ranges)
    r = ledger_entries.shard_rollup()  # a sharded hot account's shards as one line
    query = (
        select(r.c.code, r.c.name, r.c.type, *cols)
        .select_from(Posting)
        .join(r, r.c.account_id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(vd <= literal(latest, Date))
        .group_by(r.c.id, r.c.code, r.c.name, r.c.type)
        .order_by(r.c.code)
    )
    return [
        AccountRow(code, name, type_, tuple(int(x) for x in amounts))
        for code, name, type_, *amounts in session.execute(query).all()
    ]


# ----------------------------------------------------------------------------- pure builders


@dataclass(frozen=True)
class Statement:
    section: Section
    checks: tuple[tuple[str, bool], ...]
    unmapped: tuple[str, ...]


def _lines_table(
    mapping: StatementMapping,
    statement: str,
    accounts: Iterable[AccountRow],
    n: int,
) -> tuple[dict[str, list[tuple[str, list[int]]]], list[str]]:
    """Per section, (label, natural amounts per column); unmapped accounts with a balance
    summed into an "Unmapped" line of their type's section (and named)."""
    sections: dict[str, dict[str, list[int]]] = {}
    order: dict[str, list[str]] = {}
    for line in mapping.lines:
        if line.statement == statement:
            sections.setdefault(line.section, {})[line.label] = [0] * n
            order.setdefault(line.section, []).append(line.label)
    statement_types = (
        (AccountType.ASSET, AccountType.LIABILITY, AccountType.EQUITY)
        if statement == "position"
        else (AccountType.INCOME, AccountType.EXPENSE)
    )
    unmapped: list[str] = []
    for acc in accounts:
        if acc.type not in statement_types:
            continue
        found = line_for(mapping, acc.code)
        if found is not None and found.statement == statement:
            section, label = found.section, found.label
            sign_type = _SECTION_TYPES[section]
        else:
            if not any(acc.amounts):
                continue
            section, label = _TYPE_SECTION[AccountType(acc.type)], "Unmapped accounts"
            sign_type = AccountType(acc.type)
            unmapped.append(f"{acc.code} {acc.name} ({acc.type})")
            if label not in sections.setdefault(section, {}):
                sections[section][label] = [0] * n
                order.setdefault(section, []).append(label)
        target = sections.setdefault(section, {}).setdefault(label, [0] * n)
        for i, amount in enumerate(acc.amounts):
            target[i] += natural(sign_type, amount)
    return {s: [(lbl, sections[s][lbl]) for lbl in order[s]] for s in order}, unmapped


def position_from(
    mapping: StatementMapping, accounts: Sequence[AccountRow], headings: Sequence[str]
) -> Statement:
    """The statement of financial position, one column per heading (``accounts`` carry one
    debit-positive balance per column)."""
    n = len(headings)
    table, unmapped = _lines_table(mapping, "position", accounts, n)
    result = [0] * n
    by_type = {t: [0] * n for t in AccountType}
    for acc in accounts:
        for i, amount in enumerate(acc.amounts):
            by_type[AccountType(acc.type)][i] += natural(acc.type, amount)
    for i in range(n):
        result[i] = by_type[AccountType.INCOME][i] - by_type[AccountType.EXPENSE][i]
    rows: list[tuple[object, ...]] = []
    totals: dict[str, list[int]] = {}
    for section, title in (
        ("assets", "Assets"),
        ("liabilities", "Liabilities"),
        ("equity", "Equity"),
    ):
        rows.append((title, *([None] * n)))
        total = [0] * n
        for label, amounts in table.get(section, []):
            rows.append((f"  {label}", *amounts))
            total = [a + b for a, b in zip(total, amounts, strict=True)]
        if section == "equity":
            rows.append(("  Result for the period not yet closed", *result))
            total = [a + b for a, b in zip(total, result, strict=True)]
        rows.append((f"Total {section}", *total))
        totals[section] = total
    rows.append(
        (
            "Total liabilities and equity",
            *(a + b for a, b in zip(totals["liabilities"], totals["equity"], strict=True)),
        )
    )
    checks = []
    for i, heading in enumerate(headings):
        checks.append(
            (
                f"{heading}: assets = liabilities + equity",
                totals["assets"][i] == totals["liabilities"][i] + totals["equity"][i],
            )
        )
        checks.append(
            (
                f"{heading}: total assets = the trial balance's asset accounts",
                totals["assets"][i] == by_type[AccountType.ASSET][i],
            )
        )
    notes = tuple(f"Unmapped: {u}" for u in unmapped)
    table_section = Section(
        "Statement of financial position",
        (Column("line"), *(Column(h, Kind.CENTS) for h in headings)),
        tuple(rows),
        notes + (f"Mapping version {mapping.version}.",),
    )
    return Statement(table_section, tuple(checks), tuple(unmapped))


def income_from(
    mapping: StatementMapping, accounts: Sequence[AccountRow], headings: Sequence[str]
) -> Statement:
    """The statement of comprehensive income, one column per period."""
    n = len(headings)
    table, unmapped = _lines_table(mapping, "income", accounts, n)
    rows: list[tuple[object, ...]] = []
    totals: dict[str, list[int]] = {}
    for section, title in (("income", "Income"), ("expenses", "Expenses")):
        rows.append((title, *([None] * n)))
        total = [0] * n
        for label, amounts in table.get(section, []):
            rows.append((f"  {label}", *amounts))
            total = [a + b for a, b in zip(total, amounts, strict=True)]
        rows.append((f"Total {section}", *total))
        totals[section] = total
    surplus = [a - b for a, b in zip(totals["income"], totals["expenses"], strict=True)]
    rows.append(("Surplus (deficit) for the period", *surplus))
    by_type = {t: [0] * n for t in (AccountType.INCOME, AccountType.EXPENSE)}
    for acc in accounts:
        if acc.type in by_type:
            for i, amount in enumerate(acc.amounts):
                by_type[AccountType(acc.type)][i] += natural(acc.type, amount)
    checks = tuple(
        (
            f"{h}: surplus = income accounts - expense accounts",
            surplus[i] == by_type[AccountType.INCOME][i] - by_type[AccountType.EXPENSE][i],
        )
        for i, h in enumerate(headings)
    )
    table_section = Section(
        "Statement of comprehensive income",
        (Column("line"), *(Column(h, Kind.CENTS) for h in headings)),
        tuple(rows),
        tuple(f"Unmapped: {u}" for u in unmapped) + (f"Mapping version {mapping.version}.",),
    )
    return Statement(table_section, checks, tuple(unmapped))


# ----------------------------------------------------------------------------- reports


def _as_of(params: ReportParams) -> date:
    assert params.as_of is not None
    return params.as_of


@report(
    "trial_balance",
    "Trial balance",
    "Every account with a balance at the date (by value date), debit and credit columns.",
    {Param.AS_OF},
)
def trial_balance(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    accounts = account_sums(session, [(None, as_of)])
    rows = []
    debit = credit = 0
    for acc in accounts:
        (amount,) = acc.amounts
        if amount == 0:
            continue
        rows.append((acc.code, acc.name, acc.type, max(amount, 0), max(-amount, 0)))
        debit += max(amount, 0)
        credit += max(-amount, 0)
    rows.append(("", "Total", "", debit, credit))
    return Report(
        "trial_balance",
        f"Trial balance at {as_of}",
        (
            Section(
                "Accounts",
                (
                    Column("code"),
                    Column("name"),
                    Column("type"),
                    Column("debit", Kind.CENTS),
                    Column("credit", Kind.CENTS),
                ),
                tuple(rows),
            ),
        ),
        checks=(("debits = credits", debit == credit),),
    )


@report(
    "financial_position",
    "Statement of financial position",
    "Assets, liabilities and equity at the date, at the end of last month and of last year.",
    {Param.AS_OF},
)
def financial_position(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    dates = [as_of, previous_month_end(as_of), as_of.replace(month=1, day=1) - timedelta(days=1)]
    headings = [f"at {as_of}", f"at {dates[1]} (last month end)", f"at {dates[2]} (last year end)"]
    accounts = account_sums(session, [(None, d) for d in dates])
    st = position_from(load_mapping(), accounts, headings)
    return Report(
        "financial_position",
        f"Statement of financial position at {as_of}",
        (st.section,),
        checks=st.checks,
        meta={"unmapped_accounts": len(st.unmapped)},
    )


@report(
    "comprehensive_income",
    "Statement of comprehensive income",
    "Income and expenses: this month, last month, year to date and last year to date.",
    {Param.AS_OF},
)
def comprehensive_income(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    columns = income_columns(as_of)
    accounts = account_sums(session, [(s, e) for _, s, e in columns])
    st = income_from(load_mapping(), accounts, [h for h, _, _ in columns])
    return Report(
        "comprehensive_income",
        f"Statement of comprehensive income to {as_of}",
        (st.section,),
        checks=st.checks,
        meta={"unmapped_accounts": len(st.unmapped)},
    )


@report(
    "income_period",
    "Income and expenses for a period",
    "Income and expenses for the period and for the period of the same length before it.",
    {Param.PERIOD},
)
def income_period(session: Session, params: ReportParams) -> Report:
    assert params.date_from and params.date_to
    length = params.date_to - params.date_from
    prev_end = params.date_from - timedelta(days=1)
    prev_start = prev_end - length
    columns = [
        (f"{params.date_from} to {params.date_to}", params.date_from, params.date_to),
        (f"{prev_start} to {prev_end} (before)", prev_start, prev_end),
    ]
    accounts = account_sums(session, [(s, e) for _, s, e in columns])
    st = income_from(load_mapping(), accounts, [h for h, _, _ in columns])
    return Report(
        "income_period",
        f"Income and expenses {params.date_from} to {params.date_to}",
        (st.section,),
        checks=st.checks,
    )


@report(
    "account_movements",
    "Movements per account",
    "Per account: the balance before the period, its debits and credits, the closing balance.",
    {Param.PERIOD},
    large=True,
)
def account_movements(session: Session, params: ReportParams) -> Report:
    assert params.date_from and params.date_to
    start, end = params.date_from, params.date_to
    vd = JournalEntry.value_date
    in_period = and_(vd >= start, vd <= end)
    r = ledger_entries.shard_rollup()  # a sharded hot account's shards as one line
    query = (
        select(
            r.c.code,
            r.c.name,
            r.c.type,
            func.coalesce(func.sum(case((vd < start, Posting.amount_cents), else_=0)), 0),
            func.coalesce(
                func.sum(
                    case((and_(in_period, Posting.amount_cents > 0), Posting.amount_cents), else_=0)
                ),
                0,
            ),
            func.coalesce(
                func.sum(
                    case(
                        (and_(in_period, Posting.amount_cents < 0), -Posting.amount_cents), else_=0
                    )
                ),
                0,
            ),
        )
        .select_from(Posting)
        .join(r, r.c.account_id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(vd <= end)
        .group_by(r.c.id, r.c.code, r.c.name, r.c.type)
        .order_by(r.c.code)
    )
    rows: list[tuple[object, ...]] = []
    total_debits = total_credits = 0
    for code, name, type_, opening, debits, credits in session.execute(query).all():
        opening, debits, credits = int(opening), int(debits), int(credits)
        if opening == 0 and debits == 0 and credits == 0:
            continue
        closing = opening + debits - credits
        rows.append((code, name, type_, opening, debits, credits, closing))
        total_debits += debits
        total_credits += credits
    rows.append(("", "Total", "", None, total_debits, total_credits, None))
    return Report(
        "account_movements",
        f"Movements per account {start} to {end}",
        (
            Section(
                "Accounts (balances debit-positive)",
                (
                    Column("code"),
                    Column("name"),
                    Column("type"),
                    Column("opening", Kind.CENTS),
                    Column("debits", Kind.CENTS),
                    Column("credits", Kind.CENTS),
                    Column("closing", Kind.CENTS),
                ),
                tuple(rows),
            ),
        ),
        checks=(("period debits = period credits", total_debits == total_credits),),
    )
