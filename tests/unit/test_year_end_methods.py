"""Year-end methods, pure (core.savings.year_end): the pro-rata rebate worked by hand on a
small member history, the days-held dividend, the identities between the methods, tax +
net = gross for every member, totals = the sum of the members', and the capital block."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from core.savings import year_end as ye
from core.savings.vocabulary import DividendMethod, PayoutChoice, RebateMethod

YEAR = 2026
KES = 100


def terms(**changes: object) -> ye.Terms:
    base = {
        "year": YEAR, "dividend_method": DividendMethod.CLOSING_BALANCE,
        "dividend_rate": Decimal("12"), "rebate_method": RebateMethod.MONTHLY_PRO_RATA,
        "rebate_rate": Decimal("8"), "dividend_tax_rate": Decimal("5"),
        "rebate_tax_rate": Decimal("15"),
    }  # fmt: skip
    return ye.Terms(**{**base, **changes})  # type: ignore[arg-type]


def test_the_monthly_pro_rata_rebate_worked_by_hand() -> None:
    # Opening deposits KES 12,000; KES 1,200 in January, 2,400 in March, 600 in October,
    # KES 1,000 taken out in June (a loan offset), KES 5,000 in December. At 10%:
    #   12,000 × 10%                   = 1,200.00
    #    1,200 × 10% × 11/12 (Jan)     =   110.00
    #    2,400 × 10% ×  9/12 (Mar)     =   180.00
    #   -1,000 × 10% ×  6/12 (Jun)     =   -50.00
    #      600 × 10% ×  2/12 (Oct)     =    10.00
    #    5,000 × 10% ×  0/12 (Dec)     =     0.00
    #                                    1,450.00
    history = ye.History(
        12_000 * KES,
        ((date(YEAR, 1, 31), 1_200 * KES), (date(YEAR, 3, 5), 2_400 * KES),
         (date(YEAR, 6, 30), -1_000 * KES), (date(YEAR, 10, 1), 600 * KES),
         (date(YEAR, 12, 20), 5_000 * KES)),
    )  # fmt: skip
    exact = ye.rebate_exact(history, RebateMethod.MONTHLY_PRO_RATA, Decimal(10))
    assert exact == 1_450 * KES
    # Average monthly balance: month ends 13,200 (Jan), 13,200, 15,600 (Mar), 15,600,
    # 15,600, 14,600 (Jun), 14,600, 14,600, 14,600, 15,200 (Oct), 15,200, 20,200 (Dec):
    # sum 182,200 / 12 = 15,183.33; × 10% = 1,518.333..., rounded down to 1,518.33.
    average = ye.rebate_exact(history, RebateMethod.AVERAGE_MONTHLY_BALANCE, Decimal(10))
    assert average == Fraction(182_200 * KES, 12) / 10
    assert ye.to_cents(average) == 151_833


def test_a_member_line_by_hand_with_tax_and_net() -> None:
    facts = ye.MemberFacts(
        7,
        shares=ye.History(10_000 * KES, ((date(YEAR, 7, 1), 5_000 * KES),)),
        deposits=ye.History(12_000 * KES),
        destination=PayoutChoice.SAVINGS,
    )
    line = ye.compute_line(facts, terms())
    assert line is not None
    # Dividend on closing shares 15,000 × 12% = 1,800; tax 5% = 90.
    # Rebate 12,000 × 8% = 960; tax 15% = 144. Net 1,800 - 90 + 960 - 144 = 2,526.
    assert line.amounts() == (7, 180_000, 9_000, 96_000, 14_400, 252_600)
    days = ye.compute_line(facts, terms(dividend_method=DividendMethod.DAYS_HELD))
    assert days is not None
    # 10,000 all 365 days + 5,000 from 1 July (184 days): (10,000×365 + 5,000×184)/365 × 12%
    expected = Fraction(10_000 * KES * 365 + 5_000 * KES * 184, 365) * Fraction(12, 100)
    assert days.dividend_gross_cents == ye.to_cents(expected) == 150_246


histories = st.builds(
    ye.History,
    st.integers(0, 10**9),
    st.lists(
        st.tuples(st.dates(date(YEAR, 1, 1), date(YEAR, 12, 31)), st.integers(0, 10**8)),
        max_size=12,
    ).map(lambda moves: tuple(sorted(moves))),
)
rates = st.decimals(min_value=0, max_value=30, places=4)


@given(histories, rates)
def test_pro_rata_is_the_mean_of_the_months_opening_balances(h: ye.History, r: Decimal) -> None:
    balances = ye.month_end_balances(h)
    openings = [h.opening_cents, *balances[:-1]]
    assert (
        ye.rebate_exact(h, RebateMethod.MONTHLY_PRO_RATA, r)
        == Fraction(sum(openings), 12) * Fraction(r) / 100
    )


@given(histories, rates)
def test_days_held_never_pays_more_than_the_closing_balance_when_only_adding(
    h: ye.History, r: Decimal
) -> None:
    held = ye.dividend_exact(h, YEAR, DividendMethod.DAYS_HELD, r)
    closing = ye.dividend_exact(h, YEAR, DividendMethod.CLOSING_BALANCE, r)
    assert 0 <= held <= closing


@given(
    st.lists(st.tuples(histories, histories), max_size=15),
    rates, rates,
    st.sampled_from(list(DividendMethod)), st.sampled_from(list(RebateMethod)),
    st.sampled_from([Decimal(0), Decimal(5), Decimal(10), Decimal("15")]),
)  # fmt: skip
def test_every_line_adds_up_and_the_totals_are_the_sum_of_the_members(
    pairs: list[tuple[ye.History, ye.History]],
    dividend_rate: Decimal,
    rebate_rate: Decimal,
    dividend_method: DividendMethod,
    rebate_method: RebateMethod,
    tax: Decimal,
) -> None:
    facts = [
        ye.MemberFacts(i + 1, shares, deposits, PayoutChoice.SAVINGS)
        for i, (shares, deposits) in enumerate(pairs)
    ]
    t = terms(dividend_rate=dividend_rate, rebate_rate=rebate_rate,
              dividend_method=dividend_method, rebate_method=rebate_method,
              dividend_tax_rate=tax, rebate_tax_rate=tax)  # fmt: skip
    lines = ye.compute_lines(facts, t)
    for line in lines:
        assert (
            line.dividend_tax_cents + (line.dividend_gross_cents - line.dividend_tax_cents)
            == line.dividend_gross_cents
        )
        assert line.tax_cents + line.net_cents == line.gross_cents
        assert 0 <= line.tax_cents <= line.gross_cents
        assert line.gross_cents > 0
        # Rounded down: never more than the exact amount, less by under a cent.
        f = next(x for x in facts if x.member_id == line.member_id)
        exact = ye.dividend_exact(f.shares, YEAR, dividend_method, dividend_rate)
        assert 0 <= exact - line.dividend_gross_cents < 1
    totals = ye.totals_of(lines)
    assert totals.members == len(lines)
    assert totals.dividend_gross_cents == sum(x.dividend_gross_cents for x in lines)
    assert totals.rebate_gross_cents == sum(x.rebate_gross_cents for x in lines)
    assert totals.net_cents + totals.dividend_tax_cents + totals.rebate_tax_cents == (
        totals.dividend_gross_cents + totals.rebate_gross_cents
    )
    assert ye.digest_of(lines) == ye.digest_of(ye.compute_lines(reversed(facts), t))


def test_the_capital_block_names_the_ratio_that_falls_below_its_minimum() -> None:
    before = ye.CapitalPosition(
        share_capital_cents=5_000_000, institutional_capital_cents=900_000,
        total_assets_cents=10_000_000,
    )  # fmt: skip
    assert before.ratio_percent("core") == Decimal("59")
    assert before.ratio_percent("institutional") == Decimal("9")
    assert ye.breaches(before) == []
    pay = ye.Totals(members=3, dividend_gross_cents=80_000, rebate_gross_cents=20_001)
    after = ye.capital_after(before, pay)
    assert after.institutional_capital_cents == 799_999  # 7.99999% < 8%
    assert [m.ratio for m in ye.breaches(after)] == ["institutional_capital_to_total_assets"]
    exactly = ye.capital_after(before, ye.Totals(dividend_gross_cents=100_000))
    assert ye.breaches(exactly) == []  # 8% is allowed


def test_the_remittance_is_due_on_the_20th_of_the_next_month() -> None:
    assert ye.due_date(2027, 1) == date(2027, 2, 20)
    assert ye.due_date(2026, 12) == date(2027, 1, 20)
