"""The report registry: a report is a name, its parameters and a function returning rows.

A module in ``core/reports/`` declares a report with ``register(ReportSpec(...))`` (or the
``@report(...)`` decorator) at import time; ``load_all()`` imports every public module of the
package once, so a new report is one new file and no list to edit. Edges (the API, the
worker, ``manage.py report``) look a report up in ``REPORTS``, parse the caller's strings
with ``parse_params`` and call ``run``; renderers (``core.reports.render``) turn the
returned ``Report`` into CSV, JSON or XLSX. Guide: docs/reports/index.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput, NotFound


class Param(StrEnum):
    """What a report may take. ``AS_OF`` is a business date (Nairobi); ``PERIOD`` is
    ``date_from`` and ``date_to``, both inclusive; ``LIMIT`` a positive count (top N)."""

    AS_OF = "as_of"
    PERIOD = "period"
    LIMIT = "limit"


class Kind(StrEnum):
    """A column's type: renderers format by it (cents as KES with two decimals in CSV and
    XLSX, as integers in JSON)."""

    TEXT = "text"
    CENTS = "cents"
    INT = "int"
    PERCENT = "percent"  # a Decimal, 2 places, as a string in JSON
    DATE = "date"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = Kind.TEXT


@dataclass(frozen=True)
class Section:
    """One table of a report: typed columns and rows of plain values (``None`` = blank)."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportParams:
    as_of: date | None = None
    date_from: date | None = None
    date_to: date | None = None
    limit: int | None = None


@dataclass(frozen=True)
class Report:
    """What a report function returns. ``meta`` holds what every report shows on top
    (the parameters, the data source and the replica's lag), filled by ``run``."""

    name: str
    title: str
    sections: tuple[Section, ...]
    checks: tuple[tuple[str, bool], ...] = ()  # e.g. ("assets = liabilities + equity", True)
    meta: Mapping[str, Any] = field(default_factory=dict)


ReportFn = Callable[[Session, ReportParams], Report]


@dataclass(frozen=True)
class ReportSpec:
    """``large``: the API runs it as a background job and returns a download link."""

    name: str
    title: str
    description: str
    params: frozenset[Param]
    build: ReportFn
    large: bool = False
    default_limit: int = 20


REPORTS: dict[str, ReportSpec] = {}


def register(spec: ReportSpec) -> ReportSpec:
    """Add ``spec`` to ``REPORTS``; a second report of the same name is a bug."""
    existing = REPORTS.get(spec.name)
    if existing is not None and existing.build is not spec.build:
        raise ValueError(f"report {spec.name!r} registered twice")
    REPORTS[spec.name] = spec
    return spec


def report(
    name: str,
    title: str,
    description: str,
    params: set[Param] | frozenset[Param],
    *,
    large: bool = False,
    default_limit: int = 20,
) -> Callable[[ReportFn], ReportFn]:
    """Decorator form of ``register``."""

    def wrap(fn: ReportFn) -> ReportFn:
        register(ReportSpec(name, title, description, frozenset(params), fn, large, default_limit))
        return fn

    return wrap


_loaded = False


def load_all() -> dict[str, ReportSpec]:
    """Import every module of ``core.reports`` (each registers its reports) once."""
    global _loaded
    if not _loaded:
        import core.reports as package

        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"core.reports.{info.name}")
        _loaded = True
    return REPORTS


def get(name: str) -> ReportSpec:
    spec = load_all().get(name)
    if spec is None:
        raise NotFound(f"no report named {name!r}")
    return spec


def _date(raw: object, field_name: str) -> date:
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise InvalidInput(
            f"{field_name}: {raw!r} is not a date (YYYY-MM-DD)", field=field_name
        ) from None


def parse_params(spec: ReportSpec, raw: Mapping[str, object], *, today: date) -> ReportParams:
    """The report's parameters from strings (API JSON, command options). ``as_of``
    defaults to ``today``; a period needs both ends, ``from`` <= ``to``; an unknown
    parameter is refused, so a typo is not silently ignored."""
    known = {"as_of", "date", "from", "to", "date_from", "date_to", "limit"}
    unknown = sorted(k for k, v in raw.items() if v is not None and k not in known)
    if unknown:
        raise InvalidInput(f"unknown parameter {unknown[0]!r}", field=unknown[0])
    as_of = date_from = date_to = None
    limit = None
    if Param.AS_OF in spec.params:
        value = raw.get("as_of") or raw.get("date")
        as_of = _date(value, "as_of") if value else today
        if as_of > today:
            raise InvalidInput(f"as_of {as_of} is in the future", field="as_of")
    if Param.PERIOD in spec.params:
        start = raw.get("from") or raw.get("date_from")
        end = raw.get("to") or raw.get("date_to")
        if not start or not end:
            raise InvalidInput("a period needs 'from' and 'to'", field="from")
        date_from, date_to = _date(start, "from"), _date(end, "to")
        if date_from > date_to:
            raise InvalidInput("'from' is after 'to'", field="from")
    if Param.LIMIT in spec.params:
        value = raw.get("limit")
        try:
            limit = int(str(value)) if value not in (None, "") else spec.default_limit
        except ValueError:
            raise InvalidInput(f"limit: {value!r} is not a number", field="limit") from None
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000", field="limit")
    return ReportParams(as_of, date_from, date_to, limit)


def run(
    session: Session, spec: ReportSpec, params: ReportParams, *, source: Mapping[str, Any]
) -> Report:
    """Build the report and stamp its ``meta``: the parameters and where it was read from
    (``source``: ``{"database": "primary"|"replica", "lag_seconds": ...}``)."""
    built = spec.build(session, params)
    meta: dict[str, Any] = {
        "report": spec.name,
        "title": spec.title,
        "as_of": params.as_of.isoformat() if params.as_of else None,
        "from": params.date_from.isoformat() if params.date_from else None,
        "to": params.date_to.isoformat() if params.date_to else None,
        "limit": params.limit,
        **dict(source),
        **dict(built.meta),
    }
    return Report(built.name, built.title, built.sections, built.checks, meta)
