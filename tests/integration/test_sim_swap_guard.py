"""The SIM-swap guard fails closed: with the provider failing, a member gets at most the
daily cap of unverified withdrawals; a swap at the window's edge is still recent; and
concurrent withdrawals for one member neither deadlock nor overshoot the cap.

Our real Africa's Talking client talks to the local stand-in, made to fail (HTTP 500 on
every check) or to report a swap. Time is the injected clock (``deps.now``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from rq import Queue
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from config import load_settings
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.ledger.verify import verify_ledger
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy, SimSwapBlocked
from db.models import Hold, OutboxMessage
from db.models_mpesa import B2CPayout, SimSwapEvent
from db.session import make_session_factory, unit_of_work
from integrations.africastalking.simswap import AfricasTalkingSimSwapChecker
from integrations.africastalking.standin import StandinHandle
from integrations.mpesa.wiring import policy_from_settings
from runtime import Runtime
from tests.integration.test_africastalking import control, make_checker
from tests.integration.test_mpesa_core import member
from ussd import actions
from ussd.engine import Effect, Result
from workers.runner import RqJobs

POLICY = policy_from_settings(load_settings(sacco_env="test"))
KES = 100
# 08:00 in Nairobi on an ordinary Tuesday; Nairobi's next midnight is 21:00 UTC.
MORNING = datetime(2026, 3, 10, 5, 0, tzinfo=UTC)
NAIROBI_MIDNIGHT = datetime(2026, 3, 10, 21, 0, tzinfo=UTC)


@pytest.fixture
def failing(standin: StandinHandle) -> AfricasTalkingSimSwapChecker:
    """The provider answers HTTP 500 to every SIM-swap check."""
    control(standin, fail_next=1_000)
    return make_checker(standin.url, timeout=2.0)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at


def withdraw(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    kes: int,
    checker: AfricasTalkingSimSwapChecker,
    key: str,
    policy: MpesaPolicy = POLICY,
) -> str:
    """``allowed``, or the refusal's stable code and reason."""
    try:
        mpesa.request_withdrawal(
            session,
            deps,
            member_id=member_id,
            amount_cents=kes * KES,
            policy=policy,
            sim_swap=checker,
            idempotency_key=key,
        )
    except SimSwapBlocked as exc:
        return f"{exc.code}/{exc.reason}"
    return "allowed"


def held_cents(session: Session, member_id: int) -> int:
    savings = members.member_account_ids(session, member_id)["savings"]
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Hold.amount_cents), 0)).where(
                Hold.account_id == savings, Hold.status == "pending"
            )
        )
        or 0
    )


def test_while_the_check_fails_unverified_withdrawals_stop_at_the_daily_cap(
    db_session: Session, deps: CoreDeps, failing: AfricasTalkingSimSwapChecker
) -> None:
    clock = Clock(MORNING)
    timed = replace(deps, now=clock)
    assert POLICY.sim_swap_failure_daily_max_cents == 1_000 * KES  # the documented default
    m = member(db_session, timed, "+254712000501", savings_kes=20_000)

    seen = []
    for attempt in range(4):  # what was seen: four in a row, each allowed
        clock.at += timedelta(minutes=5)
        seen.append(withdraw(db_session, timed, m, 500, failing, f"cap-{attempt}"))

    refused = "sim_swap_daily_cap/check_failed_daily_cap"
    assert seen == ["allowed", "allowed", refused, refused]
    assert held_cents(db_session, m) == 2 * (500 * KES + 700)  # two payouts of KES 500 + fee
    events = db_session.execute(
        select(SimSwapEvent.outcome, SimSwapEvent.decision, SimSwapEvent.amount_cents)
        .where(SimSwapEvent.member_id == m)
        .order_by(SimSwapEvent.id)
    ).all()
    assert [tuple(e) for e in events] == [
        ("check_failed", "allowed", 50_000),
        ("check_failed", "allowed", 50_000),
        ("check_failed", "refused", 50_000),
        ("check_failed", "refused", 50_000),
    ]
    told = db_session.scalars(
        select(OutboxMessage.body).where(
            OutboxMessage.member_id == m, OutboxMessage.template == "withdrawal_blocked_check_cap"
        )
    ).all()
    assert len(told) == 2
    assert all(len(body) <= 160 and "today" in body for body in told)

    # A new day in Nairobi (not in UTC) opens a new allowance.
    clock.at = NAIROBI_MIDNIGHT - timedelta(seconds=1)
    assert withdraw(db_session, timed, m, 100, failing, "cap-late") == refused
    clock.at = NAIROBI_MIDNIGHT
    assert withdraw(db_session, timed, m, 500, failing, "cap-next-day") == "allowed"
    assert verify_ledger(db_session).ok


def test_the_cap_counts_every_amount_and_never_lets_one_through_above_what_is_left(
    db_session: Session, deps: CoreDeps, failing: AfricasTalkingSimSwapChecker
) -> None:
    timed = replace(deps, now=Clock(MORNING))
    m = member(db_session, timed, "+254712000502", savings_kes=20_000)
    assert withdraw(db_session, timed, m, 700, failing, "a") == "allowed"
    assert withdraw(db_session, timed, m, 400, failing, "b").startswith("sim_swap_daily_cap/")
    assert withdraw(db_session, timed, m, 300, failing, "c") == "allowed"  # exactly 1,000
    # Above the per-withdrawal allowance it is the plain "check failed" refusal, as before.
    assert withdraw(db_session, timed, m, 1_001, failing, "d").endswith("/check_failed")
    # Another member's allowance is their own.
    other = member(db_session, timed, "+254712000503", savings_kes=5_000)
    assert withdraw(db_session, timed, other, 1_000, failing, "e") == "allowed"


def test_the_allow_setting_is_capped_too(
    db_session: Session, deps: CoreDeps, failing: AfricasTalkingSimSwapChecker
) -> None:
    timed = replace(deps, now=Clock(MORNING))
    policy = replace(POLICY, sim_swap_on_failure="allow", sim_swap_failure_daily_max_cents=0)
    m = member(db_session, timed, "+254712000504", savings_kes=5_000)
    outcome = withdraw(db_session, timed, m, 100, failing, "x", policy)
    assert outcome == "sim_swap_daily_cap/check_failed_daily_cap"


def test_a_swap_exactly_at_the_window_edge_still_refuses_the_withdrawal(
    db_session: Session, deps: CoreDeps, standin: StandinHandle
) -> None:
    clock = Clock(MORNING)
    timed = replace(deps, now=clock)
    m = member(db_session, timed, "+254712000505", savings_kes=5_000)
    edge = MORNING - POLICY.sim_swap_window
    control(standin, number="+254712000505", swapped=True, last_swap_date=edge.isoformat())
    checker = make_checker(standin.url)
    assert withdraw(db_session, timed, m, 500, checker, "edge") == "sim_swap_recent/recent_swap"
    clock.at += POLICY.sim_swap_cache + timedelta(microseconds=1)  # fresh check, a moment on
    assert withdraw(db_session, timed, m, 500, checker, "after") == "allowed"


# ------------------------------------------------------------------ concurrency

THREADS = 6


@dataclass
class Ports:
    """What the composition root hands the USSD money menus (``actions.MoneyPorts``)."""

    policy: MpesaPolicy
    sim_swap: AfricasTalkingSimSwapChecker
    shortcode: str = "174379"
    stk: bool = True


@pytest.mark.slow
def test_concurrent_ussd_withdrawals_while_the_check_fails_neither_deadlock_nor_overshoot(
    committed_pg: Engine,
    deps: CoreDeps,
    failing: AfricasTalkingSimSwapChecker,
    redis_client: redis_lib.Redis,
) -> None:
    """What was seen: the event insert (a key-share lock on the member row) before the
    member row lock let two withdrawals deadlock, and the USSD hop answered 500."""
    timed = replace(deps, now=Clock(MORNING))
    factory = make_session_factory(committed_pg)
    runtime = Runtime(committed_pg, factory, timed, redis_client, "Umoja SACCO")
    with unit_of_work(factory) as s:
        m = member(s, timed, "+254712000506", savings_kes=50_000)
    ports = Ports(POLICY, failing)
    # As the composition root does: jobs core defers go to the queue after each commit.
    uow.install_jobs(factory, RqJobs(redis_client, "sim-swap-test").submit)
    start = threading.Barrier(THREADS)
    results: list[Result] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def confirm(n: int) -> None:
        effect = Effect(
            "act", "withdraw_b2c", "en", {"amount": str(500 * KES)}, key=f"ussd:conc:{n}"
        )
        start.wait()
        try:
            result = actions.perform(runtime, effect, member_id=m, msisdn="+254712000506",
                                     money=ports)  # fmt: skip
        except BaseException as exc:  # a deadlock reaching the edge: the hop would be a 500
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=confirm, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    allowed = [r for r in results if r.ok]
    refused = [r.error for r in results if not r.ok]
    assert len(allowed) == 2  # KES 500 twice is the daily cap of KES 1,000
    assert refused == ["sim_swap_check_failed_daily_cap"] * (THREADS - 2)
    with unit_of_work(factory) as s:
        payouts = s.scalars(select(B2CPayout).where(B2CPayout.member_id == m)).all()
        assert sum(p.amount_cents for p in payouts) == 1_000 * KES
        assert held_cents(s, m) == sum(p.amount_cents + p.fee_cents for p in payouts)
        assert verify_ledger(s).ok
    queued = Queue("sim-swap-test", connection=redis_client).jobs
    assert sorted(j.args[0] for j in queued) == sorted(p.id for p in payouts)


@pytest.mark.slow
def test_a_ussd_action_that_hits_a_deadlock_is_run_again_not_failed(
    committed_pg: Engine, deps: CoreDeps, redis_client: redis_lib.Redis
) -> None:
    """Two actions taking two rows in opposite orders: PostgreSQL kills one; ``perform``
    runs it again on a fresh unit of work instead of letting the error reach the hop."""
    factory = make_session_factory(committed_pg)
    runtime = Runtime(committed_pg, factory, deps, redis_client, "Umoja SACCO")
    with unit_of_work(factory) as s:
        first = member(s, deps, "+254712000507")
        second = member(s, deps, "+254712000508")
    both = threading.Barrier(2)
    attempts = {"a": 0, "b": 0}

    def locker(name: str, order: tuple[int, int]) -> actions.Handler:
        def handler(session: Session, deps: CoreDeps, call: actions.Call) -> dict[str, int]:
            attempts[name] += 1
            lock_row = text("SELECT id FROM members WHERE id = :id FOR UPDATE")
            session.execute(lock_row, {"id": order[0]})
            if attempts[name] == 1:
                both.wait(timeout=10)  # each holds its first row before taking the second
            session.execute(lock_row, {"id": order[1]})
            return {"attempts": attempts[name]}

        return handler

    actions.ACTIONS["test_lock_ab"] = locker("a", (first, second))
    actions.ACTIONS["test_lock_ba"] = locker("b", (second, first))
    outcomes: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            outcomes[name] = actions.perform(
                runtime, Effect("act", f"test_lock_{name}", "en"), member_id=None, msisdn=""
            )
        except BaseException as exc:
            outcomes[name] = exc

    try:
        threads = [threading.Thread(target=run, args=(n,)) for n in ("ab", "ba")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        del actions.ACTIONS["test_lock_ab"], actions.ACTIONS["test_lock_ba"]
    assert all(isinstance(o, Result) and o.ok for o in outcomes.values()), outcomes
    assert sorted(attempts.values()) == [1, 2]  # the deadlock's victim ran once more
