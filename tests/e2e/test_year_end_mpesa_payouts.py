"""Year-end nets paid by M-Pesa, end to end: a run posted through maker-checker, then the
payouts (core.payments.mpesa.dividend_payouts through workers.year_end) sent to the Daraja
stand-in and settled by its result callbacks over real HTTP; the SIM-swap check through the
Africa's Talking stand-in. Paid: the hold is posted (only the whole shillings leave, the
cents stay in savings). Failed: the hold is released, the money stays in savings, the
member is told. Duplicate results settle once; twice = once, also two triggers at once;
the ledger verified after each test (the harness). The ``manage.py year-end`` commands as
real processes."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import member_account_ids
from core.payments.mpesa.dividend_payouts import payout_key
from core.savings import year_end as ye
from core.savings.jobs import PayYearEndByMpesa
from db.models import Account, Hold, Member, StaffUser
from db.models_mpesa import B2CPayout, SimSwapEvent
from db.session import run_in_transaction
from integrations.africastalking.standin import StandinHandle as AtHandle
from integrations.mpesa.standin import StandinHandle
from tests.e2e.mpesa_harness import TOKEN, Env, post, serve, wait_for
from tests.workerprocs import run_manage
from workers.year_end import run_year_end_payouts

pytestmark = pytest.mark.slow
YEAR = 2001  # long over on any clock; the shares below are dated in it
KES = 100
THRESHOLD = 50_000 * KES


@pytest.fixture
def env(committed_pg: Engine, deps: CoreDeps, daraja: StandinHandle, at: AtHandle) -> Iterator[Env]:
    post(daraja.url + "/_reset", {})
    post(at.url + "/_reset", {})
    yield from serve(committed_pg, deps, daraja, at)


def staff(env: Env, role: str = "manager") -> Principal:
    name = f"{role}.{uuid4().hex[:6]}"
    with env.unit_of_work() as s:
        user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
        s.add(user)
        s.flush()
        return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def dated(env: Env, credit: int, cents: int) -> None:
    """Dr bank / Cr ``credit``, value-dated in the financial year."""
    with env.unit_of_work() as s:
        ledger.post_entry(
            s, kind=EntryKind.ADJUSTMENT_MANUAL,
            legs=[ledger.Leg(ledger.account_id_by_code(s, SystemAccount.BANK), cents),
                  ledger.Leg(credit, -cents)],
            idempotency_key=f"dated:{uuid4().hex}", now=env.deps.now(),
            value_date=date(YEAR, 1, 1),
        )  # fmt: skip


def shareholder(env: Env, msisdn: str, shares_kes: str, choice: str = "mpesa") -> Member:
    """An active member with share capital held all year and a standing payout choice."""
    m = env.member(msisdn)
    with env.unit_of_work() as s:
        shares = member_account_ids(s, m.id)["shares"]
    dated(env, shares, int(float(shares_kes) * KES))
    with env.unit_of_work() as s:
        ye.set_payout_choice(s, env.deps, staff(env), m.id, choice)
    return m


def posted_run(env: Env, dividend: str = "12") -> int:
    """Capital, then a run made, submitted and approved by two managers: posted."""
    with env.unit_of_work() as s:
        reserves = ledger.account_id_by_code(s, SystemAccount.RETAINED_EARNINGS)
    dated(env, reserves, 100_000_000 * KES)
    body = {"financial_year": YEAR, "dividend_rate_percent": dividend, "rebate_rate_percent": "0"}
    with env.unit_of_work() as s:
        run = ye.create_run(s, env.deps, staff(env), body)
        req = ye.submit_run(s, env.deps, staff(env), run.id, large_threshold_cents=THRESHOLD)
    with env.unit_of_work() as s:
        decided = approvals.decide(s, env.deps, staff(env), req.id, approve=True)
        assert decided.status == "approved", decided.result
        # Posting asks for the payouts once it commits (dropped here: the test runs them).
        assert PayYearEndByMpesa(run.id) in uow.deferred(s)
        return run.id


def payout_of(env: Env, run_id: int, member: Member) -> B2CPayout | None:
    with env.unit_of_work() as s:
        return s.scalar(
            select(B2CPayout).where(B2CPayout.idempotency_key == payout_key(run_id, member.id))
        )


def settled(env: Env, run_id: int, member: Member) -> B2CPayout:
    def done() -> B2CPayout | None:
        row = payout_of(env, run_id, member)
        return row if row is not None and row.status in ("succeeded", "failed") else None

    return wait_for(done, what="the B2C result")  # type: ignore[no-any-return]


def successful_b2c(env: Env, ocid: str) -> int:
    env.daraja.state.join_workers(timeout=30)
    with env.daraja.state.lock:
        return sum(
            1
            for t in env.daraja.state.txns.values()
            if t.kind == "b2c" and t.originator_id == ocid and t.result_code == 0
        )


def payouts(env: Env) -> int:
    return env.count(B2CPayout, B2CPayout.purpose == "year_end")


def test_paid_by_mpesa_in_whole_shillings_failed_stays_in_savings_savings_choice_untouched(
    env: Env,
) -> None:
    # 10,005 × 12% = 1,200.60, tax 5% = 60.03, net 1,140.57: KES 1,140 to M-Pesa.
    paid = shareholder(env, "+254712400001", "10005")
    failing = shareholder(env, "+254712340005", "5000")  # stand-in: 2040 unregistered
    saver = shareholder(env, "+254712400002", "5000", choice="savings")
    float_before = env.code_balance("1020")
    run_id = posted_run(env)
    # Posting credited every net to savings.
    assert env.balance(paid.id).balance_cents == 114_057
    assert env.balance(failing.id).balance_cents == 57_000  # 600 - 30
    assert env.balance(saver.id).balance_cents == 57_000

    report = run_year_end_payouts(env.ctx, run_id)
    assert report.members == 2 and report.outcomes == {"queued": 2}
    assert report.queued_cents == 114_000 + 57_000 and report.kept_cents == 57

    good = settled(env, run_id, paid)
    assert (good.status, good.amount_cents, good.fee_cents, good.msisdn) == (
        "succeeded", 114_000, 0, paid.msisdn,
    )  # fmt: skip
    assert env.row(Hold, good.hold_id).status == "posted"
    # The odd cents stay in savings; the shillings left through the disbursement float.
    assert (env.balance(paid.id).balance_cents, env.balance(paid.id).held_cents) == (57, 0)
    assert float_before - env.code_balance("1020") == 114_000
    [receipt] = env.sms(paid.id, "withdrawal_paid")
    assert (
        "KES 1,140 sent to M-Pesa" in receipt.body and f"M-Pesa ref {good.receipt}" in receipt.body
    )

    bad = settled(env, run_id, failing)
    assert (bad.status, bad.result_code) == ("failed", 2040)
    assert env.row(Hold, bad.hold_id).status == "released"
    assert (env.balance(failing.id).balance_cents, env.balance(failing.id).held_cents) == (
        57_000, 0,
    )  # fmt: skip
    [told] = env.sms(failing.id, "year_end_payout_failed")
    assert "dividend KES 570 not sent to M-Pesa" in told.body
    assert "in your savings: KES 570" in told.body and len(told.body) <= 160

    assert payout_of(env, run_id, saver) is None
    assert env.balance(saver.id).balance_cents == 57_000


def test_a_duplicated_result_callback_settles_once(env: Env) -> None:
    env.control(duplicate=3)
    m = shareholder(env, "+254712400003", "20000")  # 2,400 - 120 = 2,280
    run_id = posted_run(env)
    run_year_end_payouts(env.ctx, run_id)
    row = settled(env, run_id, m)
    env.daraja.state.join_workers(timeout=30)
    assert row.status == "succeeded" and successful_b2c(env, row.originator_conversation_id) == 1
    assert env.balance(m.id).balance_cents == 0
    assert len(env.sms(m.id, "withdrawal_paid")) == 1


def test_running_the_payouts_twice_pays_once(env: Env) -> None:
    m = shareholder(env, "+254712400014", "20000")
    run_id = posted_run(env)
    first = run_year_end_payouts(env.ctx, run_id)
    row = settled(env, run_id, m)
    again = run_year_end_payouts(env.ctx, run_id)
    assert row.status == "succeeded"
    assert first.outcomes == {"queued": 1} and again.outcomes == {"already_queued": 1}
    assert payouts(env) == 1 and successful_b2c(env, row.originator_conversation_id) == 1
    assert env.balance(m.id).balance_cents == 0


def test_two_triggers_at_once_queue_one_payout_per_member(env: Env) -> None:
    members = [shareholder(env, f"+25471241{n:04d}", "20000") for n in range(4)]
    run_id = posted_run(env)
    barrier = threading.Barrier(2)
    reports: list[object] = []
    errors: list[BaseException] = []

    def trigger() -> None:
        try:
            barrier.wait(timeout=10)
            reports.append(run_year_end_payouts(env.ctx, run_id))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(reports) == 2
    for m in members:
        row = settled(env, run_id, m)
        assert (
            row.status == "succeeded" and successful_b2c(env, row.originator_conversation_id) == 1
        )
        assert env.balance(m.id).balance_cents == 0
    assert payouts(env) == len(members)


def test_what_cannot_be_sent_stays_in_savings_and_the_member_is_told(env: Env) -> None:
    small = shareholder(env, "+254712400021", "500")  # 60 - 3 = 57: under the KES 100 minimum
    swapped = shareholder(env, "+254712400022", "20000")
    when = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    post(
        env.at.url + "/_control",
        {"number": swapped.msisdn, "swapped": True, "last_swap_date": when},
    )
    big = shareholder(env, "+254712400023", "2000000")  # 240,000 - 12,000 = 228,000
    asleep = shareholder(env, "+254712400024", "20000")
    run_id = posted_run(env)
    with env.unit_of_work() as s:  # dormant after posting (mark_dormant's one UPDATE)
        s.get_one(
            Account, member_account_ids(s, asleep.id)["savings"]
        ).dormant_since = env.deps.now()

    report = run_year_end_payouts(env.ctx, run_id)
    assert report.outcomes == {
        "below_minimum": 1, "recent_swap": 1, "queued": 1, "savings_dormant": 1,
    }  # fmt: skip
    assert payout_of(env, run_id, asleep) is None
    assert env.balance(asleep.id).available_cents == 228_000
    assert len(env.sms(asleep.id, "year_end_payout_kept")) == 1
    assert payout_of(env, run_id, small) is None and payout_of(env, run_id, swapped) is None
    assert env.balance(small.id).balance_cents == 5_700
    [kept] = env.sms(small.id, "year_end_payout_kept")
    assert "dividend KES 57 not sent to M-Pesa" in kept.body and "KES 57." in kept.body
    assert env.balance(swapped.id).available_cents == 228_000
    assert env.count(SimSwapEvent, SimSwapEvent.member_id == swapped.id) == 1
    # Above M-Pesa's per-transaction limit: the limit goes, the rest stays in savings.
    row = settled(env, run_id, big)
    assert row.amount_cents == env.ctx.policy.loan_payout_max_cents == 150_000 * KES
    assert env.balance(big.id).balance_cents == 78_000 * KES


def manage(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return run_manage(
        *args, drop=("MPESA_", "AT_", "DATABASE_", "REDIS_"),
        MPESA_BASE_URL=env.daraja.url, MPESA_CALLBACK_BASE_URL=env.url,
        MPESA_CALLBACK_TOKEN=TOKEN, AT_INSIGHTS_URL=env.at.url,
    )  # fmt: skip


def test_the_year_end_commands_as_an_operator_runs_them(env: Env) -> None:
    m = shareholder(env, "+254712400031", "20000")
    maker, checker = staff(env), staff(env)
    with env.unit_of_work() as s:
        reserves = ledger.account_id_by_code(s, SystemAccount.RETAINED_EARNINGS)
    dated(env, reserves, 100_000_000 * KES)

    made = manage(env, "year-end", "create", "--year", str(YEAR), "--dividend-rate", "12",
                  "--rebate-rate", "0", "--maker", maker.name)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("run ") and f"{YEAR} draft" in made.stdout
    run_id = int(made.stdout.split()[1].rstrip(":"))
    early = manage(env, "year-end", "payouts", "--run", str(run_id))
    assert early.returncode == 1 and "is draft: only a posted run" in early.stderr
    shown = manage(env, "year-end", "preview", "--run", str(run_id), "--members")
    assert shown.returncode == 0, shown.stderr
    assert f"member {m.id}: dividend 240000 rebate 0 tax 12000 net 228000 -> mpesa" in shown.stdout
    sent = manage(env, "year-end", "submit", "--run", str(run_id), "--maker", maker.name)
    assert sent.returncode == 0, sent.stderr
    request_id = int(sent.stdout.rsplit(maxsplit=1)[-1])
    with env.unit_of_work() as s:
        assert approvals.decide(s, env.deps, checker, request_id, approve=True).status == "approved"
    status = manage(env, "year-end", "status", "--run", str(run_id))
    assert "status=posted" in status.stdout

    paid = manage(env, "year-end", "payouts", "--run", str(run_id))
    assert paid.returncode == 0, paid.stderr
    assert "1 members by M-Pesa: queued 1" in paid.stdout
    row = settled(env, run_id, m)
    assert row.status == "succeeded" and env.balance(m.id).balance_cents == 0
    again = manage(env, "year-end", "payouts", "--run", str(run_id))
    assert "already_queued 1" in again.stdout and payouts(env) == 1


def test_posting_itself_pays_by_mpesa_once_it_has_committed(env: Env) -> None:
    """No one asks: the approval's commit hands ``PayYearEndByMpesa`` to the app's job queue
    (synchronous here), whose worker queues the payout, whose send reaches the stand-in."""
    m = shareholder(env, "+254712400041", "20000")
    with env.unit_of_work() as s:
        reserves = ledger.account_id_by_code(s, SystemAccount.RETAINED_EARNINGS)
    dated(env, reserves, 100_000_000 * KES)
    body = {"financial_year": YEAR, "dividend_rate_percent": "12", "rebate_rate_percent": "0"}
    with env.unit_of_work() as s:
        run = ye.create_run(s, env.deps, staff(env), body)
        req = ye.submit_run(s, env.deps, staff(env), run.id, large_threshold_cents=THRESHOLD)
        run_id = run.id
    checker = staff(env)

    def approve(s: Session) -> str:
        decided = approvals.decide(s, env.deps, checker, req.id, approve=True)
        assert payouts(env) == 0  # nothing is sent before the posting commits
        return decided.status

    assert run_in_transaction(env.runtime.session_factory, approve) == "approved"
    row = settled(env, run_id, m)
    assert row.status == "succeeded" and row.amount_cents == 228_000
    assert env.balance(m.id).balance_cents == 0
    [receipt] = env.sms(m.id, "withdrawal_paid")
    assert "KES 2,280 sent to M-Pesa" in receipt.body
