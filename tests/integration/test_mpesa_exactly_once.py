"""One M-Pesa payment credits the member exactly once, whatever path brings it.

The same payment can reach us three ways: the STK callback (with its receipt), the
reconciliation's status query (success, but no receipt) and the paybill (C2B)
confirmation (the receipt as ``TransID``). Here they arrive in every order, one at a
time and at the same moment from real threads on PostgreSQL: the member is credited
once, anything that cannot be proven one way or the other is parked in suspense with
both records linked, and ``verify-ledger`` stays green.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy, account_reference
from db.models import OutboxMessage
from db.models_mpesa import C2BPayment, StkRequest, SuspenseItem
from db.session import run_in_transaction, unit_of_work
from tests.integration.test_mpesa_core import member
from tests.ledgerutil import shard_count, sharded_factory

__all__ = ["shard_count"]  # the fixture: the races run on the float whole and sharded

T0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)  # the injected clock; nothing reads the wall clock
AMOUNT = 1_500_00
POLICY = MpesaPolicy()
_SERIAL = itertools.count(1)


@dataclass(frozen=True)
class Payment:
    """One M-Pesa payment by STK push, and the three ways it can reach us."""

    member_id: int
    member_number: str
    phone: str
    stk_id: int
    checkout: str
    receipt: str


def clock(deps: CoreDeps) -> CoreDeps:
    return replace(deps, now=lambda: T0)


def new_payment(session: Session, deps: CoreDeps, *, target: str = "savings") -> Payment:
    n = next(_SERIAL)
    phone = f"+2547139{n:05d}"
    member_id = member(session, deps, phone)
    session.commit()
    number = members.get_member(session, member_id).member_number
    assert number is not None
    started = mpesa.start_deposit(
        session, deps, member_id=member_id, target=target, amount_cents=AMOUNT,
        policy=POLICY, idempotency_key=f"once-{n}-{T0.timestamp()}",
    )  # fmt: skip
    assert mpesa.claim_stk_push(session, deps, started.request_id) is not None
    checkout = f"ws_CO_once_{n}"
    mpesa.record_stk_accepted(
        session, deps, started.request_id, checkout_request_id=checkout,
        merchant_request_id=f"m-{n}",
    )  # fmt: skip
    return Payment(member_id, number, phone, started.request_id, checkout, f"RX{n:08d}")


def stk_callback(
    p: Payment, deps: CoreDeps, receipt: str | None = None
) -> Callable[[Session], str]:
    outcome = mpesa.StkOutcome(
        p.checkout, 0, "The service request is processed successfully.", AMOUNT,
        receipt or p.receipt, p.phone,
    )  # fmt: skip
    return lambda s: mpesa.settle_stk(s, deps, outcome)


def stk_query(p: Payment, deps: CoreDeps) -> Callable[[Session], str]:
    """What reconciliation does when the callback never came: success, no receipt."""
    outcome = mpesa.StkOutcome(p.checkout, 0, "The service request is processed successfully.")
    return lambda s: mpesa.settle_stk(s, deps, outcome)


def paybill(
    p: Payment, deps: CoreDeps, *, receipt: str | None = None, at: datetime | None = None
) -> Callable[[Session], str]:
    """The paybill confirmation of the push's payment (its BillRefNumber is the push's
    AccountReference), paid a minute after the push."""
    payment = mpesa.C2BIn(
        receipt or p.receipt, at or T0 + timedelta(minutes=1), AMOUNT,
        account_reference(p.member_number, "savings"), "174379", "2547 ***** 126", "GRACE",
    )  # fmt: skip
    return lambda s: mpesa.record_c2b(s, deps, payment)


def savings_cents(session: Session, p: Payment) -> int:
    account_id = members.member_account_ids(session, p.member_id)["savings"]
    return ledger.get_balance(session, account_id).balance_cents


def float_cents(session: Session) -> int:
    return ledger.get_balance(
        session, ledger.account_id_by_code(session, SystemAccount.MPESA_COLLECTIONS_FLOAT)
    ).balance_cents


def open_items(session: Session, p: Payment) -> list[SuspenseItem]:
    return list(
        session.scalars(
            select(SuspenseItem).where(
                SuspenseItem.status == "open",
                (SuspenseItem.stk_request_id == p.stk_id)
                | (SuspenseItem.source_ref.in_((p.receipt, p.checkout))),
            )
        )
    )


def receipts_sent(session: Session, p: Payment) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.business_key.like("deposit_received:%"),
                OutboxMessage.member_id == p.member_id,
            )
        )
        or 0
    )


def assert_credited_once(session: Session, p: Payment, float_before: int) -> None:
    """The member has the money once and was told once; the float took it once."""
    session.expire_all()
    assert savings_cents(session, p) == AMOUNT
    assert receipts_sent(session, p) == 1
    assert open_items(session, p) == []
    assert float_cents(session) - float_before == AMOUNT
    assert verify_ledger(session).ok


# ------------------------------------------------------------- one at a time, every order


@pytest.mark.parametrize(
    "order", list(itertools.permutations(("callback", "query", "paybill"))), ids="-".join
)
def test_every_order_of_callback_query_and_paybill_credits_once(
    any_session: Session, deps: CoreDeps, order: tuple[str, ...]
) -> None:
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    before = float_cents(s)
    events = {
        "callback": stk_callback(p, deps),
        "query": stk_query(p, deps),
        "paybill": paybill(p, deps),
    }
    for name in order:
        events[name](s)
    assert_credited_once(s, p, before)
    stk = s.get_one(StkRequest, p.stk_id)
    assert (stk.status, stk.receipt) == ("succeeded", p.receipt)


def test_reconciliation_then_paybill_parks_the_paybill_for_staff_linked_to_the_push(
    any_session: Session, deps: CoreDeps
) -> None:
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    before = float_cents(s)
    assert stk_query(p, deps)(s) == "credited"
    assert paybill(p, deps)(s) == "suspense"
    assert paybill(p, deps)(s) == "duplicate"
    s.expire_all()
    assert savings_cents(s, p) == AMOUNT  # credited once, by the push
    assert receipts_sent(s, p) == 1
    [item] = open_items(s, p)
    assert (item.source, item.source_ref, item.amount_cents) == ("c2b", p.receipt, AMOUNT)
    assert (item.reason, item.stk_request_id) == ("possible_duplicate", p.stk_id)
    c2b = s.scalars(select(C2BPayment).where(C2BPayment.trans_id == p.receipt)).one()
    assert (c2b.status, item.c2b_payment_id) == ("suspense", c2b.id)
    # Parked, not lost: the float holds both until staff decide.
    assert float_cents(s) - before == 2 * AMOUNT
    assert verify_ledger(s).ok
    # Staff decide it was a second payment after all: it goes to the member once.
    mpesa.assign_suspense(s, deps, item_id=item.id, member_id=p.member_id, staff="t")
    assert savings_cents(s, p) == 2 * AMOUNT


def test_paybill_then_reconciliation_parks_the_push_for_staff_linked_to_the_paybill(
    any_session: Session, deps: CoreDeps
) -> None:
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    before = float_cents(s)
    assert paybill(p, deps)(s) == "credited"
    assert stk_query(p, deps)(s) == "suspense"
    s.expire_all()
    assert savings_cents(s, p) == AMOUNT
    assert receipts_sent(s, p) == 1
    [item] = open_items(s, p)
    c2b = s.scalars(select(C2BPayment).where(C2BPayment.trans_id == p.receipt)).one()
    assert (item.source, item.source_ref, item.reason) == ("stk", p.checkout, "possible_duplicate")
    assert (item.stk_request_id, item.c2b_payment_id) == (p.stk_id, c2b.id)
    assert s.get_one(StkRequest, p.stk_id).status == "succeeded"
    assert float_cents(s) - before == 2 * AMOUNT
    assert verify_ledger(s).ok


def test_a_paybill_outside_the_window_or_of_another_amount_is_a_payment_of_its_own(
    any_session: Session, deps: CoreDeps
) -> None:
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    assert stk_query(p, deps)(s) == "credited"
    window = POLICY.twin_window
    late = paybill(p, deps, receipt="RLATE00001", at=T0 + window + timedelta(minutes=5))
    assert late(s) == "credited"
    other = mpesa.C2BIn("ROTHER0001", T0, AMOUNT - 100, p.member_number, "174379")
    assert mpesa.record_c2b(s, deps, other) == "credited"
    s.expire_all()
    assert savings_cents(s, p) == 3 * AMOUNT - 100
    assert open_items(s, p) == []


def test_one_push_is_the_twin_of_at_most_one_paybill_payment(
    any_session: Session, deps: CoreDeps
) -> None:
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    assert stk_query(p, deps)(s) == "credited"
    assert paybill(p, deps)(s) == "suspense"
    assert paybill(p, deps, receipt="RSECOND001")(s) == "credited"
    s.expire_all()
    assert savings_cents(s, p) == 2 * AMOUNT
    assert len(open_items(s, p)) == 1


def test_a_late_callback_with_another_receipt_settles_the_parked_paybill_as_a_payment(
    any_session: Session, deps: CoreDeps
) -> None:
    """The callback proves the push's receipt: the parked paybill was another payment."""
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    assert stk_query(p, deps)(s) == "credited"
    assert paybill(p, deps, receipt="RPAYBILL01")(s) == "suspense"
    assert stk_callback(p, deps)(s) == "duplicate"
    s.expire_all()
    assert savings_cents(s, p) == 2 * AMOUNT
    assert open_items(s, p) == []
    assert s.get_one(StkRequest, p.stk_id).receipt == p.receipt
    assert verify_ledger(s).ok


def test_a_late_callback_with_another_receipt_credits_the_parked_push_as_a_payment(
    any_session: Session, deps: CoreDeps
) -> None:
    """The paybill payment came first; the push, settled without a receipt, was parked as
    its possible twin; its callback then shows a receipt of its own: two payments."""
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    assert paybill(p, deps, receipt="RPAYBILL02")(s) == "credited"
    assert stk_query(p, deps)(s) == "suspense"
    assert stk_callback(p, deps)(s) == "duplicate"
    s.expire_all()
    assert savings_cents(s, p) == 2 * AMOUNT
    assert open_items(s, p) == []
    assert s.get_one(StkRequest, p.stk_id).receipt == p.receipt
    assert verify_ledger(s).ok


@pytest.mark.parametrize("first", ["query", "paybill"])
def test_staff_who_find_one_payment_reverse_the_parked_copy_whichever_came_first(
    any_session: Session, deps: CoreDeps, first: str
) -> None:
    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    before = float_cents(s)
    steps = [stk_query(p, deps), paybill(p, deps)]
    for step in steps if first == "query" else steps[::-1]:
        step(s)
    [item] = open_items(s, p)
    member_id = mpesa.possible_duplicate_member_id(s, item.id)
    assert member_id == p.member_id
    payload = {"item_id": item.id}
    assert mpesa.check_suspense_duplicate(s, member_id=member_id, payload=payload) == AMOUNT
    assert mpesa.resolve_suspense_duplicate(s, deps, item_id=item.id, staff="approval 1") == {
        "item_id": item.id,
        "status": "duplicate",
    }
    s.commit()
    assert_credited_once(s, p, before)
    assert s.get_one(StkRequest, p.stk_id).receipt == p.receipt
    with pytest.raises(mpesa.SuspenseAlreadyAssigned):
        mpesa.resolve_suspense_duplicate(s, deps, item_id=item.id, staff="approval 2")
    # The callback arriving afterwards changes nothing.
    assert stk_callback(p, deps)(s) == "duplicate"
    assert_credited_once(s, p, before)


def test_the_receipt_is_recorded_once_per_path_and_the_statement_sees_one_payment(
    any_session: Session, deps: CoreDeps
) -> None:
    from core.payments.mpesa.statement import StatementLine, reconcile_statement

    s, deps = any_session, clock(deps)
    p = new_payment(s, deps)
    assert stk_callback(p, deps)(s) == "credited"
    assert paybill(p, deps)(s) == "duplicate_of_stk"
    line = StatementLine(p.receipt, T0 + timedelta(minutes=1), AMOUNT, 0)
    report = reconcile_statement(s, [line])
    assert (report.matched, report.missing_in_ledger, report.amount_mismatches) == (1, [], [])


# ------------------------------------------------------------- at the same moment


def race(factory: sessionmaker[Session], works: list[Callable[[Session], str]]) -> list[str]:
    """Run each unit of work in its own thread, all released at once, as the callbacks do."""
    start = threading.Barrier(len(works))
    answers: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(work: Callable[[Session], str]) -> None:
        start.wait()
        try:
            answer = run_in_transaction(factory, work, attempts=8)
        except BaseException as exc:  # a deadlock or any error fails the test
            with lock:
                errors.append(exc)
            return
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, args=(w,)) for w in works]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return sorted(answers)


TRIALS = 6


def test_stk_callback_and_paybill_with_one_receipt_at_the_same_moment_credit_once(
    committed_pg: Engine, deps: CoreDeps, shard_count: int
) -> None:
    factory, deps = sharded_factory(committed_pg, shard_count), clock(deps)
    for _ in range(TRIALS):
        with unit_of_work(factory) as s:
            p = new_payment(s, deps)
            before = float_cents(s)
        answers = race(factory, [stk_callback(p, deps), paybill(p, deps)])
        assert answers in (["credited", "duplicate_of_stk"], ["credited", "duplicate"])
        with unit_of_work(factory) as s:
            assert_credited_once(s, p, before)


def test_five_paybill_confirmations_of_one_payment_at_once_credit_once(
    committed_pg: Engine, deps: CoreDeps, shard_count: int
) -> None:
    factory, deps = sharded_factory(committed_pg, shard_count), clock(deps)
    for _ in range(3):
        with unit_of_work(factory) as s:
            p = new_payment(s, deps)
            before = float_cents(s)
        answers = race(factory, [paybill(p, deps) for _ in range(5)])
        assert answers == ["credited"] + ["duplicate"] * 4
        with unit_of_work(factory) as s:
            assert_credited_once(s, p, before)


def test_reconciliation_and_paybill_at_the_same_moment_credit_once_and_park_the_other(
    committed_pg: Engine, deps: CoreDeps, shard_count: int
) -> None:
    factory, deps = sharded_factory(committed_pg, shard_count), clock(deps)
    for _ in range(TRIALS):
        with unit_of_work(factory) as s:
            p = new_payment(s, deps)
            before = float_cents(s)
        answers = race(factory, [stk_query(p, deps), paybill(p, deps)])
        assert answers == ["credited", "suspense"]
        with unit_of_work(factory) as s:
            assert savings_cents(s, p) == AMOUNT
            assert receipts_sent(s, p) == 1
            [item] = open_items(s, p)
            assert (item.stk_request_id, item.reason) == (p.stk_id, "possible_duplicate")
            assert float_cents(s) - before == 2 * AMOUNT
            assert verify_ledger(s).ok
        # The callback comes at last and proves it was one payment: the parked copy goes.
        assert run_in_transaction(factory, stk_callback(p, deps)) == "duplicate"
        with unit_of_work(factory) as s:
            assert_credited_once(s, p, before)


def test_all_three_paths_and_their_repeats_at_the_same_moment_credit_once(
    committed_pg: Engine, deps: CoreDeps, shard_count: int
) -> None:
    factory, deps = sharded_factory(committed_pg, shard_count), clock(deps)
    for _ in range(TRIALS):
        with unit_of_work(factory) as s:
            p = new_payment(s, deps)
            before = float_cents(s)
        works = [stk_callback(p, deps), stk_query(p, deps), paybill(p, deps)] * 2
        race(factory, works)
        with unit_of_work(factory) as s:
            assert_credited_once(s, p, before)
