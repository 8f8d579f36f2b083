"""Faults lose nothing: a Jepsen-style bank test (issue 17, part 5; docs/operators/faults.md).

The whole deployment runs as processes on loopback: gunicorn (deploy/gunicorn.conf.py, two
workers x four threads), two ``manage.py worker`` processes and ``manage.py scheduler``
(kept running by a supervisor, as systemd's ``Restart=always`` does), a throw-away
PostgreSQL cluster and a throw-away Redis server (tests/fault/stack.py), and both gateway
stand-ins in this process: Daraja (STK push, B2C, status queries, its callbacks over HTTP)
and Africa's Talking (SMS, delivery reports, the SIM-swap check).

Clients, for ``LOAD_S`` seconds: paybill senders post Daraja's C2B confirmations (a fifth of
them repeats of a payment already sent, and every payment not acknowledged is sent again,
as Safaricom may), and handsets walk USSD sessions that deposit by STK push and withdraw to
M-Pesa by B2C. Meanwhile a nemesis, on a fixed schedule, SIGKILLs gunicorn workers and RQ
workers, restarts Redis (empty: no persistence) and crashes and restarts PostgreSQL.

Then the faults stop and the system heals as an operator's runbook says: the paybill's
unacknowledged payments are sent again until acknowledged, ``manage.py mpesa-reconcile
--older-than-minutes 0`` runs until no request is left open, and the outbox drains. The
checks are invariants, never timings:

* every payment Daraja was told acknowledged is credited exactly once (one C2B row and one
  journal entry per TransID); every STK push the stand-in completed is credited once;
* every payout the stand-in paid belongs to one payout row marked succeeded, no row was
  paid twice, and every hold is posted or released;
* the members' balances add up to what they held before plus money in minus money out (the
  stand-in's own record of what it collected and paid) minus the withdrawal fees; the
  collections float rose by the money in, the disbursement float fell by the money out,
  fee income rose by the fees; nothing went to suspense; no balance is negative;
* every queued SMS is delivered, visibly failed, or handed to the gateway (which holds it);
  none is pending or stuck in sending;
* ``manage.py verify-ledger`` is green and ``manage.py backlog`` shows nothing waiting;
* no worker or scheduler exited unless the harness killed it (they outlive a Redis restart
  and a PostgreSQL restart).

The run prints what it did and what it checked (docs/operators/faults.md quotes it)."""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from config import load_settings
from core.ledger import entries as ledger
from core.members import registration as members
from core.savings import accounts as savings
from db.models import Account, Hold, JournalEntry, OutboxMessage
from db.models_mpesa import B2CPayout, C2BPayment, MpesaCallback, StkRequest
from integrations.africastalking.standin import start_standin as start_at
from integrations.mpesa.standin import start_standin as start_daraja
from runtime import Runtime, build_runtime
from tests.e2e.gateway import GatewayPhone
from tests.fault.stack import (
    ROOT,
    Gunicorn,
    Postgres,
    RedisServer,
    Supervisor,
    child_env,
    free_port,
    missing_tools,
)

pytestmark = pytest.mark.slow

MEMBERS = 24
SEED_KES = 20_000
PIN = "4826"
LOAD_S = 36.0
HEAL_S = 120.0  # an upper bound for healing; never asserted as a duration
PAYBILL_SENDERS = 3
HANDSETS = 4
DUPLICATE_SHARE = 0.2
# (second of the run, fault): two rounds of every kind of fault, none overlapping.
NEMESIS: list[tuple[float, str]] = [
    (3, "kill gunicorn worker"),
    (6, "kill rq worker"),
    (9, "restart redis"),
    (13, "restart postgresql"),
    (18, "kill rq worker"),
    (20, "kill gunicorn worker"),
    (23, "restart redis"),
    (27, "restart postgresql"),
    (31, "kill gunicorn worker"),
    (32, "kill rq worker"),
]
TOKENS = {k: secrets.token_urlsafe(24) for k in ("ussd", "sms", "mpesa")}


def msisdn(n: int) -> str:
    # Last four digits 0010 and up: none of the stand-ins' failure numbers (0001-0005).
    return f"+2547131{10 + n:05d}"


@dataclass
class Tally:
    """What the clients and the nemesis did (printed), and what they were told."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    did: Counter[str] = field(default_factory=Counter)
    sent: dict[str, tuple[str, int]] = field(default_factory=dict)  # TransID → (bill, cents)
    acked: set[str] = field(default_factory=set)
    faults: list[str] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.did[what] += n


@dataclass
class World:
    work: Path
    pg: Postgres
    redis: RedisServer
    env: dict[str, str]
    web: Gunicorn
    procs: Supervisor
    daraja: Any
    at: Any
    runtime: Runtime
    numbers: dict[int, str]  # member id → member number
    tally: Tally = field(default_factory=Tally)


def manage(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=child_env(world.env), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def seed(runtime: Runtime) -> dict[int, str]:
    numbers = {}
    for n in range(MEMBERS):
        with runtime.unit_of_work() as s:
            m = members.register_member(
                s, runtime.deps, full_name=f"Mteja Nambari{chr(65 + n % 26)}",
                msisdn=msisdn(n), national_id=str(31_000_000 + n), consent=True, pin=PIN,
            )  # fmt: skip
            members.set_status(s, m.id, "active")
            savings.credit_member(
                s,
                runtime.deps,
                savings.Credit(
                    member_id=m.id, target="savings", amount_cents=SEED_KES * 100,
                    source=savings.CreditSource.CASH, idempotency_key=f"fault-seed-{n}",
                    business_key=f"deposit_received:fault-seed-{n}",
                ),
            )  # fmt: skip
            numbers[m.id] = str(m.member_number)
            s.commit()
    return numbers


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"the fault test needs {', '.join(missing)} (PostgreSQL 15 server, Redis)")
    work = Path(tempfile.mkdtemp(prefix="faults-", dir="/tmp"))  # short: socket paths
    pg = Postgres(work)
    redis = RedisServer(work)
    daraja = start_daraja(port=0, delay=0.3)
    at = start_at(port=0, delivery_delay=0.1)
    cert = work / "daraja.pem"
    cert.write_bytes(daraja.certificate_pem)
    port = free_port()
    env = {
        "SACCO_ENV": "test",
        "DATABASE_URL": pg.url,
        "REDIS_URL": redis.url,
        "MPESA_BASE_URL": daraja.url,
        "MPESA_CALLBACK_BASE_URL": f"http://127.0.0.1:{port}",
        "MPESA_CALLBACK_TOKEN": TOKENS["mpesa"],
        "MPESA_CERTIFICATE_PATH": str(cert),
        "AT_BASE_URL": at.url,
        "AT_INSIGHTS_URL": at.url,
        "USSD_CALLBACK_TOKEN": TOKENS["ussd"],
        "SMS_CALLBACK_TOKEN": TOKENS["sms"],
        "USSD_RATE_LIMIT": "100000/minute",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "LOG_LEVEL": "WARNING",
        # Short clocks, so a killed worker's message or a lost job costs seconds here.
        "OUTBOX_SWEEP_INTERVAL_S": "1",
        "OUTBOX_CLAIM_TIMEOUT_S": "8",
        "OUTBOX_LOST_JOB_AFTER_S": "3",
        "OUTBOX_BACKOFF_BASE_S": "1",
        "OUTBOX_BACKOFF_MAX_S": "4",
        "MPESA_RECONCILE_INTERVAL_S": "5",
        "AT_SMS_TIMEOUT_S": "10",
        "MPESA_TIMEOUT_SECONDS": "10",
    }
    runtime = None
    web = procs = None
    web_log = (work / "gunicorn.log").open("ab")
    try:
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate"], cwd=ROOT, env=child_env(env),
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        runtime = build_runtime(
            load_settings(sacco_env="test", database_url=pg.url), dispatch=False
        )
        numbers = seed(runtime)
        web = Gunicorn(env, port, web_log)
        at.state.delivery_callback = f"{web.base}/sms/delivery?token={TOKENS['sms']}"
        procs = Supervisor(env, work)
        procs.add("worker-1", "worker", "--name", "fault-1")
        procs.add("worker-2", "worker", "--name", "fault-2")
        procs.add("scheduler", "scheduler")
        procs.start()
        world = World(work, pg, redis, env, web, procs, daraja, at, runtime, numbers)
        registered = manage(world, "mpesa-register-urls")
        assert registered.returncode == 0, registered.stdout + registered.stderr
        yield world
    finally:
        if procs is not None:
            procs.stop()
        if web is not None:
            web.stop()
        web_log.close()
        daraja.stop()
        at.stop()
        if runtime is not None:
            runtime.engine.dispose()
        redis.stop()
        pg.stop("immediate")
        subprocess.run(["rm", "-rf", str(work)], check=False)


# ---------------------------------------------------------------- clients


def confirmation(trans_id: str, bill_ref: str, cents: int) -> dict[str, str]:
    return {
        "TransactionType": "Pay Bill", "TransID": trans_id,
        "TransTime": time.strftime("%Y%m%d%H%M%S"), "TransAmount": f"{cents // 100}.00",
        "BusinessShortCode": "174379", "BillRefNumber": bill_ref, "InvoiceNumber": "",
        "OrgAccountBalance": "", "ThirdPartyTransID": "", "MSISDN": "2547 ***** 126",
        "FirstName": "FAULT", "MiddleName": "", "LastName": "",
    }  # fmt: skip


def post_confirmation(http: requests.Session, world: World, trans_id: str) -> bool:
    bill_ref, cents = world.tally.sent[trans_id]
    url = f"{world.web.base}/hooks/mobile/c2b/confirmation?token={TOKENS['mpesa']}"
    try:
        with http.post(url, json=confirmation(trans_id, bill_ref, cents), timeout=15) as r:
            ok = r.status_code == 200 and r.json().get("ResultCode") == 0
    except (requests.RequestException, ValueError):
        ok = False
    world.tally.count("paybill confirmations posted")
    if ok:
        with world.tally.lock:
            world.tally.acked.add(trans_id)
    else:
        world.tally.count("paybill confirmations not acknowledged")
    return ok


def paybill(world: World, n: int, stop: threading.Event) -> None:
    rng = random.Random(n)
    mine: list[str] = []
    with requests.Session() as http:
        while not stop.is_set():
            if mine and rng.random() < DUPLICATE_SHARE:
                trans_id = rng.choice(mine)  # Safaricom's duplicate
                world.tally.count("paybill duplicates sent")
            else:
                trans_id = f"FLT{n}X{len(mine):06d}"
                bill = rng.choice(list(world.numbers.values()))
                # 1,000-3,000 KES: never an STK push's amount (no twin parked in suspense).
                with world.tally.lock:
                    world.tally.sent[trans_id] = (bill, rng.randint(1_000, 3_000) * 100)
                mine.append(trans_id)
            post_confirmation(http, world, trans_id)
            stop.wait(0.05)


def session(phone: GatewayPhone, steps: list[tuple[str, str]]) -> bool:
    """Dial, then type each input while the screen shows what precedes it; True when the
    last screen contains what the final step expects."""
    screen = phone.dial()
    if "left off" in screen:  # an interrupted session's resume offer: start again
        screen = phone.send("2")
    for typed, expect in steps:
        if phone.ended or expect == "":
            return False
        screen = phone.send(typed)
        if expect not in screen:
            phone.hang_up()
            return False
    return True


def handset(world: World, n: int, stop: threading.Event) -> None:
    rng = random.Random(100 + n)
    mine = [(mid, msisdn(i)) for i, mid in enumerate(sorted(world.numbers)) if i % HANDSETS == n]
    url = f"/ussd?token={TOKENS['ussd']}"
    with requests.Session() as http:
        turn = 0
        while not stop.is_set():
            _member_id, phone_number = mine[turn % len(mine)]
            phone = GatewayPhone(http, world.web.base, phone_number, path=url)
            if turn % 2 == 0:
                kes = rng.randint(50, 500)  # an STK deposit (never a paybill amount)
                steps = [("5", "Enter amount"), (str(kes), "Deposit to"), ("1", "Confirm"),
                         ("1", "PIN"), (PIN, "Approve the M-Pesa prompt")]  # fmt: skip
                kind = "deposit"
            else:
                kes = rng.randint(100, 1_500)
                steps = [("6", "PIN"), (PIN, "Enter amount"), (str(kes), "Confirm"),
                         ("1", "on its way")]  # fmt: skip
                kind = "withdrawal"
            try:
                done = session(phone, steps)
            except (requests.RequestException, AssertionError, ValueError):
                done = False
            world.tally.count(f"USSD {kind} sessions {'completed' if done else 'broken'}")
            turn += 1
            stop.wait(0.1)


def nemesis(world: World, started: float, stop: threading.Event) -> None:
    for k, (at_s, fault) in enumerate(NEMESIS):
        if stop.wait(max(0.0, started + at_s - time.monotonic())):
            return
        if fault == "kill gunicorn worker":
            pid = world.web.kill_a_worker(k)
            note = f"SIGKILL gunicorn worker {pid}"
        elif fault == "kill rq worker":
            name = f"worker-{1 + k % 2}"
            world.procs.kill(name)
            note = f"SIGKILL RQ {name}"
        elif fault == "restart redis":
            world.redis.restart(down_s=1.0)
            note = "Redis restarted (empty: queues and sessions lost)"
        else:
            world.pg.restart(down_s=1.5)
            note = "PostgreSQL crashed (immediate) and restarted"
        world.tally.faults.append(f"{time.monotonic() - started:5.1f}s {note}")


# ---------------------------------------------------------------- healing and reading


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HEAL_S
    while not check():
        assert time.monotonic() < deadline, f"did not heal: {what}"
        time.sleep(0.5)


def open_work(world: World) -> dict[str, int]:
    """What is still open: payment requests, callbacks not applied, messages not final."""
    with world.runtime.session() as s:

        def n(model: Any, *where: Any) -> int:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        return {
            "stk": n(StkRequest, StkRequest.status.not_in(("succeeded", "failed"))),
            "b2c": n(B2CPayout, B2CPayout.status.not_in(("succeeded", "failed"))),
            "callbacks": n(MpesaCallback, MpesaCallback.status.in_(("received", "error"))),
            "holds": n(Hold, Hold.status == "pending"),
            "outbox": n(OutboxMessage, OutboxMessage.status.in_(("pending", "sending"))),
        }


def heal(world: World) -> int:
    """The runbook: resend what the paybill never had acknowledged, reconcile until no
    request is open, let the outbox drain. Returns how many reconcile runs it took."""
    world.runtime.engine.dispose()  # this process's pool still holds the crashed server's
    with requests.Session() as http:
        for trans_id in sorted(set(world.tally.sent) - world.tally.acked):
            wait_until(lambda t=trans_id: post_confirmation(http, world, t), f"ack of {trans_id}")  # type: ignore[misc]
    runs = 0

    def settled() -> bool:
        nonlocal runs
        world.daraja.state.join_workers(timeout=5)
        left = open_work(world)
        if left["stk"] or left["b2c"] or left["callbacks"] or left["holds"]:
            done = manage(world, "mpesa-reconcile", "--older-than-minutes", "0")
            assert done.returncode == 0, done.stdout + done.stderr
            runs += 1
            return False
        return left["outbox"] == 0

    wait_until(settled, "open M-Pesa requests and outbox messages")
    return runs


def member_total(s: Any) -> int:
    return int(
        s.scalar(select(func.coalesce(func.sum(Account.balance_cents), 0)).where(
            Account.member_id.is_not(None))) or 0
    )  # fmt: skip


def code_balance(s: Any, code: str) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


# ---------------------------------------------------------------- the test


def test_faults_lose_no_money_and_no_message(world: World) -> None:
    t0 = time.monotonic()
    with world.runtime.session() as s:
        before = {
            "members": member_total(s),
            "1010": code_balance(s, "1010"),
            "1020": code_balance(s, "1020"),
            "4100": code_balance(s, "4100"),
            "2200": code_balance(s, "2200"),
        }
    stop, nemesis_stop = threading.Event(), threading.Event()
    started = time.monotonic()
    threads = [
        *(threading.Thread(target=paybill, args=(world, n, stop)) for n in range(PAYBILL_SENDERS)),
        *(threading.Thread(target=handset, args=(world, n, stop)) for n in range(HANDSETS)),
        threading.Thread(target=nemesis, args=(world, started, nemesis_stop)),
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(LOAD_S)
    finally:
        stop.set()
        nemesis_stop.set()
        for t in threads:
            t.join(timeout=60)
    load_s = time.monotonic() - started
    runs = heal(world)
    heal_s = time.monotonic() - started - load_s
    tally = world.tally

    # ---- what the gateways' own books say
    with world.daraja.state.lock:
        txns = list(world.daraja.state.txns.values())
    stk_paid = [t for t in txns if t.kind == "stk" and t.result_code == 0]
    b2c_paid = [t for t in txns if t.kind == "b2c" and t.result_code == 0]
    c2b_in = sum(cents for _bill, cents in tally.sent.values())
    stk_in = sum(t.amount_cents for t in stk_paid)
    b2c_out = sum(t.amount_cents for t in b2c_paid)
    with world.at.state.lock:
        gateway_ids = {str(m["id"]) for m in world.at.state.messages}
    checks: list[str] = []

    with world.runtime.session() as s:
        # Every acknowledged paybill payment credited exactly once.
        assert tally.acked == set(tally.sent), "a payment was never acknowledged"
        rows: dict[str, str] = {
            str(t): str(st) for t, st in s.execute(select(C2BPayment.trans_id, C2BPayment.status))
        }
        assert set(rows) == set(tally.sent) and set(rows.values()) == {"credited"}
        keys = Counter(
            s.scalars(select(JournalEntry.idempotency_key).where(
                JournalEntry.idempotency_key.like("mpesa:receipt:%")))
        )  # fmt: skip
        assert all(keys[f"mpesa:receipt:{t}"] == 1 for t in tally.sent)
        checks.append(f"{len(tally.sent)} paybill payments acknowledged, each credited once "
                      f"(one C2B row, one journal entry each)")  # fmt: skip
        # Every STK push the stand-in completed credited once, nothing it did not complete.
        stk = s.execute(select(StkRequest.receipt, StkRequest.paid_cents).where(
            StkRequest.status == "succeeded")).all()  # fmt: skip
        # Compared as multisets: a push marked succeeded without a receipt (None) must fail
        # this assertion with both sides shown, not crash the sort.
        assert Counter((r, c) for r, c in stk) == Counter(
            (t.receipt, t.amount_cents) for t in stk_paid
        )
        assert all(keys[f"mpesa:receipt:{t.receipt}"] == 1 for t in stk_paid)
        checks.append(f"{len(stk_paid)} STK pushes paid at the stand-in, each credited once")
        # Every payout paid at most once, and exactly the rows marked succeeded.
        payouts = s.execute(select(B2CPayout.originator_conversation_id, B2CPayout.status,
                                   B2CPayout.amount_cents, B2CPayout.fee_cents)).all()  # fmt: skip
        by_ocid = {o: (st, a, f) for o, st, a, f in payouts}
        paid_ocids = Counter(t.originator_id for t in b2c_paid)
        assert all(n == 1 for n in paid_ocids.values()), "a payout was paid twice"
        assert all(by_ocid[o][0] == "succeeded" for o in paid_ocids), "paid but not posted"
        succeeded = {o for o, (st, _a, _f) in by_ocid.items() if st == "succeeded"}
        assert succeeded == set(paid_ocids), "marked paid but never paid"
        fees = sum(f for o, (_st, _a, f) in by_ocid.items() if o in succeeded)
        assert s.scalar(select(func.count()).select_from(Hold).where(Hold.status == "pending")) == 0
        checks.append(f"{len(payouts)} payouts: {len(b2c_paid)} paid once each at the stand-in "
                      f"and posted, the rest failed and released; no hold left pending")  # fmt: skip
        # The sums.
        after = {
            "members": member_total(s), "1010": code_balance(s, "1010"),
            "1020": code_balance(s, "1020"), "4100": code_balance(s, "4100"),
            "2200": code_balance(s, "2200"),
        }  # fmt: skip
        money_in, money_out = c2b_in + stk_in, b2c_out
        assert after["members"] - before["members"] == money_in - money_out - fees
        assert after["1010"] - before["1010"] == money_in
        assert before["1020"] - after["1020"] == money_out
        assert after["4100"] - before["4100"] == fees
        assert after["2200"] == before["2200"], "money parked in suspense"
        checks.append(
            f"members' balances moved by {(money_in - money_out - fees) / 100:,.2f} KES = money in "
            f"{money_in / 100:,.2f} - money out {money_out / 100:,.2f} - fees {fees / 100:,.2f}; "
            "floats and fee income agree; suspense untouched"
        )
        negative = s.scalar(select(func.count()).select_from(Account).where(
            Account.member_id.is_not(None), Account.balance_cents < 0))  # fmt: skip
        assert negative == 0
        checks.append("no member balance negative")
        # Every queued SMS delivered, visibly failed, or held by the gateway.
        outbox = s.execute(select(OutboxMessage.status, OutboxMessage.provider_message_id,
                                  OutboxMessage.last_error)).all()  # fmt: skip
        statuses = Counter(st for st, _p, _e in outbox)
        assert set(statuses) <= {"delivered", "sent", "failed"}, statuses
        assert all(p in gateway_ids for st, p, _e in outbox if st in ("delivered", "sent"))
        assert all(e for st, _p, e in outbox if st == "failed")
        checks.append(f"{len(outbox)} SMS queued: {dict(sorted(statuses.items()))}; every "
                      "delivered or sent one is at the gateway, every failed one says why")  # fmt: skip
    ledger_run = manage(world, "verify-ledger")
    assert ledger_run.returncode == 0 and "ledger OK" in ledger_run.stdout, ledger_run.stdout
    checks.append(ledger_run.stdout.strip().splitlines()[-1])
    backlog = manage(world, "backlog", "--alert-after-minutes", "0")
    assert backlog.returncode == 0, backlog.stdout + backlog.stderr
    checks.append("manage.py backlog: nothing waiting")
    assert world.procs.exits == [], f"processes quit on their own: {world.procs.exits}"
    checks.append(f"no worker or scheduler quit on its own ({world.procs.restarts} restarts, "
                  "each after a SIGKILL)")  # fmt: skip

    print()
    print(f"fault test: {MEMBERS} members, {PAYBILL_SENDERS} paybill senders, {HANDSETS} "
          f"handsets, {load_s:.0f} s of load, healed in {heal_s:.0f} s "
          f"({runs} mpesa-reconcile runs); whole test {time.monotonic() - t0:.0f} s")  # fmt: skip
    print("did:")
    for what, n in sorted(tally.did.items()):
        print(f"  {n:6d}  {what}")
    print(f"  {len(stk_paid):6d}  STK pushes paid, {len(b2c_paid)} B2C payouts paid (stand-in)")
    print("faults:")
    for note in tally.faults:
        print(f"  {note}")
    print("checked:")
    for line in checks:
        print(f"  ok  {line}")
