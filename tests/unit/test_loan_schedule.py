"""Loan schedules (core/loans/schedule.py): the issue's fixtures, the edge cases and the
rules of docs/loans/schedules.md, with numpy-financial as the independent oracle.
The properties over random terms are in test_loan_schedule_properties.py."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import numpy_financial as npf
import pytest

from core.kernel.errors import InvalidInput
from core.loans.due_dates import add_months
from core.loans.schedule import (
    Schedule,
    ScheduleTerms,
    build_schedule,
)
from core.loans.vocabulary import Frequency, RatePeriod, RepaymentMethod, Rounding

KES = 100  # cents
EI = RepaymentMethod.REDUCING_EQUAL_INSTALMENTS
EP = RepaymentMethod.REDUCING_EQUAL_PRINCIPAL
FLAT = RepaymentMethod.FLAT


def terms(**overrides: Any) -> ScheduleTerms:
    """KES 100,000 at 1 % a month, 12 monthly equal instalments, disbursed 15 Jan 2028."""
    values: dict[str, Any] = {
        "principal_cents": 100_000 * KES,
        "rate": Decimal("0.01"),
        "rate_period": RatePeriod.MONTHLY,
        "method": EI,
        "frequency": Frequency.MONTHLY,
        "instalments": 12,
        "disbursed_on": date(2028, 1, 15),
    }
    values.update(overrides)
    return ScheduleTerms(**values)


def totals(schedule: Schedule) -> list[int]:
    return [i.total_cents for i in schedule.instalments]


def check_balances(schedule: Schedule) -> None:
    balance = schedule.terms.principal_cents
    for row in schedule.instalments:
        balance -= row.principal_cents
        assert row.balance_after_cents == balance >= 0
        assert row.total_cents == row.principal_cents + row.interest_cents + row.fee_cents
    assert balance == 0
    assert schedule.principal_cents == schedule.terms.principal_cents


# --- the fixtures ---------------------------------------------------------------


def test_kes_100000_at_1_percent_a_month_reducing_is_8884_88_a_month() -> None:
    schedule = build_schedule(terms())
    assert totals(schedule) == [888_488] * 11 + [888_485]
    assert schedule.instalment_cents == 888_488
    assert npf.pmt(0.01, 12, -100_000) == pytest.approx(8_884.878867, abs=1e-6)
    first = schedule.instalments[0]
    assert (first.interest_cents, first.principal_cents) == (100_000, 788_488)
    assert schedule.interest_cents == 661_853
    assert schedule.total_repayable_cents == 10_661_853
    assert schedule.disbursed_cents == 10_000_000
    assert schedule.cost_of_credit_cents == 661_853
    assert (schedule.apr, schedule.effective_annual_rate) == (Decimal("0.12"), Decimal("0.1268"))
    check_balances(schedule)


def test_kes_100000_flat_is_9333_33_a_month_and_kes_12000_interest() -> None:
    schedule = build_schedule(terms(method=FLAT))
    assert totals(schedule) == [933_333] * 11 + [933_337]
    assert [i.interest_cents for i in schedule.instalments] == [100_000] * 12
    assert [i.principal_cents for i in schedule.instalments] == [833_333] * 11 + [833_337]
    assert schedule.interest_cents == 12_000 * KES
    assert schedule.total_repayable_cents == 112_000 * KES
    # The same repayments cost 21.46 % a year on the reducing balance.
    irr = float(npf.irr([100_000] + [-9_333.33] * 11 + [-9_333.37]))
    assert (
        schedule.apr == Decimal("0.2146") == Decimal(round(irr * 12, 4)).quantize(Decimal("0.0001"))
    )
    check_balances(schedule)


def test_equal_principal_repays_the_same_principal_each_month_with_falling_interest() -> None:
    schedule = build_schedule(terms(method=EP))
    # 100,000 / 12 = 8,333.333… rounded up to the cent; the last is 8,333.26.
    assert [i.principal_cents for i in schedule.instalments] == [833_334] * 11 + [833_326]
    interests = [i.interest_cents for i in schedule.instalments]
    assert interests[:3] == [100_000, 91_667, 83_333] and interests == sorted(interests)[::-1]
    assert schedule.interest_cents == 650_000
    check_balances(schedule)


# --- edge cases -------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(RepaymentMethod))
def test_one_instalment_repays_principal_and_one_period_of_interest(
    method: RepaymentMethod,
) -> None:
    schedule = build_schedule(terms(method=method, instalments=1))
    (only,) = schedule.instalments
    assert (only.principal_cents, only.interest_cents) == (10_000_000, 100_000)
    assert only.due_on == date(2028, 2, 15) and only.balance_after_cents == 0
    assert schedule.apr == Decimal("0.12")


def test_120_monthly_instalments_follow_the_annuity() -> None:
    schedule = build_schedule(terms(instalments=120, rounding=Rounding.SHILLING))
    payment = float(npf.pmt(0.01, 120, -100_000))  # 1,434.709…
    assert schedule.instalment_cents == 1_435 * KES
    assert totals(schedule)[:-1] == [1_435 * KES] * 119
    assert 0 < schedule.instalments[-1].total_cents <= 1_435 * KES
    assert schedule.instalments[-1].due_on == date(2038, 1, 15)
    assert schedule.total_repayable_cents == pytest.approx(payment * 120 * KES, abs=120 * KES)
    check_balances(schedule)


@pytest.mark.parametrize("method", list(RepaymentMethod))
def test_rate_zero_charges_nothing_and_the_apr_is_zero(method: RepaymentMethod) -> None:
    schedule = build_schedule(terms(method=method, rate=Decimal(0), instalments=3))
    assert schedule.interest_cents == 0
    assert schedule.total_repayable_cents == 10_000_000
    assert (schedule.apr, schedule.effective_annual_rate) == (Decimal(0), Decimal(0))
    # 10,000,000 / 3: reducing methods round up (last smaller), flat rounds down.
    expected = (
        [3_333_334, 3_333_334, 3_333_332] if method is not FLAT else [3_333_333] * 2 + [3_333_334]
    )
    assert totals(schedule) == expected
    check_balances(schedule)


def test_shilling_rounding_makes_every_instalment_but_the_last_whole_shillings() -> None:
    schedule = build_schedule(terms(rounding=Rounding.SHILLING))
    assert totals(schedule) == [888_500] * 11 + [888_346]
    # Interest stays to the cent; the principal is the whole-shilling instalment less it.
    first = schedule.instalments[0]
    assert (first.interest_cents, first.principal_cents) == (100_000, 788_500)
    assert schedule.instalments[1].interest_cents == 92_115
    check_balances(schedule)

    flat = build_schedule(terms(method=FLAT, rounding="shilling"))
    assert totals(flat) == [933_300] * 11 + [933_700]
    assert flat.interest_cents == 1_200_000
    check_balances(flat)


def test_rounding_up_that_would_repay_early_rounds_down_and_the_last_is_larger() -> None:
    # KES 100,000 at 12 % a year over 600 weeks: 308.03 a week. KES 309 a week would repay
    # it early, so KES 308 a week and the remainder, KES 345.49, in the last.
    schedule = build_schedule(
        terms(
            rate=Decimal("0.12"),
            rate_period="annual",
            frequency=Frequency.WEEKLY,
            instalments=600,
            rounding=Rounding.SHILLING,
        )
    )
    assert 308 * KES < float(npf.pmt(0.12 / 52, 600, -100_000)) * KES < 309 * KES
    assert totals(schedule) == [308 * KES] * 599 + [34_549]
    check_balances(schedule)


@pytest.mark.parametrize(
    ("principal_cents", "instalments", "method"),
    [
        # KES 100.50 over 600 months: the annuity (1.0076) rounds up to KES 2 (repaid
        # within 100 months) or down to KES 1, less than the first month's interest
        # (KES 1.01): the balance would grow.
        (10_050, 600, EI),
        # KES 100,000 over 600 months: KES 1,003 a month repays it early; KES 1,002 leaves
        # KES 22,875.73 for the last month, a balloon.
        (100_000 * KES, 600, EI),
        # KES 1,000 over 300 months at equal principal (3.33 a month): KES 4 a month repays
        # it early; KES 3 leaves KES 103 + interest for the last month.
        (1_000 * KES, 300, EP),
    ],
)
def test_terms_no_whole_unit_instalment_can_repay_are_refused(
    principal_cents: int, instalments: int, method: RepaymentMethod
) -> None:
    with pytest.raises(InvalidInput) as refused:
        build_schedule(
            terms(
                principal_cents=principal_cents,
                instalments=instalments,
                method=method,
                rounding="shilling",
            )
        )
    assert (refused.value.field, refused.value.reason) == ("instalments", "instalment_rounding")


def test_in_cents_a_long_loan_has_a_schedule_whole_shillings_cannot_give() -> None:
    schedule = build_schedule(terms(instalments=600))
    assert totals(schedule) == [100_257] * 599 + [62_574]
    check_balances(schedule)


# --- due dates --------------------------------------------------------------------------


def test_a_31st_disbursement_falls_due_on_each_month_end_without_drifting() -> None:
    schedule = build_schedule(terms(disbursed_on=date(2028, 1, 31), instalments=5))
    assert [i.due_on for i in schedule.instalments] == [
        date(2028, 2, 29),
        date(2028, 3, 31),
        date(2028, 4, 30),
        date(2028, 5, 31),
        date(2028, 6, 30),
    ]
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)


def test_a_29_february_disbursement_falls_due_on_the_29th_and_28_feb_next_year() -> None:
    schedule = build_schedule(terms(disbursed_on=date(2028, 2, 29), instalments=13))
    dues = [i.due_on for i in schedule.instalments]
    assert dues[0] == date(2028, 3, 29)
    assert dues[10] == date(2029, 1, 29)
    assert dues[11] == date(2029, 2, 28)
    assert dues[12] == date(2029, 3, 29)
    weekly = build_schedule(terms(disbursed_on=date(2028, 2, 22), frequency="weekly"))
    assert weekly.instalments[0].due_on == date(2028, 2, 29)
    assert weekly.instalments[1].due_on == date(2028, 3, 7)


def test_a_given_first_due_date_sets_the_day_of_every_instalment() -> None:
    schedule = build_schedule(
        terms(disbursed_on=date(2028, 1, 10), first_due_on=date(2028, 1, 31), instalments=3)
    )
    assert [i.due_on for i in schedule.instalments] == [
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
    ]


@pytest.mark.parametrize(
    ("disbursed", "first_due"),
    [
        (date(2028, 1, 10), date(2028, 1, 10)),  # not after disbursement
        (date(2028, 1, 10), date(2028, 3, 11)),  # more than two periods after it
    ],
)
def test_a_first_due_date_outside_two_periods_is_refused(disbursed: date, first_due: date) -> None:
    with pytest.raises(InvalidInput) as refused:
        terms(disbursed_on=disbursed, first_due_on=first_due)
    assert (refused.value.field, refused.value.reason) == ("first_due_on", "range")
    assert terms(disbursed_on=disbursed, first_due_on=date(2028, 3, 10)).first_due_on


# --- fees and the APR -------------------------------------------------------------------


def test_fees_deducted_reduce_the_cash_received_and_raise_the_apr() -> None:
    schedule = build_schedule(terms(deducted_fee_cents=1_000 * KES))
    assert totals(schedule) == totals(build_schedule(terms()))
    assert schedule.disbursed_cents == 99_000 * KES
    assert schedule.fee_cents == 1_000 * KES and schedule.scheduled_fee_cents == 0
    assert schedule.cost_of_credit_cents == 661_853 + 100_000
    irr = float(npf.irr([99_000] + [-8_884.88] * 11 + [-8_884.85]))
    assert abs(float(schedule.apr) - irr * 12) <= 0.00005
    assert schedule.apr == Decimal("0.1391")


def test_fees_in_the_schedule_are_spread_evenly_with_the_remainder_last() -> None:
    schedule = build_schedule(terms(scheduled_fee_cents=1_000 * KES, rounding="shilling"))
    fees = [i.fee_cents for i in schedule.instalments]
    assert fees == [8_300] * 11 + [8_700]  # 1,000 / 12 = 83.33 → KES 83, KES 87 last
    assert totals(schedule)[:11] == [888_500 + 8_300] * 11
    assert schedule.disbursed_cents == 100_000 * KES
    assert schedule.total_repayable_cents == 100_000 * KES + schedule.interest_cents + 100_000
    irr = float(npf.irr([100_000] + [-t / KES for t in totals(schedule)]))
    assert abs(float(schedule.apr) - irr * 12) <= 0.00005
    check_balances(schedule)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field", "reason"),
    [
        ({"principal_cents": 0}, "principal_cents", "range"),
        ({"principal_cents": 1000.0}, "principal_cents", "format"),
        ({"principal_cents": True}, "principal_cents", "format"),
        ({"instalments": 0}, "instalments", "range"),
        ({"instalments": 601}, "instalments", "range"),
        ({"grace_periods": 12}, "grace_periods", "range"),
        ({"grace_periods": -1}, "grace_periods", "range"),
        ({"rate": Decimal("-0.01")}, "rate", "range"),
        ({"rate": Decimal("1.5")}, "rate", "range"),
        ({"rate": Decimal("NaN")}, "rate", "format"),
        ({"rate": 0.01}, "rate", "format"),
        ({"method": "balloon"}, "method", "unknown"),
        ({"frequency": "daily"}, "frequency", "unknown"),
        ({"rate_period": "weekly"}, "rate_period", "unknown"),
        ({"rounding": "ten_shillings"}, "rounding", "unknown"),
        ({"deducted_fee_cents": 100_000 * KES}, "deducted_fee_cents", "fees_exceed_principal"),
        ({"deducted_fee_cents": -1}, "deducted_fee_cents", "range"),
        ({"scheduled_fee_cents": -1}, "scheduled_fee_cents", "range"),
        ({"disbursed_on": "2028-01-15"}, "disbursed_on", "format"),
        ({"disbursed_on": date(9999, 1, 15)}, "disbursed_on", "range"),
        ({"first_due_on": "2028-02-15"}, "first_due_on", "format"),
    ],
)
def test_bad_terms_are_refused_naming_the_field(
    override: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        terms(**override)
    assert (refused.value.field, refused.value.reason) == (field, reason)


def test_choices_given_as_strings_become_the_enums() -> None:
    given = terms(method="flat", frequency="weekly", rate_period="annual", rounding="shilling")
    assert given.method is FLAT and given.frequency is Frequency.WEEKLY
    assert given.rate_period is RatePeriod.ANNUAL and given.rounding is Rounding.SHILLING
    assert given.unit_cents == 100 and given.periods_per_year == 52
