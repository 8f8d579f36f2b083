"""Repayment schedules: pure, exact, in integer cents (docs/loans/schedules.md).

``build_schedule(ScheduleTerms(...))`` turns a loan's terms into its instalments (due date,
principal, interest, fees, total, balance after), its totals, the cash the member receives
and the annual percentage rate. No database, no clock: the disbursement date is an input.

Arithmetic is exact: the rate is a ``Decimal`` and every intermediate value is a
``fractions.Fraction``; money is rounded to integer cents only where the rules below say so.

* **Periodic rate.** Monthly instalments: an annual rate / 12, a monthly rate as given.
  Weekly instalments: an annual rate / 52, a monthly rate × 12 / 52. Interest is charged
  per period, whatever the number of days in it.
* **Interest** on a reducing balance is ``balance × periodic rate`` rounded to the cent,
  half up, each period. A flat loan's interest is ``principal × periodic rate ×
  instalments`` rounded to the cent, half up, once.
* **Rounding unit** (``Rounding``): a cent, or a shilling for instalments paid by M-Pesa.
  Every instalment's total except the last is a whole number of units; the last takes
  every remainder, so the principal column sums exactly to the principal and the balance
  ends at 0.
* **Reducing balance, equal instalments**: the instalment (principal + interest) is the
  annuity ``B·r / (1 − (1 + r)^−m)`` (``B / m`` at rate 0) on the balance ``B`` left after
  the grace periods, over the ``m`` remaining instalments, rounded *up* to the unit so the
  loan never runs long; the principal is the instalment less that period's interest.
* **Reducing balance, equal principal**: each instalment (principal + interest) is
  ``B / m`` plus the period's interest, rounded up to the unit.
* When rounding up would repay the loan before its last instalment (a small principal over
  many instalments), the instalment is rounded *down* instead and the last instalment is
  the larger one; terms that neither way gives a schedule (a balance that would grow) are
  refused (``InvalidInput``, reason ``instalment_rounding``).
* **Flat**: principal / (instalments − grace) and interest / instalments per instalment,
  each rounded *down* to the unit (KES 100,000 at 1 % a month over 12 months:
  8,333.33 + 1,000.00 = 9,333.33), the remainders in the last instalment.
* **Grace periods** (the first ``grace_periods`` instalments) pay interest only: the
  period's interest rounded up to the unit, the few cents above it reducing the principal.
* **Fees.** ``deducted_fee_cents`` (appraisal, processing, insurance taken at disbursement)
  reduce the cash the member receives, not the schedule. ``scheduled_fee_cents`` are added
  to the schedule, spread evenly over all instalments (each share rounded down to the
  unit, the remainder in the last): spreading keeps the instalment a member pays by M-Pesa
  level; a product that wants a fee at once deducts it at disbursement instead.
* **APR**: the periodic internal rate of return ``i`` of the member's cash flows (the cash
  received at disbursement, each instalment's total paid at the end of its period),
  quoted as a nominal annual rate ``i × periods a year`` (12 or 52) and as an effective
  annual rate ``(1 + i)^periods − 1``, both fractions (``0.1268`` is 12.68 %) to 0.01 %,
  half up. Periods are counted, not days.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction

from core.kernel.errors import InvalidInput
from core.loans.due_dates import add_months, monthly_due_dates, weekly_due_dates


class RepaymentMethod(StrEnum):
    REDUCING_EQUAL_INSTALMENTS = "reducing_equal_instalments"
    REDUCING_EQUAL_PRINCIPAL = "reducing_equal_principal"
    FLAT = "flat"


class Frequency(StrEnum):
    MONTHLY = "monthly"
    WEEKLY = "weekly"


class RatePeriod(StrEnum):
    ANNUAL = "annual"
    MONTHLY = "monthly"


class Rounding(StrEnum):
    CENT = "cent"
    SHILLING = "shilling"


MAX_INSTALMENTS = 600
# A rate above 100 % per rate period is a typo (1 where 0.01 was meant), not a product.
MAX_RATE = Decimal(1)
PERIODS_PER_YEAR = {Frequency.MONTHLY: 12, Frequency.WEEKLY: 52}
UNIT_CENTS = {Rounding.CENT: 1, Rounding.SHILLING: 100}
# APR and effective rate are quoted to 0.01 % (a fraction to four places).
RATE_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class ScheduleTerms:
    """What a schedule depends on. ``rate`` is a fraction per ``rate_period``
    (``Decimal("0.01")`` with ``RatePeriod.MONTHLY`` is 1 % a month). Choices may be given
    as their strings; anything invalid is refused with ``InvalidInput`` naming the field."""

    principal_cents: int
    rate: Decimal
    rate_period: RatePeriod
    method: RepaymentMethod
    frequency: Frequency
    instalments: int
    disbursed_on: date
    first_due_on: date | None = None
    grace_periods: int = 0
    rounding: Rounding = Rounding.CENT
    deducted_fee_cents: int = 0
    scheduled_fee_cents: int = 0

    def __post_init__(self) -> None:
        for name, kind in (
            ("rate_period", RatePeriod),
            ("method", RepaymentMethod),
            ("frequency", Frequency),
            ("rounding", Rounding),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except (ValueError, TypeError):
                raise InvalidInput(
                    f"unknown {name} {value!r}", field=name, reason="unknown"
                ) from None
        _need_int("principal_cents", self.principal_cents, low=1)
        _need_int("instalments", self.instalments, low=1, high=MAX_INSTALMENTS)
        _need_int("grace_periods", self.grace_periods, low=0, high=self.instalments - 1)
        _need_int("deducted_fee_cents", self.deducted_fee_cents, low=0)
        _need_int("scheduled_fee_cents", self.scheduled_fee_cents, low=0)
        if self.deducted_fee_cents >= self.principal_cents:
            raise InvalidInput(
                "fees deducted at disbursement leave the member nothing",
                field="deducted_fee_cents",
                reason="fees_exceed_principal",
            )
        if not isinstance(self.rate, Decimal) or not self.rate.is_finite():
            raise InvalidInput("the rate must be a finite Decimal", field="rate", reason="format")
        if not Decimal(0) <= self.rate <= MAX_RATE:
            raise InvalidInput("the rate must be between 0 and 1", field="rate", reason="range")
        if type(self.disbursed_on) is not date:
            raise InvalidInput("a date is needed", field="disbursed_on", reason="format")
        if self.first_due_on is not None:
            if type(self.first_due_on) is not date:
                raise InvalidInput("a date is needed", field="first_due_on", reason="format")
            if not self.disbursed_on < self.first_due_on <= self._latest_first_due():
                raise InvalidInput(
                    "the first instalment falls after disbursement, within two periods",
                    field="first_due_on",
                    reason="range",
                )

    @property
    def periodic_rate(self) -> Fraction:
        """The exact rate per instalment period (see the module's rules)."""
        rate = Fraction(self.rate)
        per_month = rate / 12 if self.rate_period is RatePeriod.ANNUAL else rate
        if self.frequency is Frequency.MONTHLY:
            return per_month
        return rate / 52 if self.rate_period is RatePeriod.ANNUAL else per_month * 12 / 52

    @property
    def unit_cents(self) -> int:
        return UNIT_CENTS[self.rounding]

    @property
    def periods_per_year(self) -> int:
        return PERIODS_PER_YEAR[self.frequency]

    def due_dates(self) -> tuple[date, ...]:
        """Monthly: the disbursement day of the month (or the first due date's, when one is
        given), clamped to each month's end and anchored to that day; weekly: every 7 days
        from the first due date (default: 7 days after disbursement)."""
        if self.frequency is Frequency.MONTHLY:
            if self.first_due_on is None:
                return monthly_due_dates(self.disbursed_on, self.instalments, first_offset=1)
            return monthly_due_dates(self.first_due_on, self.instalments, first_offset=0)
        first = self.first_due_on or self.disbursed_on + timedelta(weeks=1)
        return weekly_due_dates(first, self.instalments)

    def _latest_first_due(self) -> date:
        if self.frequency is Frequency.MONTHLY:
            return add_months(self.disbursed_on, 2)
        return self.disbursed_on + timedelta(weeks=2)


def _need_int(name: str, value: object, *, low: int, high: int | None = None) -> None:
    # bool is an int subclass: refuse it with the floats and Decimals.
    if type(value) is not int:
        raise InvalidInput(f"{name} must be a whole number", field=name, reason="format")
    if value < low or (high is not None and value > high):
        raise InvalidInput(f"{name} out of range", field=name, reason="range")


@dataclass(frozen=True, slots=True)
class Instalment:
    number: int
    due_on: date
    principal_cents: int
    interest_cents: int
    fee_cents: int
    total_cents: int
    balance_after_cents: int


@dataclass(frozen=True, slots=True)
class Schedule:
    terms: ScheduleTerms
    instalments: tuple[Instalment, ...]
    apr: Decimal = field(compare=False)
    effective_annual_rate: Decimal = field(compare=False)

    @property
    def principal_cents(self) -> int:
        return sum(i.principal_cents for i in self.instalments)

    @property
    def interest_cents(self) -> int:
        return sum(i.interest_cents for i in self.instalments)

    @property
    def scheduled_fee_cents(self) -> int:
        return sum(i.fee_cents for i in self.instalments)

    @property
    def fee_cents(self) -> int:
        """Every fee the member pays: deducted at disbursement and in the schedule."""
        return self.terms.deducted_fee_cents + self.scheduled_fee_cents

    @property
    def total_repayable_cents(self) -> int:
        return sum(i.total_cents for i in self.instalments)

    @property
    def disbursed_cents(self) -> int:
        """The cash the member receives: the principal less the fees deducted."""
        return self.terms.principal_cents - self.terms.deducted_fee_cents

    @property
    def cost_of_credit_cents(self) -> int:
        """What the loan costs the member: what they repay less what they received."""
        return self.total_repayable_cents - self.disbursed_cents

    @property
    def instalment_cents(self) -> int:
        """The instalment to quote: the first after the grace periods (for equal principal,
        the largest; the last instalment may differ by the rounding remainders)."""
        return self.instalments[self.terms.grace_periods].total_cents


def build_schedule(terms: ScheduleTerms) -> Schedule:
    """The schedule for ``terms`` (see the module's rules)."""
    rows: list[Row] | None
    if terms.method is RepaymentMethod.FLAT:
        rows = _flat(terms)
    else:
        rows = _reducing(terms, _ceil_to) or _reducing(terms, _floor_to)
        if rows is None:
            raise InvalidInput(
                "no instalment in whole rounding units repays these terms",
                field="instalments",
                reason="instalment_rounding",
            )
    fees = _spread(terms.scheduled_fee_cents, terms.instalments, terms.unit_cents)
    instalments = tuple(
        Instalment(
            number=k,
            due_on=due_on,
            principal_cents=principal,
            interest_cents=interest,
            fee_cents=fee,
            total_cents=principal + interest + fee,
            balance_after_cents=balance,
        )
        for k, (due_on, (principal, interest, balance), fee) in enumerate(
            zip(terms.due_dates(), rows, fees, strict=True), start=1
        )
    )
    periodic = periodic_irr(
        terms.principal_cents - terms.deducted_fee_cents, [i.total_cents for i in instalments]
    )
    apr, effective = annual_rates(periodic, terms.periods_per_year)
    return Schedule(terms, instalments, apr, effective)


Rounder = Callable[[Fraction, int], int]
Row = tuple[int, int, int]  # principal, interest, balance after


def _ceil_to(value: Fraction, unit: int) -> int:
    return -(-value // unit) * unit


def _floor_to(value: Fraction, unit: int) -> int:
    return (value // unit) * unit


def _half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _spread(total: int, parts: int, unit: int) -> list[int]:
    """``total`` in ``parts`` equal shares rounded down to ``unit``, the remainder last."""
    share = _floor_to(Fraction(total, parts), unit)
    return [share] * (parts - 1) + [total - share * (parts - 1)]


def _annuity(balance: int, rate: Fraction, periods: int) -> Fraction:
    if rate == 0:
        return Fraction(balance, periods)
    growth = (1 + rate) ** periods
    return balance * rate * growth / (growth - 1)


def _reducing(terms: ScheduleTerms, rounder: Rounder) -> list[Row] | None:
    """Rows of a reducing-balance schedule with the instalment rounded by ``rounder``, or
    None when that rounding does not give a schedule (the balance would reach 0 before the
    last instalment, or grow)."""
    rate, unit, n = terms.periodic_rate, terms.unit_cents, terms.instalments
    grace, balance = terms.grace_periods, terms.principal_cents
    equal_instalments = terms.method is RepaymentMethod.REDUCING_EQUAL_INSTALMENTS
    level = Fraction(0)
    rows: list[Row] = []
    for k in range(1, n + 1):
        interest = _half_up(balance * rate)
        if k == n:
            principal = balance
        elif k <= grace:
            principal = _ceil_to(Fraction(interest), unit) - interest
        else:
            if k == grace + 1:
                remaining = n - grace
                level = (
                    _annuity(balance, rate, remaining)
                    if equal_instalments
                    else Fraction(balance, remaining)
                )
            due = level if equal_instalments else level + interest
            principal = rounder(due, unit) - interest
        if principal < 0 or (k < n and principal >= balance):
            return None
        balance -= principal
        rows.append((principal, interest, balance))
    return rows


def _flat(terms: ScheduleTerms) -> list[Row]:
    n, grace, unit = terms.instalments, terms.grace_periods, terms.unit_cents
    total_interest = _half_up(terms.principal_cents * terms.periodic_rate * n)
    interests = _spread(total_interest, n, unit)
    principals = [0] * grace + _spread(terms.principal_cents, n - grace, unit)
    rows: list[Row] = []
    balance = terms.principal_cents
    for principal, interest in zip(principals, interests, strict=True):
        balance -= principal
        rows.append((principal, interest, balance))
    return rows


def periodic_irr(received_cents: int, paid_cents: list[int]) -> Decimal:
    """The rate ``i`` per period at which the payments (the k-th at the end of period k)
    are worth what was received: bisection in 50-digit decimals to 10⁻¹⁵. Payments that
    sum to no more than what was received give 0 (the schedule never does: interest and
    fees are never negative)."""
    with localcontext() as ctx:
        ctx.prec = 50
        received = Decimal(received_cents)
        paid = [Decimal(p) for p in paid_cents]

        def worth(rate: Decimal) -> Decimal:
            discount, factor, total = Decimal(1), 1 / (1 + rate), Decimal(0)
            for amount in paid:
                discount *= factor
                total += amount * discount
            return total

        if sum(paid) <= received:
            return Decimal(0)
        low, high = Decimal(0), Decimal(1)
        while worth(high) > received:
            low, high = high, high * 2
        tolerance = Decimal("1e-15")
        while high - low > tolerance:
            middle = (low + high) / 2
            if worth(middle) > received:
                low = middle
            else:
                high = middle
        return (low + high) / 2


def annual_rates(periodic: Decimal, periods_per_year: int) -> tuple[Decimal, Decimal]:
    """(nominal APR, effective annual rate) from a periodic rate, to 0.01 %, half up."""
    with localcontext() as ctx:
        ctx.prec = 50
        nominal = periodic * periods_per_year
        effective = (1 + periodic) ** periods_per_year - 1
    return (
        nominal.quantize(RATE_QUANTUM, rounding=ROUND_HALF_UP),
        effective.quantize(RATE_QUANTUM, rounding=ROUND_HALF_UP),
    )
