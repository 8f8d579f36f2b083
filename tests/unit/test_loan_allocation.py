"""The repayment allocation (core.loans.repayments.allocate), pure: hypothesis over random
schedules, payment days and amounts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.loans.repayments import Owed, allocate, payoff_cents
from core.loans.vocabulary import LoanPart

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
