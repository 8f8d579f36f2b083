"""The repayment allocation (core.loans.repayments.allocate), pure: hypothesis over random
schedules, payment days and amounts, for every allocation order and early-payoff rule a
product may name; the worked examples of docs/loans/repayment.md."""

from __future__ import annotations

import dataclasses
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from core.loans.repayments import Allocation, Owed, allocate, owed_rows, payoff_cents
from core.loans.vocabulary import AllocationOrder, EarlyPayoffInterest, LoanPart
from db.models_loans import LoanInstalment

cents = st.integers(min_value=0, max_value=5_000_000)


@st.composite
def loans(draw: st.DrawFn) -> list[Owed]:
    n = draw(st.integers(min_value=1, max_value=24))
    due = draw(st.integers(min_value=0, max_value=n))  # the first `due` instalments are due
    rows = [
        Owed(
            number=k + 1,
            due=k < due,
            penalty_cents=draw(cents) if k < due else 0,
            fee_cents=draw(cents),
            interest_cents=draw(cents),
            principal_cents=draw(cents),
        )
        for k in range(n)
    ]
    return rows


@given(owed=loans(), amount=st.integers(min_value=1, max_value=200_000_000))
def test_every_repayment_splits_exactly_and_never_takes_more_than_owed(
    owed: list[Owed], amount: int
) -> None:
    split = allocate(owed, amount)
    assert split.loan_cents + split.to_savings_cents == amount
    by_number = {o.number: o for o in owed}
    for paid in split.instalments:
        o = by_number[paid.number]
        for part in LoanPart:
            taken = getattr(paid, f"{part}_cents")
            assert 0 <= taken <= o.part(part)  # never more than is owed: principal >= 0
        if not o.due:
            assert paid.interest_cents == 0  # interest not yet due is never taken
        assert paid.interest_cents + paid.waived_interest_cents <= o.interest_cents
    due_interest = sum(o.interest_cents for o in owed if o.due)
    assert split.interest_cents <= due_interest
    payoff = payoff_cents(owed)
    # Overpayment to savings is exactly what is beyond the payoff.
    assert split.to_savings_cents == max(0, amount - payoff)
    assert split.closes == (amount >= payoff)
    if split.closes:
        assert split.waived_interest_cents == sum(o.interest_cents for o in owed if not o.due)
    else:
        assert split.waived_interest_cents == 0


@given(owed=loans(), amount=st.integers(min_value=1, max_value=200_000_000))
def test_the_default_order_pays_what_is_due_first_part_by_part(
    owed: list[Owed], amount: int
) -> None:
    split = allocate(owed, amount)
    due = [o for o in owed if o.due]
    due_total = {p: sum(o.part(p) for o in due) for p in LoanPart}
    paid_due = {
        p: sum(getattr(i, f"{p}_cents") for i in split.instalments if i.number <= len(due))
        for p in LoanPart
    }
    order = [LoanPart.PENALTY, LoanPart.FEE, LoanPart.INTEREST, LoanPart.PRINCIPAL]
    for k, part in enumerate(order):
        if paid_due[part] > 0:  # a later part is touched only once every earlier one is paid
            assert all(paid_due[p] == due_total[p] for p in order[:k])
    prepaid = sum(i.fee_cents + i.principal_cents for i in split.instalments if i.number > len(due))
    if prepaid:
        assert all(paid_due[p] == due_total[p] for p in order)


def test_a_payment_on_an_instalment_due_today_pays_interest_before_principal() -> None:
    owed = [
        Owed(1, True, 0, 0, 100_000, 788_488),
        Owed(2, False, 0, 0, 92_115, 796_373),
    ]
    split = allocate(owed, 150_000)
    assert (split.interest_cents, split.principal_cents) == (100_000, 50_000)
    payoff = allocate(owed, 100_000 + 788_488 + 796_373 + 7)
    assert payoff.closes and payoff.waived_interest_cents == 92_115
    assert payoff.to_savings_cents == 7


# ------------------------------------------------------------------ every order, every rule
# The products' allocation orders and early-payoff rules (docs/loans/repayment.md). The
# priority below is written out again here, from the docs, not read from the module.

ORDERS = list(AllocationOrder)
RULES = list(EarlyPayoffInterest)
PARTS = {
    AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL: "penalty fee interest principal",
    AllocationOrder.OLDEST_INSTALMENT_FIRST: "penalty fee interest principal",
    AllocationOrder.INTEREST_PRINCIPAL_PENALTIES_FEES: "interest principal penalty fee",
}
ACROSS = {AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL}  # part by part, not by instalment


def charged(o: Owed, part: LoanPart, rule: EarlyPayoffInterest, owed: list[Owed]) -> bool:
    """Whether an early payoff today pays this part (the interest rule of the docs)."""
    if o.due or part is not LoanPart.INTEREST:
        return True
    in_progress = min(x.number for x in owed if not x.due)
    return rule is EarlyPayoffInterest.CHARGE_ALL or (
        rule is EarlyPayoffInterest.CHARGE_CURRENT_PERIOD and o.number == in_progress
    )


def priority(o: Owed, part: LoanPart, order: AllocationOrder) -> tuple[int, int, int]:
    """Smaller is paid first: what is due before what is not, then the order's rule."""
    rank = PARTS[order].split().index(part.value)
    group = 0 if o.due else 1
    return (group, rank, o.number) if order in ACROSS else (group, o.number, rank)


def paid_of(split: Allocation, number: int, part: LoanPart) -> int:
    for paid in split.instalments:
        if paid.number == number:
            return int(getattr(paid, f"{part}_cents"))
    return 0


@given(
    owed=loans(),
    amount=st.integers(min_value=1, max_value=200_000_000),
    order=st.sampled_from(ORDERS),
    rule=st.sampled_from(RULES),
)
def test_every_order_and_rule_splits_exactly_within_what_is_owed(
    owed: list[Owed], amount: int, order: AllocationOrder, rule: EarlyPayoffInterest
) -> None:
    split = allocate(owed, amount, order, rule)
    assert split.loan_cents + split.to_savings_cents == amount
    assert split.to_savings_cents >= 0
    for o in owed:
        for part in LoanPart:
            taken = paid_of(split, o.number, part)
            assert 0 <= taken <= o.part(part)  # never more than this part owes
            if not charged(o, part, rule, owed):
                assert taken == 0  # interest the rule does not charge is never taken
    for paid in split.instalments:
        o = next(x for x in owed if x.number == paid.number)
        assert paid.interest_cents + paid.waived_interest_cents <= o.interest_cents
    payoff = payoff_cents(owed, rule)
    assert payoff == sum(o.part(p) for o in owed for p in LoanPart if charged(o, p, rule, owed))
    assert split.to_savings_cents == max(0, amount - payoff)  # exactly what is beyond payoff
    assert split.closes == (amount >= payoff)
    uncharged = sum(o.interest_cents for o in owed if not charged(o, LoanPart.INTEREST, rule, owed))
    assert split.waived_interest_cents == (uncharged if split.closes else 0)


@given(
    owed=loans(),
    amount=st.integers(min_value=1, max_value=200_000_000),
    order=st.sampled_from(ORDERS),
    rule=st.sampled_from(RULES),
)
def test_no_part_is_paid_while_one_before_it_in_the_order_is_unpaid(
    owed: list[Owed], amount: int, order: AllocationOrder, rule: EarlyPayoffInterest
) -> None:
    split = allocate(owed, amount, order, rule)
    places = sorted(
        ((o, p) for o in owed for p in LoanPart if o.part(p) and charged(o, p, rule, owed)),
        key=lambda op: priority(op[0], op[1], order),
    )
    touched = [k for k, (o, p) in enumerate(places) if paid_of(split, o.number, p)]
    if touched:
        for o, p in places[: touched[-1]]:  # everything before the last one touched
            assert paid_of(split, o.number, p) == o.part(p), (order, o.number, p)


@given(owed=loans(), rule=st.sampled_from(RULES))
def test_the_payoff_closes_the_loan_whatever_the_order(
    owed: list[Owed], rule: EarlyPayoffInterest
) -> None:
    payoff = payoff_cents(owed, rule)
    for order in ORDERS:
        split = allocate(owed, payoff, order, rule)
        assert split.closes and split.to_savings_cents == 0 and split.loan_cents == payoff
        if payoff:
            assert not allocate(owed, payoff - 1, order, rule).closes


def test_the_defaults_are_the_behaviour_before_products_named_them() -> None:
    owed = [Owed(1, True, 500, 1_000, 3_000, 10_000), Owed(2, False, 0, 1_000, 2_000, 10_000)]
    for amount in (1, 1_400, 4_600, 14_499, 23_500, 30_000):
        assert allocate(owed, amount) == allocate(
            owed, amount, AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL,
            EarlyPayoffInterest.WAIVE,
        )  # fmt: skip
    assert payoff_cents(owed) == payoff_cents(owed, EarlyPayoffInterest.WAIVE) == 25_500


# Worked examples (the ones docs/loans/repayment.md shows). Two instalments in arrears and
# one not yet due; KES in cents.
ARREARS = [
    Owed(1, True, penalty_cents=5_000, fee_cents=10_000, interest_cents=30_000,
         principal_cents=100_000),
    Owed(2, True, penalty_cents=0, fee_cents=10_000, interest_cents=20_000,
         principal_cents=100_000),
    Owed(3, False, penalty_cents=0, fee_cents=10_000, interest_cents=10_000,
         principal_cents=100_000),
]  # fmt: skip


def parts(split: Allocation) -> tuple[int, int, int, int]:
    return split.penalty_cents, split.fee_cents, split.interest_cents, split.principal_cents


def by_instalment(split: Allocation) -> dict[int, tuple[int, int, int, int]]:
    return {
        i.number: (i.penalty_cents, i.fee_cents, i.interest_cents, i.principal_cents)
        for i in split.instalments
    }


def test_worked_example_kes_700_over_two_instalments_in_arrears() -> None:
    vertical = allocate(ARREARS, 70_000, AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL)
    assert parts(vertical) == (5_000, 20_000, 45_000, 0)  # interest of 2 part paid
    assert by_instalment(vertical) == {1: (5_000, 10_000, 30_000, 0), 2: (0, 10_000, 15_000, 0)}
    oldest = allocate(ARREARS, 70_000, AllocationOrder.OLDEST_INSTALMENT_FIRST)
    assert by_instalment(oldest) == {1: (5_000, 10_000, 30_000, 25_000)}
    interest_first = allocate(ARREARS, 70_000, AllocationOrder.INTEREST_PRINCIPAL_PENALTIES_FEES)
    assert by_instalment(interest_first) == {1: (0, 0, 30_000, 40_000)}


def test_worked_example_kes_1450_clears_the_oldest_instalment_only_instalment_by_instalment() -> (
    None
):
    vertical = allocate(ARREARS, 145_000, AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL)
    assert by_instalment(vertical) == {
        1: (5_000, 10_000, 30_000, 70_000),
        2: (0, 10_000, 20_000, 0),
    }  # both instalments still in arrears
    oldest = allocate(ARREARS, 145_000, AllocationOrder.OLDEST_INSTALMENT_FIRST)
    assert by_instalment(oldest) == {1: (5_000, 10_000, 30_000, 100_000)}  # 1 cleared
    interest_first = allocate(ARREARS, 145_000, AllocationOrder.INTEREST_PRINCIPAL_PENALTIES_FEES)
    assert by_instalment(interest_first) == {1: (5_000, 10_000, 30_000, 100_000)}
    short = allocate(ARREARS, 135_000, AllocationOrder.INTEREST_PRINCIPAL_PENALTIES_FEES)
    assert by_instalment(short) == {1: (5_000, 0, 30_000, 100_000)}  # the fee waits


# A loan of KES 30,000 over three months, 1% a month on the reducing balance with equal
# principal: interest 300, 200, 100. The first instalment is paid; on a day in the second
# month, instalments 2 and 3 are not yet due.
MID_TERM = [
    Owed(2, False, 0, 0, interest_cents=20_000, principal_cents=1_000_000),
    Owed(3, False, 0, 0, interest_cents=10_000, principal_cents=1_000_000),
]


def test_worked_example_early_payoff_waive() -> None:
    assert payoff_cents(MID_TERM, EarlyPayoffInterest.WAIVE) == 2_000_000
    split = allocate(MID_TERM, 2_000_000, early_payoff=EarlyPayoffInterest.WAIVE)
    assert split.closes and (split.interest_cents, split.waived_interest_cents) == (0, 30_000)


def test_worked_example_early_payoff_charge_current_period() -> None:
    assert payoff_cents(MID_TERM, EarlyPayoffInterest.CHARGE_CURRENT_PERIOD) == 2_020_000
    split = allocate(MID_TERM, 2_020_000, early_payoff=EarlyPayoffInterest.CHARGE_CURRENT_PERIOD)
    assert split.closes and (split.interest_cents, split.waived_interest_cents) == (20_000, 10_000)
    assert by_instalment(split) == {2: (0, 0, 20_000, 1_000_000), 3: (0, 0, 0, 1_000_000)}
    # KES 20,000 short of it: the current month's interest is taken before principal.
    part = allocate(MID_TERM, 1_000_000, early_payoff=EarlyPayoffInterest.CHARGE_CURRENT_PERIOD)
    assert not part.closes and parts(part) == (0, 0, 20_000, 980_000)


def test_worked_example_early_payoff_charge_all() -> None:
    assert payoff_cents(MID_TERM, EarlyPayoffInterest.CHARGE_ALL) == 2_030_000
    split = allocate(MID_TERM, 2_030_000, early_payoff=EarlyPayoffInterest.CHARGE_ALL)
    assert split.closes and (split.interest_cents, split.waived_interest_cents) == (30_000, 0)
    more = allocate(MID_TERM, 2_050_000, early_payoff=EarlyPayoffInterest.CHARGE_ALL)
    assert more.to_savings_cents == 20_000


def test_once_every_instalment_is_due_the_rules_agree() -> None:
    overdue = [Owed(1, True, 0, 0, 1_000, 50_000), Owed(2, True, 0, 0, 500, 50_000)]
    assert {payoff_cents(overdue, rule) for rule in RULES} == {101_500}


def _instalment(number: int, due_on: date, *, paid: bool = False) -> LoanInstalment:
    return LoanInstalment(
        number=number, due_on=due_on, principal_cents=1000, interest_cents=300, fee_cents=0,
        paid_principal_cents=1000 if paid else 0, paid_interest_cents=300 if paid else 0,
        paid_fee_cents=0, waived_interest_cents=0,
    )  # fmt: skip


def test_the_loans_penalty_is_owed_with_its_oldest_unpaid_instalment_due() -> None:
    today = date(2026, 5, 1)
    rows = [_instalment(1, date(2026, 3, 1), paid=True), _instalment(2, date(2026, 4, 1)),
            _instalment(3, date(2026, 5, 1)), _instalment(4, date(2026, 6, 1))]  # fmt: skip
    owed = owed_rows(rows, today, penalty_cents=250)
    assert [o.penalty_cents for o in owed] == [0, 250, 0, 0]
    assert owed_rows(rows, today) == [dataclasses.replace(o, penalty_cents=0) for o in owed]
    # Every order takes it where it names penalties: the default first of all.
    assert allocate(owed, 250).penalty_cents == 250
    assert allocate(owed, 300, AllocationOrder.INTEREST_PRINCIPAL_PENALTIES_FEES).penalty_cents == 0
    # Everything due paid: the penalty stays with the last one due, and the loan is not
    # paid off without it.
    paid = [_instalment(n, d, paid=True) for n, d in ((1, date(2026, 3, 1)),
                                                      (2, date(2026, 4, 1)))]  # fmt: skip
    owed = owed_rows([*paid, _instalment(3, date(2026, 6, 1))], today, penalty_cents=99)
    assert [o.penalty_cents for o in owed] == [0, 99, 0]
    assert payoff_cents(owed) == 99 + 1000
    assert not allocate(owed, 1000).closes and allocate(owed, 1099).closes
