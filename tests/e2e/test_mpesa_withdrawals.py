"""Withdrawals end to end: hold, B2C through the Daraja stand-in, result over real HTTP,
SIM-swap guard through the Africa's Talking stand-in, crashes and reconciliation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from core.kernel.errors import MemberNotAllowed
from core.ledger import entries as ledger
from core.members import registration as members
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import LimitExceeded, SimSwapBlocked
from db.models import Hold
from db.models_mpesa import B2CPayout, SimSwapEvent
from tests.e2e.mpesa_harness import TOKEN, Env, post, wait_for
from tests.settings import PG_URL
from tests.workerprocs import run_manage
from workers.mpesa import run_reconcile, run_send_b2c

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
NOW = timedelta(0)


def withdraw(env: Env, member_id: int, kes: int, key: str = "") -> mpesa.WithdrawalRequested:
    with env.unit_of_work() as s:
        return mpesa.request_withdrawal(
            s,
            env.deps,
            member_id=member_id,
            amount_cents=kes * 100,
            policy=env.ctx.policy,
            sim_swap=env.ctx.sim_swap,
            idempotency_key=key or f"w-{member_id}-{kes}",
        )


def payout(env: Env, payout_id: int) -> B2CPayout:
    return env.row(B2CPayout, payout_id)  # type: ignore[no-any-return]


def final(env: Env, payout_id: int) -> B2CPayout | None:
    row = payout(env, payout_id)
    return row if row.status in ("succeeded", "failed") else None


def hold_status(env: Env, payout_id: int) -> str:
    return env.row(Hold, payout(env, payout_id).hold_id).status  # type: ignore[no-any-return]


def b2c_txns(env: Env, ocid: str) -> list[Any]:
    with env.daraja.state.lock:
        return [
            t
            for t in env.daraja.state.txns.values()
            if t.kind == "b2c" and t.originator_id == ocid and t.result_code == 0
        ]


def test_a_withdrawal_holds_then_posts_amount_and_fee_and_sends_the_reference(env: Env) -> None:
    m = env.member("+254712000201", savings_kes=10_000)
    fees_before, float_before = env.code_balance("4100"), env.code_balance("1020")
    with env.unit_of_work() as s:
        q = mpesa.quote_withdrawal(
            s, env.deps, member_id=m.id, amount_cents=100_000, policy=env.ctx.policy
        )
    assert (q.amount_cents, q.fee_cents, q.total_cents, q.msisdn) == (
        100_000,
        1_300,
        101_300,
        "+254712000201",
    )
    w = withdraw(env, m.id, 1_000)
    assert (w.total_cents, w.reference[0]) == (101_300, "W")
    assert env.balance(m.id).available_cents == 1_000_000 - 101_300  # held at once
    assert run_send_b2c(env.ctx, w.payout_id) in ("sent", "succeeded")
    row = wait_for(lambda: final(env, w.payout_id), what="the B2C result")
    assert row.status == "succeeded" and row.receipt
    assert env.balance(m.id).balance_cents == 1_000_000 - 101_300
    assert env.balance(m.id).held_cents == 0
    assert env.code_balance("4100") - fees_before == 1_300
    assert float_before - env.code_balance("1020") == 100_000
    [sms] = env.sms(m.id, "withdrawal_paid")
    assert w.reference in sms.body and row.receipt in sms.body and len(sms.body) <= 160
    # The same request again (a repeated USSD confirm) is the same payout, not a second one.
    assert withdraw(env, m.id, 1_000).payout_id == w.payout_id
    assert run_send_b2c(env.ctx, w.payout_id) == "skipped"
    assert len(b2c_txns(env, row.originator_conversation_id)) == 1


def test_a_failed_payout_releases_the_hold_and_tells_the_member(env: Env) -> None:
    m = env.member("+254712340005", savings_kes=5_000)  # stand-in: 2040 unregistered
    w = withdraw(env, m.id, 500)
    run_send_b2c(env.ctx, w.payout_id)
    row = wait_for(lambda: final(env, w.payout_id))
    assert row.status == "failed" and row.result_code == 2040
    assert hold_status(env, w.payout_id) == "released"
    assert env.balance(m.id).available_cents == 500_000
    [sms] = env.sms(m.id, "withdrawal_failed")
    assert w.reference in sms.body and "KES 5,000" in sms.body


def test_a_result_that_arrives_before_our_own_response_settles_once(env: Env) -> None:
    env.control(result_before_response=True, duplicate=3)
    m = env.member("+254712000202", savings_kes=3_000)
    w = withdraw(env, m.id, 1_000)
    assert run_send_b2c(env.ctx, w.payout_id) == "sent"
    row = payout(env, w.payout_id)
    assert row.status == "succeeded" and row.conversation_id
    assert env.balance(m.id).balance_cents == 300_000 - 101_300
    assert len(env.sms(m.id, "withdrawal_paid")) == 1


def test_a_queue_timeout_is_not_a_failure_the_status_query_settles_it(env: Env) -> None:
    env.control(never=True)
    m = env.member("+254712000203", savings_kes=3_000)
    w = withdraw(env, m.id, 200)
    run_send_b2c(env.ctx, w.payout_id)
    row = payout(env, w.payout_id)
    timeout_body = {
        "Result": {
            "ResultType": 0,
            "ResultCode": 1,
            "ResultDesc": "The service request has timed out.",
            "OriginatorConversationID": row.originator_conversation_id,
            "ConversationID": row.conversation_id,
            "TransactionID": "",
        }
    }
    assert env.callback("/mpesa/b2c/timeout", timeout_body)[0] == 200
    assert payout(env, w.payout_id).status == "unknown"
    assert hold_status(env, w.payout_id) == "pending"  # nothing released on a timeout
    assert env.balance(m.id).available_cents == 300_000 - w.total_cents
    summary = run_reconcile(env.ctx, older_than=NOW)
    assert summary.b2c_queried == 1
    done = wait_for(lambda: final(env, w.payout_id), what="the status result")
    assert done.status == "succeeded" and done.receipt
    assert env.balance(m.id).balance_cents == 300_000 - w.total_cents


def test_a_worker_lost_before_the_call_leaves_the_money_held_and_reconciliation_pays_once(
    env: Env,
) -> None:
    m = env.member("+254712000204", savings_kes=2_000)
    w = withdraw(env, m.id, 500)  # committed hold; the job never ran
    assert payout(env, w.payout_id).status == "requested"
    assert env.balance(m.id).held_cents == w.total_cents
    summary = run_reconcile(env.ctx, older_than=NOW)
    assert summary.b2c_sent == {"sent": 1} or summary.b2c_sent == {"succeeded": 1}
    row = wait_for(lambda: final(env, w.payout_id))
    assert row.status == "succeeded"
    assert len(b2c_txns(env, row.originator_conversation_id)) == 1
    assert env.balance(m.id).balance_cents == 200_000 - w.total_cents


def test_a_worker_killed_during_the_b2c_call_is_recovered_and_never_pays_twice(
    env: Env, tmp_path: Path
) -> None:
    env.control(never=True, hang_next=[1.5])
    m = env.member("+254712000205", savings_kes=4_000)
    w = withdraw(env, m.id, 1_000)
    cert = tmp_path / "daraja.pem"
    cert.write_bytes(env.daraja.certificate_pem)
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MPESA_", "AT_"))},
        "SACCO_ENV": "test",
        "DATABASE_URL": PG_URL,
        "MPESA_BASE_URL": env.daraja.url,
        "MPESA_CALLBACK_BASE_URL": env.url,
        "MPESA_CALLBACK_TOKEN": TOKEN,
        "MPESA_CERTIFICATE_PATH": str(cert),
        "AT_INSIGHTS_URL": env.at.url,
        "PYTHONPATH": str(ROOT),
    }
    code = f"from workers.mpesa import send_b2c; send_b2c({w.payout_id})"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=child_env)
    try:
        wait_for(
            lambda: any("b2c/v3" in r["path"] for r in env.log()["requests"]),
            what="the worker's B2C call",
        )
        assert payout(env, w.payout_id).status == "sending"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    ocid = payout(env, w.payout_id).originator_conversation_id
    wait_for(lambda: b2c_txns(env, ocid), what="Daraja to pay the killed worker's request")
    assert hold_status(env, w.payout_id) == "pending"  # held, not lost, not released
    # The request may have reached Daraja: it is asked about, never sent again (that
    # Daraja refuses a repeated OriginatorConversationID is not confirmed).
    first = run_reconcile(env.ctx, older_than=NOW)
    assert (first.b2c_stuck, first.b2c_sent, first.b2c_queried) == (1, {}, 1)
    row = wait_for(lambda: final(env, w.payout_id), what="the status result")
    assert row.status == "succeeded"
    assert len(b2c_txns(env, ocid)) == 1  # paid exactly once
    assert len([r for r in env.log()["requests"] if "b2c/v3" in r["path"]]) == 1
    assert env.balance(m.id).balance_cents == 400_000 - w.total_cents
    assert env.balance(m.id).held_cents == 0


def test_a_recent_sim_swap_refuses_the_withdrawal_and_staff_see_it(env: Env) -> None:
    m = env.member("+254712000206", savings_kes=5_000)
    swapped = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    post(env.at.url + "/_control", {"number": m.msisdn, "swapped": True, "last_swap_date": swapped})
    with pytest.raises(SimSwapBlocked) as err:
        withdraw(env, m.id, 500)
    assert err.value.reason == "recent_swap"
    assert env.balance(m.id).held_cents == 0 and env.count(B2CPayout) == 0
    with env.unit_of_work() as s:
        [event] = s.scalars(select(SimSwapEvent))
    assert (event.member_id, event.outcome, event.decision) == (m.id, "recent_swap", "refused")
    [sms] = env.sms(m.id, "withdrawal_blocked_sim_swap")
    assert "7 days" in sms.body and len(sms.body) <= 160


def test_an_old_sim_swap_does_not_block(env: Env) -> None:
    m = env.member("+254712000207", savings_kes=5_000)
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    post(env.at.url + "/_control", {"number": m.msisdn, "swapped": True, "last_swap_date": old})
    w = withdraw(env, m.id, 500)
    assert w.created and env.count(SimSwapEvent) == 0


def test_a_failed_sim_swap_check_follows_the_setting(env: Env) -> None:
    small, large = (
        env.member("+254712000208", savings_kes=9_000),
        env.member("+254712000209", savings_kes=9_000, name="John Doe"),
    )
    post(env.at.url + "/_control", {"fail_next": 2})
    allowed = withdraw(env, small.id, 500)  # default: allowed up to KES 1,000
    assert allowed.created
    with pytest.raises(SimSwapBlocked) as err:
        withdraw(env, large.id, 5_000)
    assert err.value.reason == "check_failed"
    with env.unit_of_work() as s:
        events = {(e.member_id, e.outcome, e.decision) for e in s.scalars(select(SimSwapEvent))}
    assert events == {(small.id, "check_failed", "allowed"), (large.id, "check_failed", "refused")}
    assert env.balance(large.id).held_cents == 0


def test_withdrawal_limits_and_who_may_withdraw(env: Env) -> None:
    m = env.member("+254712000210", savings_kes=200_000)
    pending = env.member("+254712000211", status="pending_kyc", savings_kes=1_000)
    policy = env.ctx.policy
    cases = [(50, "below_minimum"), (70_001, "above_maximum"), (150.5, "not_whole")]
    with env.unit_of_work() as s:
        for kes, reason in cases:
            with pytest.raises(LimitExceeded) as err:
                mpesa.quote_withdrawal(
                    s, env.deps, member_id=m.id, amount_cents=int(kes * 100), policy=policy
                )
            assert err.value.reason == reason
        with pytest.raises(MemberNotAllowed):
            mpesa.quote_withdrawal(
                s, env.deps, member_id=pending.id, amount_cents=10_000, policy=policy
            )
    withdraw(env, m.id, 70_000, key="a")
    withdraw(env, m.id, 70_000, key="b")
    with env.unit_of_work() as s, pytest.raises(LimitExceeded) as err:
        mpesa.quote_withdrawal(s, env.deps, member_id=m.id, amount_cents=20_000_00, policy=policy)
    assert err.value.reason == "daily_limit" and err.value.limit_cents == 10_000_00
    poor = env.member("+254712000212", savings_kes=1_000)
    with env.unit_of_work() as s, pytest.raises(LimitExceeded) as err:
        mpesa.quote_withdrawal(s, env.deps, member_id=poor.id, amount_cents=100_000, policy=policy)
    assert err.value.reason == "insufficient"
    with env.unit_of_work() as s:
        assert ledger.get_balance(s, members.member_account_ids(s, m.id)["savings"]).held_cents > 0


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    return run_manage(*args, drop=("MPESA_", "AT_"))


def test_statement_import_reports_missing_receipts_and_differing_amounts(
    env: Env, tmp_path: Path
) -> None:
    m = env.member("+254712000213", savings_kes=2_000)
    post(
        env.daraja.url + "/_simulate/c2b",
        {"amount": "300.00", "bill_ref": m.member_number, "msisdn": m.msisdn},
    )
    w = withdraw(env, m.id, 500)
    run_send_b2c(env.ctx, w.payout_id)
    wait_for(lambda: final(env, w.payout_id))
    env.daraja.state.join_workers()
    with requests.get(env.daraja.url + "/_statement.csv", timeout=5) as r:
        csv_text = r.text
    good = tmp_path / "good.csv"
    good.write_text(csv_text)
    result = manage("reconcile-statement", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 matched" in result.stdout and "agree" in result.stdout
    paid = payout(env, w.payout_id)
    lines = csv_text.splitlines()
    tampered = [ln.replace("300.00", "310.00") if "Pay Bill" in ln else ln for ln in lines]
    extra = lines[-1].replace(str(paid.receipt), "QZZ1234567")
    (tmp_path / "bad.csv").write_text("\n".join([*tampered, extra]) + "\n")
    result = manage("reconcile-statement", str(tmp_path / "bad.csv"))
    assert result.returncode == 1
    assert "MISSING IN LEDGER     QZZ1234567" in result.stdout
    assert "AMOUNT DIFFERS" in result.stdout and "KES 310" in result.stdout


def test_staff_list_suspense_from_the_command_line_but_assign_it_only_through_the_api(
    env: Env,
) -> None:
    """Moving money out of suspense is maker-checker, signed in and audited: the command
    line, where anyone could claim any ``--staff`` name, moves nothing and says where to go."""
    body = {
        "TransactionType": "Pay Bill",
        "TransID": "RKL5SUSP01",
        "TransTime": "20261127121325",
        "TransAmount": "120.00",
        "BusinessShortCode": "174379",
        "BillRefNumber": "99999X",
        "MSISDN": "2547 ***** 126",
        "FirstName": "PETER",
    }
    env.callback("/mpesa/c2b/confirmation", body)
    listed = manage("suspense-list")
    assert listed.returncode == 0 and "RKL5SUSP01" in listed.stdout and "99999X" in listed.stdout
    item_id = listed.stdout.split()[0]
    m = env.member("+254712000214")
    refused = manage("suspense-assign", item_id, str(m.member_number), "--staff", "clerk7")
    assert refused.returncode == 2
    assert "POST /api/v1/suspense/reassignments" in refused.stderr
    assert "Nothing was moved" in refused.stderr
    assert env.balance(m.id).balance_cents == 0
    assert "1 open item(s)" in manage("suspense-list").stdout


def test_concurrent_withdrawals_never_hold_more_than_the_balance_and_one_key_is_one_payout(
    env: Env,
) -> None:
    import threading

    m = env.member("+254712000215", savings_kes=10_000)
    outcomes: list[object] = []
    barrier = threading.Barrier(10)

    def attempt(key: str) -> None:
        barrier.wait()
        try:
            outcomes.append(withdraw(env, m.id, 3_000, key=key))
        except LimitExceeded as exc:
            outcomes.append(exc.reason)

    keys = [f"k{i}" for i in range(5)] + ["same"] * 5
    threads = [threading.Thread(target=attempt, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [o for o in outcomes if isinstance(o, mpesa.WithdrawalRequested)]
    payouts = {w.payout_id for w in made}
    assert len(payouts) == 3 == env.count(B2CPayout)  # 3 x (3,000 + 53) fit in 10,000
    assert set(outcomes) - set(made) <= {"insufficient"}
    assert env.balance(m.id).held_cents == 3 * 305_300 <= 1_000_000
