"""``core.payments.mpesa.statement.compare_statement``, property-tested: a statement that renders
exactly what we recorded is clean, and every difference made to it is reported once,
in the right list, whatever else is in the file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.payments.mpesa.statement import (
    SLACK,
    Recorded,
    StatementLine,
    Unreceipted,
    compare_statement,
)

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
KINDS = ("stk", "c2b", "b2c")


@st.composite
def recorded(draw: st.DrawFn) -> dict[str, Recorded]:
    count = draw(st.integers(min_value=2, max_value=25))
    receipts = draw(
        st.lists(
            st.from_regex(r"Q[A-Z0-9]{9}", fullmatch=True),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    ours = {}
    for i, receipt in enumerate(receipts):
        kind = draw(st.sampled_from(KINDS))
        cents = draw(st.integers(min_value=1_000, max_value=15_000_000))
        # Payments spread over a day, in order, so every one is inside the period.
        ours[receipt] = Recorded(kind, -cents if kind == "b2c" else cents, T0 + timedelta(
            minutes=i * 30))  # fmt: skip
    return ours


def render(receipt: str, mine: Recorded) -> StatementLine:
    paid_in, withdrawn = (mine.cents, 0) if mine.cents > 0 else (0, -mine.cents)
    return StatementLine(receipt, mine.at, paid_in, withdrawn, "Pay Bill", "", "Pay Bill")


def charge(receipt: str, at: datetime | None, cents: int) -> StatementLine:
    return StatementLine(receipt, at, 0, cents, "Business Payment Charge", "", "Charge")


@settings(max_examples=150, deadline=None)
@given(ours=recorded(), data=st.data())
def test_every_difference_is_reported_once_and_in_its_own_list(
    ours: dict[str, Recorded], data: st.DataObject
) -> None:
    receipts = list(ours)
    # Keep the first and the last so the statement's period covers every payment.
    middle = receipts[1:-1]
    dropped = set(data.draw(st.lists(st.sampled_from(middle), unique=True), "dropped")) if (
        middle) else set()  # fmt: skip
    kept = [r for r in receipts if r not in dropped]
    altered = set(data.draw(st.lists(st.sampled_from(kept), unique=True), "altered"))
    delta = data.draw(st.integers(min_value=1, max_value=10_000), "delta")
    unknown = data.draw(
        st.lists(st.from_regex(r"Z[A-Z0-9]{9}", fullmatch=True), unique=True, max_size=4),
        "unknown",
    )
    split = set(data.draw(st.lists(st.sampled_from(kept), unique=True), "split"))
    charged = set(data.draw(st.lists(st.sampled_from(kept), unique=True), "charged"))

    lines: list[StatementLine] = []
    for receipt in kept:
        line = render(receipt, ours[receipt])
        if receipt in altered:
            line = StatementLine(receipt, line.completed_at, line.paid_in_cents + delta if
                                 line.paid_in_cents else 0, line.withdrawn_cents + delta if
                                 line.withdrawn_cents else 0)  # fmt: skip
        if receipt in split and line.paid_in_cents > 1:  # one payment on two lines
            half = line.paid_in_cents // 2
            lines.append(StatementLine(receipt, line.completed_at, half, 0))
            line = StatementLine(receipt, line.completed_at, line.paid_in_cents - half, 0)
        lines.append(line)
        if receipt in charged:
            lines.append(charge(receipt, line.completed_at, 1_500))
    for receipt in unknown:
        lines.append(StatementLine(receipt, T0 + timedelta(minutes=5), 50_000, 0))
    order = data.draw(st.permutations(lines), "order")

    report = compare_statement(order, ours)

    assert {r for r, _, _ in report.amount_mismatches} == altered
    assert {line.receipt for line in report.missing_in_ledger} == set(unknown)
    assert {r for _, r, _ in report.missing_in_statement} == dropped
    assert report.matched == len(kept) - len(altered)
    assert report.matched + len(report.amount_mismatches) + len(report.missing_in_ledger) == len(
        {line.receipt for line in order if not line.is_charge}
    )
    assert (report.charge_lines, report.charges_cents) == (len(charged), 1_500 * len(charged))
    for receipt, theirs_said, ours_said in (
        (r, t, o) for r, o, t in report.amount_mismatches
    ):  # ours is what we recorded, theirs is off by delta, on the payment's side
        assert ours_said == ours[receipt].cents
        assert abs(theirs_said - ours_said) == delta
    assert report.clean == (not altered and not unknown and not dropped)


def test_an_stk_deposit_without_a_receipt_is_matched_once_by_account_amount_and_time() -> None:
    asked = T0
    stk = [
        Unreceipted(7, "10019", "deposits", 300_00, asked, asked + timedelta(minutes=4)),
        Unreceipted(8, "10019", "deposits", 300_00, asked + timedelta(minutes=1), None),
        Unreceipted(9, "10019", "savings", 450_00, asked, asked + timedelta(minutes=4)),
    ]
    paid = asked + timedelta(seconds=30)
    lines = [
        StatementLine("QKE5000001", paid, 300_00, 0, "Pay Bill Online", "10019D"),
        StatementLine("QKE5000002", paid, 300_00, 0, "Pay Bill Online from 2547 Acc. 10019-d"),
        StatementLine("QKE5000003", paid, 300_00, 0, "Pay Bill Online", "10019D"),  # none left
        StatementLine("QKE5000004", paid + SLACK * 3, 450_00, 0, "Pay Bill Online", "10019"),
    ]
    report = compare_statement(lines, {}, stk)
    assert report.matched_by_account == [("QKE5000001", 7), ("QKE5000002", 8)]
    assert [line.receipt for line in report.missing_in_ledger] == ["QKE5000003", "QKE5000004"]
    assert report.missing_in_statement == [("stk", "STK#9", 450_00)]  # paid too late to be it
