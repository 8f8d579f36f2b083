"""M-Pesa loan repayments: a paybill payment whose account is a loan's reference repays
the loan through core.loans.repayments, exactly once per receipt, also when five
confirmations or an STK callback and a confirmation of one payment arrive at once."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.ledger import entries as ledger
from core.ledger.chart import Purpose
from core.ledger.verify import verify_ledger
from core.loans.errors import LoanStateError
from core.loans.vocabulary import RepaymentSource
from core.members.registration import member_account_ids
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import LimitExceeded, MpesaPolicy, account_reference, parse_loan_ref
from db.models import JournalEntry, Member, OutboxMessage
from db.models_loans import Loan, LoanRepayment
from db.models_mpesa import C2BPayment, StkRequest, SuspenseItem
from db.session import make_session_factory, unit_of_work
from tests.integration.test_mpesa_exactly_once import race
from tests.loanutil import disbursed_loan

T0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
POLICY = MpesaPolicy()
_SERIAL = itertools.count(1)


def clock(deps: CoreDeps) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: T0)


def confirmation(bill_ref: str, receipt: str, cents: int = 500_000) -> mpesa.C2BIn:
    return mpesa.C2BIn(receipt, T0, cents, bill_ref, "174379", "2547 ***** 126", "GRACE")


def paybill_work(deps: CoreDeps, payment: mpesa.C2BIn) -> Callable[[Session], str]:
    return lambda s: mpesa.record_c2b(s, deps, payment)


def stk_work(deps: CoreDeps, outcome: mpesa.StkOutcome) -> Callable[[Session], str]:
    return lambda s: mpesa.settle_stk(s, deps, outcome)


def repayments(s: Session, loan: Loan) -> list[LoanRepayment]:
    return list(s.scalars(select(LoanRepayment).where(LoanRepayment.loan_id == loan.id)))


def owed(s: Session, loan: Loan) -> int:
    return ledger.get_balance(s, loan.account_id).balance_cents


def test_loan_references_as_the_paybill_account() -> None:
    assert parse_loan_ref("L7K2M9QX") == "L7K2M9QX"
    assert parse_loan_ref(" l7k2-m9qx ") == "L7K2M9QX"
    assert parse_loan_ref("L7K2M9Q") is None and parse_loan_ref("10019") is None
    assert parse_loan_ref("LIK2M9QX") is None  # I is not in the alphabet
    assert account_reference("10019", "L7K2M9QX") == "L7K2M9QX"
    assert account_reference("10019", "savings") == "10019"


def test_validation_accepts_an_active_loan_and_the_member_number_rule_stays(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)

    def check(ref: str) -> tuple[str, str]:
        return mpesa.validate_c2b(s, bill_ref=ref, amount_cents=500_000, shortcode="174379",
                                  expected_shortcode="174379", policy=POLICY)  # fmt: skip

    assert check(loan.reference.lower()) == ("0", "Accepted")
    assert check(borrower.member_number or "") == ("0", "Accepted")
    assert check("LZZZZZZZ")[0] == "C2B00012"
    loan.status = "closed"
    s.flush()
    assert check(loan.reference)[0] == "C2B00012"


def test_a_paybill_payment_to_a_loan_reference_repays_it_once(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    before = owed(s, loan)
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference.lower(), "RLN0000001")) == (
        "credited"
    )
    [repaid] = repayments(s, loan)
    assert (repaid.source, repaid.receipt, repaid.amount_cents) == ("mpesa", "RLN0000001", 500_000)
    assert owed(s, loan) == before - 500_000  # nothing due yet: a prepayment of principal
    c2b = s.scalars(select(C2BPayment).where(C2BPayment.trans_id == "RLN0000001")).one()
    assert (c2b.status, c2b.member_id, c2b.target) == ("credited", borrower.id, loan.reference)
    assert c2b.entry_id == repaid.entry_id
    [sms] = s.scalars(
        select(OutboxMessage.body).where(OutboxMessage.template == "loan_repayment",
                                         OutboxMessage.member_id == borrower.id)
    ).all()  # fmt: skip
    assert f"KES 5,000 received for loan {loan.reference}" in sms
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLN0000001")) == "duplicate"
    assert len(repayments(s, loan)) == 1 and owed(s, loan) == before - 500_000
    assert verify_ledger(s).ok


def test_a_paybill_payment_to_an_unknown_loan_waits_in_suspense(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    assert mpesa.record_c2b(s, deps, confirmation("LZZZZZZZ", "RLN0000002")) == "suspense"
    item = s.scalars(select(SuspenseItem).where(SuspenseItem.source_ref == "RLN0000002")).one()
    assert (item.reason, item.bill_ref) == ("unknown_account", "LZZZZZZZ")


def test_five_paybill_confirmations_of_one_loan_repayment_at_once_repay_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory, deps = make_session_factory(committed_pg), clock(deps)
    for trial in range(3):
        with unit_of_work(factory) as s:
            loan, _, _ = disbursed_loan(s, deps)
            loan_id, reference, before = loan.id, loan.reference, owed(s, loan)
        receipt = f"RLF{trial:07d}{next(_SERIAL)}"
        payment = confirmation(reference, receipt)
        answers = race(factory, [paybill_work(deps, payment)] * 5)
        assert answers == ["credited"] + ["duplicate"] * 4
        with unit_of_work(factory) as s:
            loan = s.get_one(Loan, loan_id)
            assert len(repayments(s, loan)) == 1
            assert owed(s, loan) == before - 500_000
            assert verify_ledger(s).ok


def _stk_for_loan(s: Session, deps: CoreDeps, loan: Loan, n: int) -> StkRequest:
    """An STK push started to repay a loan: its target is the loan's reference (the start
    is the USSD Loans menu's)."""
    row = StkRequest(
        member_id=loan.member_id, target=loan.reference, amount_cents=500_000,
        msisdn="+254713900001", idempotency_key=f"stk-loan-{n}-{loan.id}", status="pending",
        checkout_request_id=f"ws_CO_loan_{n}_{loan.id}", attempts=1, created_at=T0,
        sent_at=T0,
    )  # fmt: skip
    s.add(row)
    s.flush()
    return row


def test_an_stk_push_for_a_loan_and_its_paybill_confirmation_at_once_repay_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory, deps = make_session_factory(committed_pg), clock(deps)
    for trial in range(3):
        n = next(_SERIAL)
        with unit_of_work(factory) as s:
            loan, _, _ = disbursed_loan(s, deps)
            row = _stk_for_loan(s, deps, loan, n)
            loan_id, reference, before = loan.id, loan.reference, owed(s, loan)
            checkout, phone = row.checkout_request_id or "", row.msisdn
        receipt = f"RLS{trial:07d}{n}"
        outcome = mpesa.StkOutcome(checkout, 0, "ok", 500_000, receipt, phone)
        payment = confirmation(reference, receipt, 500_000)
        answers = race(
            factory,
            [stk_work(deps, outcome), paybill_work(deps, payment)],
        )  # fmt: skip
        assert answers[0] == "credited" and answers[1] in ("duplicate", "duplicate_of_stk")
        with unit_of_work(factory) as s:
            loan = s.get_one(Loan, loan_id)
            [repaid] = repayments(s, loan)
            assert repaid.receipt == receipt
            assert owed(s, loan) == before - 500_000
            assert verify_ledger(s).ok


def test_a_paybill_payment_to_a_closed_loan_goes_to_savings_with_an_sms(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps, term=1, amount_cents=100_000)
    total = owed(s, loan) + 1_000  # 1% for the one month
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLC0000001", total)) == (
        "credited"
    )
    assert loan.status == "closed"
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLC0000002", 20_000)) == (
        "credited"
    )
    later = repayments(s, loan)[-1]
    assert (later.to_savings_cents, later.receipt) == (20_000, "RLC0000002")
    count = s.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.template == "loan_closed_to_savings",
            OutboxMessage.member_id == borrower.id,
        )
    )
    assert count == 1
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ STK push to a loan


def stk_rows(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(StkRequest)) or 0)


def test_an_stk_push_to_the_members_own_active_loan_is_recorded_with_the_loan_reference(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    started = mpesa.start_deposit(
        s, deps, member_id=borrower.id, target=loan.reference.lower(), amount_cents=500_000,
        policy=POLICY, idempotency_key="ussd:stk-loan-own-1",
    )  # fmt: skip
    assert (started.target, started.amount_cents, started.created) == (
        loan.reference, 500_000, True,
    )  # fmt: skip
    job = mpesa.claim_stk_push(s, deps, started.request_id)
    assert job is not None
    assert (job.account_reference, job.description) == (loan.reference, "Loan payment")
    again = mpesa.start_deposit(
        s, deps, member_id=borrower.id, target=loan.reference, amount_cents=500_000,
        policy=POLICY, idempotency_key="ussd:stk-loan-own-1",
    )  # fmt: skip
    assert (again.request_id, again.created) == (started.request_id, False)
    assert stk_rows(s) == 1
    # Its callback repays the loan once (the settlement side: _credit_or_repay).
    mpesa.record_stk_accepted(s, deps, started.request_id, checkout_request_id="ws_CO_own_1",
                              merchant_request_id="m-1")  # fmt: skip
    before = owed(s, loan)
    outcome = mpesa.StkOutcome("ws_CO_own_1", 0, "ok", 500_000, "RLK0000001", borrower.msisdn)
    assert mpesa.settle_stk(s, deps, outcome) == "credited"
    assert mpesa.settle_stk(s, deps, outcome) == "duplicate"
    [repaid] = repayments(s, loan)
    assert (repaid.source, repaid.receipt, repaid.amount_cents) == ("mpesa", "RLK0000001", 500_000)
    assert owed(s, loan) == before - 500_000
    assert verify_ledger(s).ok


def test_an_stk_push_to_another_members_closed_or_unknown_loan_is_refused_writing_nothing(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    other_loan, other, _ = disbursed_loan(s, deps)
    closed, closer, _ = disbursed_loan(s, deps, term=1, amount_cents=100_000)
    assert mpesa.record_c2b(s, deps, confirmation(closed.reference, "RLK0000009", 101_000)) == (
        "credited"
    )
    assert closed.status == "closed"
    entries = s.scalar(select(func.count()).select_from(JournalEntry))

    def push(member_id: int, target: object, cents: int = 500_000) -> None:
        mpesa.start_deposit(
            s, deps, member_id=member_id, target=target, amount_cents=cents,  # type: ignore[arg-type]
            policy=POLICY, idempotency_key=f"ussd:refused:{member_id}:{target}:{cents}",
        )  # fmt: skip

    with pytest.raises(NotFound):
        push(borrower.id, other_loan.reference)  # another member's: as if there were none
    with pytest.raises(NotFound):
        push(other.id, loan.reference)
    with pytest.raises(NotFound):
        push(borrower.id, "LZZZZZZZ")
    with pytest.raises(LoanStateError) as state:
        push(closer.id, closed.reference)
    assert state.value.reason == "closed"
    for target in ("not-a-loan", "L" * 500, "", None, 123):
        with pytest.raises(LimitExceeded) as bad:
            push(borrower.id, target)
        assert bad.value.reason == "target"
    for cents, reason in ((50_050, "not_whole"), (500, "below_minimum"), (10**9, "above_maximum")):
        with pytest.raises(LimitExceeded) as limit:
            push(borrower.id, loan.reference, cents)
        assert limit.value.reason == reason
    with pytest.raises(LimitExceeded) as more:
        push(borrower.id, loan.reference, 10_000_100)  # the payoff is KES 100,000
    assert (more.value.reason, more.value.limit_cents) == ("more_than_owed", 10_000_000)
    assert stk_rows(s) == 0
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries


def test_a_push_may_round_a_payoff_with_cents_up_to_the_shilling_and_the_cents_reach_savings(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLK0000010", 100)) == "credited"
    assert mpesa.record_c2b(s, deps, confirmation(loan.reference, "RLK0000011", 100)) == "credited"
    # KES 99,998 owed; pay KES 0.50 of it from savings: KES 99,997.50 pays it off.
    from core.loans.repayments import Repayment, position, repay_loan

    repay_loan(s, deps, Repayment(50, RepaymentSource.SAVINGS, "savings-cents-1",
                                  "loan_repayment:savings-cents-1", loan_id=loan.id))  # fmt: skip
    assert position(s, deps, loan.id).payoff_cents == 9_999_750
    push = mpesa.loan_push(s, deps, member_id=borrower.id, reference=loan.reference, policy=POLICY)
    assert (push.payoff_cents, push.max_cents) == (9_999_750, 9_999_800)
    with pytest.raises(LimitExceeded):
        mpesa.loan_push(s, deps, member_id=borrower.id, reference=loan.reference,
                        amount_cents=9_999_900, policy=POLICY)  # fmt: skip
    started = mpesa.start_deposit(
        s, deps, member_id=borrower.id, target=loan.reference, amount_cents=9_999_800,
        policy=POLICY, idempotency_key="ussd:round-up-1",
    )  # fmt: skip
    mpesa.record_stk_accepted(s, deps, started.request_id, checkout_request_id="ws_CO_round",
                              merchant_request_id="m-2")  # fmt: skip
    savings_before = savings_of(s, borrower)
    outcome = mpesa.StkOutcome("ws_CO_round", 0, "ok", 9_999_800, "RLK0000012", borrower.msisdn)
    assert mpesa.settle_stk(s, deps, outcome) == "credited"
    assert loan.status == "closed" and owed(s, loan) == 0
    assert savings_of(s, borrower) == savings_before + 50
    assert len(sms_of(s, borrower, "loan_overpaid_to_savings")) == 1
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ suspense to a loan


def savings_of(s: Session, member: Member) -> int:
    return ledger.get_balance(s, member_account_ids(s, member.id)[Purpose.SAVINGS]).balance_cents


def suspense_cents(s: Session) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, "2200")).balance_cents


def sms_of(s: Session, member: Member, template: str) -> list[str]:
    return list(
        s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.template == template, OutboxMessage.member_id == member.id
            )
        )
    )


def parked(s: Session, deps: CoreDeps, receipt: str, cents: int = 500_000) -> SuspenseItem:
    """A paybill payment whose account was a mistyped loan reference: in suspense."""
    assert mpesa.record_c2b(s, deps, confirmation("LZZZZZZZ", receipt, cents)) == "suspense"
    return s.scalars(select(SuspenseItem).where(SuspenseItem.source_ref == receipt)).one()


def test_staff_move_a_parked_loan_payment_to_the_loan_once(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    item = parked(s, deps, "RLP0000001")
    before, float_before, suspense_before = owed(s, loan), float_in(s), suspense_cents(s)
    posted = mpesa.assign_suspense(s, deps, item_id=item.id, member_id=borrower.id,
                                   target=loan.reference.lower(), staff="approval 1")  # fmt: skip
    assert posted.created
    [repaid] = repayments(s, loan)
    assert (repaid.source, repaid.receipt, repaid.amount_cents, repaid.idempotency_key) == (
        "mpesa", "RLP0000001", 500_000, f"mpesa:suspense:{item.id}",
    )  # fmt: skip
    assert repaid.entry_id == posted.entry_id
    assert owed(s, loan) == before - 500_000
    assert suspense_cents(s) == suspense_before - 500_000  # out of suspense, not the float
    assert float_in(s) == float_before
    s.refresh(item)
    assert (item.status, item.assigned_member_id, item.assigned_target) == (
        "assigned", borrower.id, loan.reference,
    )  # fmt: skip
    [receipt] = sms_of(s, borrower, "loan_repayment")
    assert f"KES 5,000 received for loan {loan.reference}" in receipt
    # The same assignment again: the first entry, nothing new.
    again = mpesa.assign_suspense(s, deps, item_id=item.id, member_id=borrower.id,
                                  target=loan.reference, staff="approval 2")  # fmt: skip
    assert (again.entry_id, again.created) == (posted.entry_id, False)
    with pytest.raises(mpesa.SuspenseAlreadyAssigned):
        mpesa.assign_suspense(s, deps, item_id=item.id, member_id=borrower.id, staff="x")
    assert len(repayments(s, loan)) == 1 and owed(s, loan) == before - 500_000
    assert verify_ledger(s).ok


def test_a_parked_payment_beyond_the_payoff_closes_the_loan_and_the_rest_reaches_savings(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps, term=1, amount_cents=100_000)
    item = parked(s, deps, "RLP0000002", 150_000)  # payoff KES 1,000: interest not yet due
    savings_before, suspense_before = savings_of(s, borrower), suspense_cents(s)
    mpesa.assign_suspense(s, deps, item_id=item.id, member_id=borrower.id,
                          target=loan.reference, staff="approval 3")  # fmt: skip
    assert loan.status == "closed" and owed(s, loan) == 0
    [repaid] = repayments(s, loan)
    assert (repaid.to_savings_cents, repaid.closed_loan) == (50_000, True)
    assert savings_of(s, borrower) == savings_before + 50_000
    assert suspense_cents(s) == suspense_before - 150_000
    assert len(sms_of(s, borrower, "loan_repaid")) == 1
    assert verify_ledger(s).ok


def test_a_parked_payment_is_not_moved_to_another_members_loan_nor_an_unknown_one(
    db_session: Session, deps: CoreDeps
) -> None:
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    _, other, _ = disbursed_loan(s, deps)
    item = parked(s, deps, "RLP0000003")
    entries = s.scalar(select(func.count()).select_from(JournalEntry))
    for member, target in ((other, loan.reference), (borrower, "LZZZZZZZ")):
        with pytest.raises(NotFound):
            mpesa.assign_suspense(s, deps, item_id=item.id, member_id=member.id,
                                  target=target, staff="x")  # fmt: skip
    with pytest.raises(LimitExceeded):
        mpesa.assign_suspense(s, deps, item_id=item.id, member_id=borrower.id,
                              target="L" + "Q" * 300, staff="x")  # fmt: skip
    with pytest.raises(InvalidInput):
        mpesa.check_suspense_loan(s, member_id=other.id, reference=loan.reference)
    s.refresh(item)
    assert item.status == "open" and repayments(s, loan) == []
    assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries
    assert verify_ledger(s).ok


def test_an_item_closed_as_a_duplicate_is_not_moved_anywhere(
    db_session: Session, deps: CoreDeps
) -> None:
    """Its parking entry was reversed: moving it would take money suspense no longer holds."""
    s, deps = db_session, clock(deps)
    loan, borrower, _ = disbursed_loan(s, deps)
    item = parked(s, deps, "RLP0000004")
    item.status = "duplicate"  # as _resolve_duplicate leaves it (its entry reversed)
    s.flush()
    for target in (loan.reference, "savings"):
        with pytest.raises(mpesa.SuspenseAlreadyAssigned):
            mpesa.assign_suspense(s, deps, item_id=item.id, member_id=borrower.id,
                                  target=target, staff="x")  # fmt: skip
    assert repayments(s, loan) == []


def float_in(s: Session) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, "1010")).balance_cents


def assign_work(
    deps: CoreDeps, item_id: int, member_id: int, target: str
) -> Callable[[Session], str]:
    def work(s: Session) -> str:
        try:
            posted = mpesa.assign_suspense(s, deps, item_id=item_id, member_id=member_id,
                                           target=target, staff="race")  # fmt: skip
        except mpesa.SuspenseAlreadyAssigned:
            return "refused"
        return "moved" if posted.created else "same"

    return work


def test_two_staff_moving_one_parked_payment_at_once_move_it_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory, deps = make_session_factory(committed_pg), clock(deps)
    for trial in range(3):
        with unit_of_work(factory) as s:
            loan, borrower, _ = disbursed_loan(s, deps)
            item = parked(s, deps, f"RLR{trial:07d}{next(_SERIAL)}")
            ids = (loan.id, borrower.id, item.id, loan.reference)
            before, suspense_before = owed(s, loan), suspense_cents(s)
        loan_id, member_id, item_id, reference = ids
        # Twice the same loan, and once to savings: one of them moves the money.
        answers = race(
            factory,
            [
                assign_work(deps, item_id, member_id, reference),
                assign_work(deps, item_id, member_id, reference.lower()),
                assign_work(deps, item_id, member_id, "savings"),
            ],
        )
        assert answers in (["moved", "refused", "same"], ["moved", "refused", "refused"])
        with unit_of_work(factory) as s:
            loan = s.get_one(Loan, loan_id)
            moved = repayments(s, loan)
            assert len(moved) <= 1
            savings_entries = s.scalar(
                select(func.count())
                .select_from(JournalEntry)
                .where(JournalEntry.idempotency_key == f"mpesa:suspense:{item_id}")
            )
            assert savings_entries == 1  # one entry moved the item's money, whichever won
            assert owed(s, loan) == before - (500_000 if moved else 0)
            assert suspense_cents(s) == suspense_before - 500_000
            assert verify_ledger(s).ok
