"""The report registry and renderers, pure: parameters refused with the field named, the
mapping's own rules, cents printed exactly."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import reports
from core.kernel.errors import InvalidInput, NotFound
from core.reports import financial, render
from core.reports.registry import Param, ReportSpec, register

TODAY = date(2026, 3, 10)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_cents_print_exactly(cents: int) -> None:
    text = render.kes(cents)
    assert Decimal(text) * 100 == cents and text.count(".") == 1 and len(text.split(".")[1]) == 2


def test_parameters() -> None:
    spec = reports.get("top_exposures")
    assert reports.parse_params(spec, {}, today=TODAY) == reports.ReportParams(
        as_of=TODAY, limit=20
    )
    got = reports.parse_params(spec, {"date": "2026-01-31", "limit": "5"}, today=TODAY)
    assert (got.as_of, got.limit) == (date(2026, 1, 31), 5)
    for raw, field in (
        ({"as_of": "2026-03-11"}, "as_of"),
        ({"as_of": "31/01/2026"}, "as_of"),
        ({"limit": "1001"}, "limit"),
        ({"colour": "red"}, "colour"),
    ):
        with pytest.raises(InvalidInput) as caught:
            reports.parse_params(spec, raw, today=TODAY)
        assert caught.value.field == field
    period = reports.get("loan_flows")
    with pytest.raises(InvalidInput):
        reports.parse_params(period, {"from": "2026-02-01", "to": "2026-01-01"}, today=TODAY)
    with pytest.raises(NotFound):
        reports.get("nope")


def test_a_name_is_registered_once() -> None:
    spec = reports.get("trial_balance")
    assert register(spec) is spec  # the same function again: harmless (a re-import)
    with pytest.raises(ValueError, match="twice"):
        register(ReportSpec("trial_balance", "x", "x", frozenset({Param.AS_OF}), lambda s, p: None))  # type: ignore[arg-type,return-value]


def test_the_mapping_file_is_valid_and_its_rules_hold() -> None:
    mapping = financial.load_mapping()
    assert mapping.version == 1
    assert financial.line_for(mapping, "2000-10019").key == "savings"  # type: ignore[union-attr]
    assert financial.line_for(mapping, "1100-10019-L7K2M9QX").key == "loans"  # type: ignore[union-attr]
    assert financial.line_for(mapping, "20001") is None  # a prefix ends at a dash
    line = {
        "statement": "position",
        "section": "assets",
        "key": "a",
        "label": "A",
        "accounts": ["1000"],
    }
    with pytest.raises(ValueError, match="on lines a and b"):
        financial.parse_mapping({"version": 1, "effective_from": "2020-01-01",
                                 "line": [line, {**line, "key": "b"}]})  # fmt: skip
    with pytest.raises(ValueError, match="section"):
        financial.parse_mapping({"version": 1, "effective_from": "2020-01-01",
                                 "line": [{**line, "section": "income"}]})  # fmt: skip


def test_comparative_columns() -> None:
    cols = financial.income_columns(date(2024, 2, 29))
    assert [(s, e) for _, s, e in cols] == [
        (date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 1, 1), date(2024, 1, 31)),
        (date(2024, 1, 1), date(2024, 2, 29)),
        (date(2023, 1, 1), date(2023, 2, 28)),
    ]
