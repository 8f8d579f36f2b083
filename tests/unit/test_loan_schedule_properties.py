"""Loan schedules over random terms (hypothesis), with numpy-financial as the independent
oracle (docs/loans/schedules.md, "Tests").

numpy-financial computes in binary floating point, so every comparison allows ``SLACK``
for the float's own error on top of the tolerance the rules give:

* **To the cent, period by period.** Each instalment of an equal-instalment schedule is
  ``npf.pmt`` on the balance left after the grace periods, rounded to the rounding unit:
  up (``0 ≤ ours − pmt < unit``), or down when up would repay the loan early; each
  period's interest is ``npf.ipmt`` on the balance actually outstanding, rounded half up
  to the cent (``|ours − ipmt| ≤ ½ cent``).
* **Whole schedule.** Against ``npf.ipmt``/``npf.ppmt`` of the exact annuity from the
  first amortising period, our balance drifts by the accumulated rounding: after ``j``
  periods by at most ``T(j) = (unit + ½)·s_j`` cents, ``s_j = ((1 + r)^j − 1) / r`` (``j``
  at rate 0), because each period adds less than one unit of instalment rounding and half a cent
  of interest rounding to a difference that grows by ``(1 + r)``. So period ``j``'s
  interest is within ``r·T(j−1) + ½`` of ``ipmt`` and its principal within
  ``T(j−1) + T(j)`` of ``ppmt``.
* **APR** matches ``npf.irr`` of the same cash flows × periods a year, to the quoted
  0.01 % (half of 0.0001 for the rounding, plus slack).
"""

from __future__ import annotations

import calendar
import math
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import numpy as np
import numpy_financial as npf
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.kernel.errors import InvalidInput
from core.loans.due_dates import add_months
from core.loans.schedule import (
    Schedule,
    ScheduleTerms,
    build_schedule,
)
from core.loans.vocabulary import Frequency, RatePeriod, RepaymentMethod, Rounding

# numpy-financial evaluates both branches of its rate-0 formulas: the division warnings it
# raises there are silenced around the tests that call it (pytest makes warnings errors).
QUIET_NUMPY = np.errstate(divide="ignore", invalid="ignore")
SLACK = 1e-6  # relative error allowed to numpy-financial's floats (times the amounts)
EI = RepaymentMethod.REDUCING_EQUAL_INSTALMENTS
EXAMPLES = settings(max_examples=200, deadline=None)


@st.composite
def schedule_terms(
    draw: st.DrawFn,
    methods: tuple[RepaymentMethod, ...] = tuple(RepaymentMethod),
    most_instalments: int = 600,
) -> ScheduleTerms:
    rate_period = draw(st.sampled_from(RatePeriod))
    top = Decimal("0.6") if rate_period is RatePeriod.ANNUAL else Decimal("0.05")
    rate = draw(st.decimals(min_value=0, max_value=top, places=5))
    instalments = draw(st.one_of(st.integers(1, 36), st.integers(1, most_instalments)))
    principal = draw(st.one_of(st.integers(1_000_00, 10_000_000_00), st.integers(1, 10_000_000_00)))
    disbursed = draw(st.dates(date(2000, 1, 1), date(2099, 12, 31)))
    frequency = draw(st.sampled_from(Frequency))
    first_due = draw(
        st.one_of(
            st.none(),
            st.integers(1, 56 if frequency is Frequency.MONTHLY else 14).map(
                lambda days: disbursed + timedelta(days=days)
            ),
        )
    )
    return ScheduleTerms(
        principal_cents=principal,
        rate=rate,
        rate_period=rate_period,
        method=draw(st.sampled_from(methods)),
        frequency=frequency,
        instalments=instalments,
        disbursed_on=disbursed,
        first_due_on=first_due,
        grace_periods=draw(st.integers(0, min(instalments - 1, 6))),
        rounding=draw(st.sampled_from(Rounding)),
        deducted_fee_cents=draw(st.integers(0, (principal - 1) // 10)),
        scheduled_fee_cents=draw(st.integers(0, principal // 10)),
    )


def growth(rate: float, periods: int) -> float:
    """s_j = ((1 + r)^j − 1) / r, or j at rate 0: what one cent a period adds up to."""
    return periods if rate == 0 else ((1 + rate) ** periods - 1) / rate


@QUIET_NUMPY
def build(terms: ScheduleTerms) -> Schedule:
    """The schedule. Terms that no level instalment in whole units repays are refused and
    left out here; only a reducing-balance loan may be refused, and only when rounding by
    a unit moves the end of the loan by about as much as an instalment (a tiny principal,
    or a long term: one unit more or less each period adds up to ``unit·s_m`` by the end)."""
    try:
        return build_schedule(terms)
    except InvalidInput as refused:
        assert refused.reason == "instalment_rounding"
        assert terms.method is not RepaymentMethod.FLAT
        periods = terms.instalments - terms.grace_periods
        rate = float(terms.periodic_rate)
        if terms.method is EI:
            instalment = float(npf.pmt(rate, periods, -terms.principal_cents))
        else:
            instalment = terms.principal_cents * (1 / periods + rate)
        assert (terms.unit_cents + 1) * (1 + rate) * growth(rate, periods) >= instalment / 2
        assume(False)
        raise  # pragma: no cover - assume(False) never returns


@EXAMPLES
@given(schedule_terms())
def test_the_principal_column_sums_to_the_principal_and_the_balance_ends_at_zero(
    terms: ScheduleTerms,
) -> None:
    schedule = build(terms)
    rows = schedule.instalments
    assert [r.number for r in rows] == list(range(1, terms.instalments + 1))
    assert sum(r.principal_cents for r in rows) == terms.principal_cents
    balance = terms.principal_cents
    for row in rows:
        assert row.principal_cents >= 0 and row.interest_cents >= 0 and row.fee_cents >= 0
        assert row.total_cents == row.principal_cents + row.interest_cents + row.fee_cents
        balance -= row.principal_cents
        assert row.balance_after_cents == balance >= 0
    assert rows[-1].balance_after_cents == 0
    assert all(r.balance_after_cents > 0 for r in rows[:-1])
    assert schedule.scheduled_fee_cents == terms.scheduled_fee_cents
    assert schedule.total_repayable_cents == (
        terms.principal_cents + schedule.interest_cents + terms.scheduled_fee_cents
    )
    assert schedule.disbursed_cents == terms.principal_cents - terms.deducted_fee_cents > 0


@EXAMPLES
@given(schedule_terms())
def test_every_instalment_but_the_last_is_whole_rounding_units(terms: ScheduleTerms) -> None:
    schedule = build(terms)
    unit = terms.unit_cents
    for row in schedule.instalments[:-1]:
        assert row.total_cents % unit == 0
        assert row.fee_cents % unit == 0
        if terms.method is RepaymentMethod.FLAT:
            assert row.principal_cents % unit == 0 and row.interest_cents % unit == 0
    grace = schedule.instalments[: terms.grace_periods]
    assert all(r.total_cents - r.fee_cents - r.interest_cents < unit for r in grace)


@EXAMPLES
@given(schedule_terms())
def test_due_dates_keep_the_anchor_day_clamped_to_month_ends_or_every_7_days(
    terms: ScheduleTerms,
) -> None:
    dues = [r.due_on for r in build(terms).instalments]
    assert dues[0] > terms.disbursed_on
    assert all(a < b for a, b in zip(dues, dues[1:], strict=False))
    if terms.frequency is Frequency.WEEKLY:
        first = terms.first_due_on or terms.disbursed_on + timedelta(days=7)
        assert dues == [first + timedelta(days=7 * k) for k in range(len(dues))]
        return
    anchor = terms.first_due_on or terms.disbursed_on
    start = anchor.year * 12 + anchor.month - 1 + (terms.first_due_on is None)
    for k, due in enumerate(dues):
        assert due.year * 12 + due.month - 1 == start + k
        assert due.day == min(anchor.day, calendar.monthrange(due.year, due.month)[1])


@settings(max_examples=500, deadline=None)
@given(st.dates(date(1900, 1, 1), date(2200, 12, 31)), st.integers(0, 1200))
def test_adding_months_never_drifts(anchor: date, months: int) -> None:
    moved = add_months(anchor, months)
    assert (moved.year - anchor.year) * 12 + moved.month - anchor.month == months
    assert moved.day == min(anchor.day, calendar.monthrange(moved.year, moved.month)[1])


def drift_bound(rate: float, periods: int, unit: int) -> float:
    """T(j): how far, in cents, the rounded balance may be from the exact one after j
    periods (see the module docstring)."""
    return (unit + 0.5) * growth(rate, periods)


@EXAMPLES
@given(schedule_terms(methods=(EI,)))
@QUIET_NUMPY
def test_equal_instalments_match_numpy_financial(terms: ScheduleTerms) -> None:
    schedule = build(terms)
    rows = schedule.instalments
    rate = float(terms.periodic_rate)
    unit, grace = terms.unit_cents, terms.grace_periods
    start = rows[grace - 1].balance_after_cents if grace else terms.principal_cents
    periods = terms.instalments - grace
    slack = SLACK * terms.principal_cents + SLACK
    # To the cent, period by period.
    payment = float(npf.pmt(rate, periods, -start))
    balance = terms.principal_cents
    for row in rows:
        interest = float(npf.ipmt(rate, 1, 1, -balance))
        assert abs(row.interest_cents - interest) <= 0.5 + slack
        if abs(interest - math.floor(interest) - 0.5) > slack:  # not a tie in floats
            assert row.interest_cents == math.floor(interest + 0.5)
        balance = row.balance_after_cents
    due = [r.principal_cents + r.interest_cents for r in rows[grace:]]
    rounded_up = due[0] >= payment - slack
    for instalment in due[:-1]:
        assert instalment == due[0]
        if rounded_up:
            assert -slack <= instalment - payment < unit + slack
        else:
            assert -unit - slack < instalment - payment <= slack
    # The last instalment differs from the annuity by the drift of the balance before it.
    last_bound = (1 + rate) * drift_bound(rate, periods - 1, unit) + 0.5
    assert abs(due[-1] - payment) <= last_bound + slack * (1 + last_bound)
    # The whole schedule against the exact annuity, within the accumulated rounding.
    numbers = np.arange(1, periods + 1)
    exact_interest = npf.ipmt(rate, numbers, periods, -start)
    exact_principal = npf.ppmt(rate, numbers, periods, -start)
    for j, row in enumerate(rows[grace:], start=1):
        before, after = drift_bound(rate, j - 1, unit), drift_bound(rate, j, unit)
        slack_j = slack * (1 + after)
        assert abs(row.interest_cents - exact_interest[j - 1]) <= rate * before + 0.5 + slack_j
        assert abs(row.principal_cents - exact_principal[j - 1]) <= before + after + slack_j


@EXAMPLES
@given(schedule_terms(methods=(RepaymentMethod.REDUCING_EQUAL_PRINCIPAL, RepaymentMethod.FLAT)))
@QUIET_NUMPY
def test_equal_principal_and_flat_follow_their_formulas(terms: ScheduleTerms) -> None:
    schedule = build(terms)
    rows = schedule.instalments
    rate, n, unit, grace = (
        terms.periodic_rate,
        terms.instalments,
        terms.unit_cents,
        terms.grace_periods,
    )
    slack = SLACK * terms.principal_cents + SLACK
    if terms.method is RepaymentMethod.FLAT:
        total_interest = float(npf.ipmt(float(rate), 1, 1, -terms.principal_cents)) * n
        assert abs(schedule.interest_cents - total_interest) <= 0.5 + slack * n
        share = Fraction(schedule.interest_cents, n)
        assert all(share - unit < r.interest_cents <= share for r in rows[:-1])
        level = Fraction(terms.principal_cents, n - grace)
        assert all(level - unit < r.principal_cents <= level for r in rows[grace:-1])
        return
    start = rows[grace - 1].balance_after_cents if grace else terms.principal_cents
    level = Fraction(start, n - grace)
    balance = terms.principal_cents
    for row in rows:
        assert row.interest_cents == math.floor(balance * rate + Fraction(1, 2))
        balance = row.balance_after_cents
    for row in rows[grace:-1]:
        assert abs(row.principal_cents + row.interest_cents - (level + row.interest_cents)) < unit


@EXAMPLES
@given(schedule_terms(most_instalments=120))
@QUIET_NUMPY
def test_the_apr_is_the_annualised_irr_of_numpy_financial(terms: ScheduleTerms) -> None:
    schedule = build(terms)
    flows = [schedule.disbursed_cents] + [-r.total_cents for r in schedule.instalments]
    periodic = float(npf.irr(flows))
    assume(not math.isnan(periodic))
    per_year = terms.periods_per_year
    assert abs(float(schedule.apr) - periodic * per_year) <= 0.00005 + 1e-7
    effective = (1 + periodic) ** per_year - 1
    assert abs(float(schedule.effective_annual_rate) - effective) <= 0.00005 + 1e-7 * per_year
    assert schedule.apr >= 0 and schedule.effective_annual_rate >= schedule.apr
