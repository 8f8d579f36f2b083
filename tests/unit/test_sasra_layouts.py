"""The SASRA return layouts as data (core.reports.sasra, pure): every shipped layout and
the dashboard's thresholds load and agree; a faulty layout is refused naming the fault; a
percent is rounded down and "met" is decided exactly; the colours at their edges."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.kernel.errors import NotFound
from core.reports import sasra

DAY = date(2026, 6, 30)


def layout(rows: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    return {"form": "t", "version": 1, "title": "T", "source": "s", "scope": ["asset"],
            "materiality_cents": 100, "rows": rows, **over}  # fmt: skip


@pytest.mark.parametrize("form", sasra.FORMS)
def test_every_shipped_layout_loads(form: str) -> None:
    loaded = sasra.load_layout(form)
    assert loaded.form == form and loaded.version == 1 and loaded.rows


def test_the_thresholds_name_ratios_the_returns_have_with_amber_above_the_minimum() -> None:
    for t in sasra.load_thresholds():
        assert sasra.load_layout(t.form).row(t.id)
        assert t.amber_below > t.minimum


@pytest.mark.parametrize(
    ("rows", "fault"),
    [
        ([{"id": "a", "label": "A", "formula": "b + 1"}], "only names"),
        ([{"id": "a", "label": "A", "formula": "b"}], "before they exist"),
        ([{"id": "a", "label": "A", "accounts": ["1000"], "formula": "a"}], "exactly one"),
        ([{"id": "a", "label": "A", "accounts": ["1000"], "measure": "max"}], "measure"),
        (
            [
                {"id": "a", "label": "A", "accounts": ["1"]},
                {"id": "a", "label": "B", "accounts": ["2"]},
            ],
            "twice",
        ),  # fmt: skip
        (
            [
                {"id": "a", "label": "A", "accounts": ["1"]},
                {"id": "b", "label": "B", "formula": "a / a / a"},
            ],
            "only names",
        ),  # fmt: skip
    ],
)
def test_a_faulty_layout_is_refused_naming_the_fault(
    rows: list[dict[str, Any]], fault: str
) -> None:
    with pytest.raises(ValueError, match=fault):
        sasra.parse_layout(layout(rows))


def test_an_unknown_account_type_in_the_scope_is_refused() -> None:
    with pytest.raises(ValueError):
        sasra.parse_layout(layout([{"id": "a", "label": "A", "accounts": ["1"]}], scope=["cash"]))


def test_an_unknown_form_is_not_found() -> None:
    with pytest.raises(NotFound):
        sasra.load_layout("balance_sheet")


@given(num=st.integers(0, 10**15), den=st.integers(1, 10**15), minimum=st.integers(0, 100))
def test_a_percent_is_rounded_down_and_met_is_decided_exactly(
    num: int, den: int, minimum: int
) -> None:
    raw = layout([
        {"id": "n", "label": "N", "accounts": ["1"]},
        {"id": "d", "label": "D", "accounts": ["2"]},
        {"id": "r", "label": "R", "formula": "n / d", "minimum_percent": str(minimum)},
    ], scope=["asset"])  # fmt: skip
    balances = [sasra.GlBalance("1", "n", "asset", num), sasra.GlBalance("2", "d", "asset", den)]
    line = sasra.evaluate(sasra.parse_layout(raw), DAY, balances).line("r")
    exact = Fraction(num * 100, den)
    assert isinstance(line.value, Decimal)
    assert Fraction(line.value) <= exact < Fraction(line.value) + Fraction(1, 100)
    assert line.value.as_tuple().exponent == -2
    assert line.met is (exact >= minimum)


def test_nothing_to_divide_by_is_no_ratio_and_not_met() -> None:
    raw = layout([
        {"id": "n", "label": "N", "accounts": ["1"]},
        {"id": "r", "label": "R", "formula": "n / n", "minimum_percent": "8"},
    ])  # fmt: skip
    line = sasra.evaluate(sasra.parse_layout(raw), DAY, []).line("r")
    assert line.value is None and line.met is False


def test_the_colours_at_their_edges() -> None:
    t = sasra.Threshold("x", "capital_adequacy", Decimal(10), Decimal(12))
    assert sasra.rag(Decimal("9.99"), t) == "red"
    assert sasra.rag(Decimal("10.00"), t) == "amber"
    assert sasra.rag(Decimal("11.99"), t) == "amber"
    assert sasra.rag(Decimal("12.00"), t) == "green"
    assert sasra.rag(None, t) == "red"
