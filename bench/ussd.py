"""USSD load benchmark: the real app on gunicorn vs the floor of a stateful design, same run.

    .venv/bin/python bench/ussd.py            (or: make bench-ussd)
    .venv/bin/python bench/ussd.py --before HEAD~3 --profile docs/profiles

What it does, in one run:

1. Re-creates PostgreSQL database ``sacco_bench`` (``BENCH_DATABASE_URL``), migrates it,
   flushes Redis db 13 (``BENCH_REDIS_URL``), and seeds ``--seed`` members (default 200)
   through ``core/`` (register with a PIN, activate, a few deposits so statements page).
2. Starts gunicorn servers with the project's ``deploy/gunicorn.conf.py`` and the same
   worker/thread counts: the app with ``SACCO_ENV=production`` (PostgreSQL + Redis, fresh
   random secrets); with ``--before REV`` also the app as of git revision REV (its code
   exported with ``git archive``, same settings and databases); ``bench/stateful_app.py``,
   the floor: one Redis read and one write of the session's state per hop, as any design
   that keeps state between hops must do; and ``bench/trivial_app.py`` (``CON hi``, a line
   for the record, not the yardstick).
3. Each round: the floor and the trivial endpoint flat out; then for each app (alternating
   which goes first): the floor and then the app on menu-only sessions flat out (dial,
   then the main menu's pages: the app's throughput as a ratio of the floor's measured
   just before it, on the same hops), full sessions *paced* (the
   ``--members`` pausing ``--think-ms`` on average before each hop: the latency aims) and
   one member alone (the service time without queueing), straight followed by Argon2id
   verifications alone for 3 s (``core.kernel.pins.PinHasher``'s parameters), so the PIN
   hop's cost beyond the hash is printed from the same minutes. A full session is the gateway's exact
   hops: dial, balances (PIN asked, entered), back, mini statement, more, home, then the
   session-end notification.
4. Prints per round and as medians over the rounds; ``--profile DIR`` first records each
   app's menu-only load with py-spy into ``DIR/ussd-menu-{after,before}.svg`` (phases of
   their own, not counted).

Aims (issue 18; reported, not asserted): menu-only hops >= 0.5x the floor, paced menu hop
p99 <= 10 ms and PIN hop p99 <= 100 ms at 50 members. Latency is measured by the client
(request written -> whole answer read), on the same 2-core machine as the server.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from core.kernel.deps import CoreDeps
    from runtime import Runtime

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/sacco_bench"
)
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
SERVICE_CODE = "*384*44135#"
TARGETS = {"menu_p99_ms": 10.0, "pin_p99_ms": 100.0, "ratio": 0.50}  # issue 18
FIRST = (
    "Amina",
    "Otieno",
    "Wanjiku",
    "Kiprop",
    "Achieng",
    "Mwangi",
    "Fatuma",
    "Njeri",
    "Baraka",
    "Zawadi",
)
LAST = (
    "Kamau",
    "Odhiambo",
    "Chebet",
    "Hassan",
    "Mutua",
    "Wafula",
    "Njoroge",
    "Akinyi",
    "Kiptoo",
    "Omondi",
    "Maina",
    "Nyambura",
    "Barasa",
    "Wekesa",
    "Jeptoo",
    "Onyango",
    "Karanja",
    "Muthoni",
    "Ruto",
    "Mwende",
)
OPTION = re.compile(r"^\s*(\d{1,2})[.)]\s*(.+?)\s*$")


# --------------------------------------------------------------------------- setup


def production_env(database_url: str = BENCH_DB, redis_url: str = BENCH_REDIS) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        "SACCO_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "JWT_SECRET_KEY": secrets.token_urlsafe(32),
        "PIN_PEPPER": secrets.token_urlsafe(32),
        "PII_KEYS": Fernet.generate_key().decode(),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "USSD_CALLBACK_TOKEN": secrets.token_urlsafe(24),
        "SMS_CALLBACK_TOKEN": secrets.token_urlsafe(24),
        "TRUSTED_PROXY_HOPS": "0",  # the load processes talk to gunicorn directly
        # Two windows like the default (30/minute;300/day), so each hop pays the same
        # budget checks, but wide enough that a simulated phone, dialling far faster than
        # a person, is never turned away.
        "USSD_RATE_LIMIT": os.environ.get("BENCH_USSD_RATE_LIMIT", "6000/minute;60000/day"),
    }


def recreate_database(database_url: str = BENCH_DB, redis_url: str | None = BENCH_REDIS) -> None:
    """Drop, create and migrate ``database_url``; flush ``redis_url`` (None: no Redis)."""
    import psycopg2
    import redis
    from sqlalchemy.engine import make_url

    from db.migrate import upgrade

    url = make_url(database_url)
    admin = psycopg2.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (url.database,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{url.database}"')
        cur.execute(f'CREATE DATABASE "{url.database}"')
    admin.close()
    upgrade(database_url)
    if redis_url is None:
        return
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


@dataclass(frozen=True)
class Member:
    msisdn: str
    pin: str


# What each member has paid in before the bench: (account, KES), in order.
SAVINGS_HISTORY = (("savings", 5000), ("deposits", 2000), ("shares", 500)) * 3


@contextmanager
def bench_runtime(env: dict[str, str]) -> Iterator[Runtime]:
    """The app's runtime on the bench settings, for seeding through core/ as the app would."""
    from config import load_settings
    from runtime import build_runtime

    runtime = build_runtime(load_settings(**{k.lower(): v for k, v in env.items()}))
    try:
        yield runtime
    finally:
        runtime.engine.dispose()


def seed_members(
    runtime: Runtime,
    count: int,
    *,
    history: Sequence[tuple[str, int]] = SAVINGS_HISTORY,
    joined_days_ago: float = 0.0,
) -> list[Member]:
    """Active members with PINs and ``history`` (deposits by M-Pesa), created through core/
    as the app would. With ``joined_days_ago``, each joined that many days ago and paid in
    at even intervals since (a clock set back: ``tools.demo_loans.at``), so products that
    ask for months of membership accept them."""
    from core.kernel.money import Money
    from core.kernel.pins import pin_weakness
    from core.members import registration as members_core
    from core.savings import accounts as savings
    from tools.demo_loans import at

    base = runtime.deps.now()

    def clock(days_ago: float) -> CoreDeps:
        return at(runtime.deps, base, days_ago) if joined_days_ago else runtime.deps

    seeded: list[Member] = []
    for i in range(count):
        msisdn = f"+254711{i:06d}"
        pin = next(
            p
            for p in (f"{(2749 + 7919 * (i + k)) % 10000:04d}" for k in range(50))
            if pin_weakness(p, msisdn) is None
        )
        with runtime.unit_of_work() as session:
            member = members_core.register_member(
                session,
                clock(joined_days_ago),
                full_name=f"{FIRST[i % len(FIRST)]} {LAST[i // len(FIRST) % len(LAST)]}",
                msisdn=msisdn,
                national_id=f"{30000000 + i}",
                consent=True,
                pin=pin,
            )
            members_core.set_status(session, member.id, "active")
            for j, (target, kes) in enumerate(history):
                savings.credit_member(
                    session,
                    clock(joined_days_ago * (1 - (j + 1) / (len(history) + 1))),
                    savings.Credit(
                        member_id=member.id,
                        target=target,
                        amount_cents=Money.of(kes + j).cents,
                        source=savings.CreditSource.MPESA,
                        idempotency_key=f"bench-{i}-{j}",
                        business_key=f"deposit_received:bench-{i}-{j}",
                        memo="M-Pesa deposit",
                    ),
                )
        seeded.append(Member(msisdn, pin))
        if (i + 1) % 50 == 0:
            print(f"  seeded {i + 1}/{count} members", flush=True)
    return seeded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    app: str, env: dict[str, str], workers: int, threads: int, tree: Path = ROOT
) -> tuple[Any, int]:
    """gunicorn serving ``app`` from the code in ``tree`` (this checkout, or a previous
    revision's exported for ``--before``)."""
    port = free_port()
    child_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(tree),
        **env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", app],
        cwd=tree,
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn for {app} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            if ok:
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"gunicorn for {app} did not come up")


# --------------------------------------------------------------------------- load


class Stopped(Exception):
    """The phase's time is up: the session is left mid-way, not counted as an error."""


class Aborted(Exception):
    """The session met a screen it did not expect; counted as an error."""


@dataclass
class Tally:
    menu_ms: list[float] = field(default_factory=list)  # every hop but the PIN's
    pin_ms: list[float] = field(default_factory=list)
    write_ms: list[float] = field(default_factory=list)  # hops that move money (not in menu_ms)
    sessions: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def add(self, other: Tally, samples: int = 3) -> None:
        self.menu_ms += other.menu_ms
        self.pin_ms += other.pin_ms
        self.write_ms += other.write_ms
        self.sessions += other.sessions
        self.errors += other.errors
        self.error_samples += other.error_samples[:samples]


class Handset:
    """One simulated member's phone: a keep-alive connection and the gateway's fields."""

    def __init__(self, port: int, path: str, tally: Tally, think_s: float = 0.0) -> None:
        self.port, self.path, self.tally, self.think_s = port, path, tally, think_s
        self.rng = random.Random()
        self.stop_at = float("inf")
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str, float]:
        body = urllib.parse.urlencode(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for attempt in (1, 2):
            try:
                start = time.perf_counter()
                self.conn.request("POST", path, body, headers)
                resp = self.conn.getresponse()
                text = resp.read().decode()
                return resp.status, text, (time.perf_counter() - start) * 1000
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                # The server closed an idle keep-alive connection: reconnect and send once
                # more. Never on a timeout: the hop may have been served (the gateway does
                # not repeat a hop either).
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def hop(
        self, sid: str, msisdn: str, inputs: list[str], pin_hop: bool, write_hop: bool = False
    ) -> str:
        fields = {
            "sessionId": sid,
            "serviceCode": SERVICE_CODE,
            "phoneNumber": msisdn,
            "networkCode": "63902",
            "text": "*".join(inputs),
        }
        if self.think_s:  # the member reads the screen and types
            time.sleep(self.rng.uniform(0.5, 1.5) * self.think_s)
        if time.time() >= self.stop_at:
            raise Stopped
        status, text, ms = self.post(self.path, fields)
        if status != 200 or not text.startswith(("CON ", "END ")):
            raise Aborted(f"HTTP {status}: {text[:60]!r}")
        # A hop that moves money (appraise, approve, pay out) is measured on its own, as
        # PIN hops are: the menu budget is for screens that read and navigate.
        (self.tally.write_ms if write_hop else
         self.tally.pin_ms if pin_hop else self.tally.menu_ms).append(ms)  # fmt: skip
        return text

    def end(self, sid: str, msisdn: str, inputs: list[str], status: str, last: str) -> None:
        events = self.path.replace("/ussd", "/ussd/events", 1)
        self.post(
            events,
            {
                "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                "sessionId": sid,
                "serviceCode": SERVICE_CODE,
                "networkCode": "63902",
                "phoneNumber": msisdn,
                "status": status,
                "cost": "0.0",
                "durationInMillis": "9000",
                "hopsCount": str(len(inputs) + 1),
                "input": "*".join(inputs),
                "lastAppResponse": last,
                "errorMessage": "",
            },
        )


def options(screen: str) -> dict[str, str]:
    """``{label lowercased: number}`` for every ``N. Label`` line of a screen."""
    found = {}
    for line in screen.split("\n"):
        match = OPTION.match(line)
        if match:
            found[match.group(2).lower()] = match.group(1)
    return found


def choose(screen: str, *words: str) -> str:
    for label, number in options(screen).items():
        if any(w in label for w in words):
            return number
    raise Aborted(f"no option {words} on {screen[:80]!r}")


def asks_for_pin(screen: str) -> bool:
    return screen.startswith("CON") and "PIN" in screen and not options(screen)


class Call:
    """One USSD session of a member on a handset: the gateway's session id and what the
    member typed so far, sent one hop at a time."""

    def __init__(self, phone: Handset, member: Member) -> None:
        self.phone, self.member = phone, member
        self.sid = f"ATUid_{secrets.token_hex(12)}"
        self.inputs: list[str] = []
        self.screen = ""

    def send(self, typed: str | None = None, pin: bool = False, write: bool = False) -> str:
        if typed is not None:
            self.inputs.append(typed)
        self.screen = self.phone.hop(self.sid, self.member.msisdn, self.inputs, pin, write)
        return self.screen

    def dial(self) -> str:
        """The first hop; a new session past any "continue where you left off" offer."""
        screen = self.send()
        if "left off" in screen.lower() or "continue" in screen.lower():
            screen = self.send(choose(screen, "start", "main", "menu", "new"))
        return screen

    def pin_if_asked(self) -> str:
        if asks_for_pin(self.screen):
            self.send(self.member.pin, pin=True)
        return self.screen

    def leave(self) -> None:
        """Exit from the main menu if it offers one, then the session-end notification."""
        status = "Success" if self.screen.startswith("END") else "Incomplete"
        exits = [
            n for label, n in options(self.screen).items() if "exit" in label or "quit" in label
        ]
        if exits:
            status = "Success" if self.send(exits[0]).startswith("END") else "Incomplete"
        self.phone.end(self.sid, self.member.msisdn, self.inputs, status, self.screen)


SessionFn = Callable[[Handset, Member], None]


def app_session(phone: Handset, member: Member) -> None:
    """Dial, balances (PIN), back, mini statement, more, home, hang up after the goodbye."""
    call = Call(phone, member)
    call.send(choose(call.dial(), "balance"))
    if "KES" not in call.pin_if_asked():
        raise Aborted(f"no balances after PIN: {call.screen[:80]!r}")
    call.send("0")
    call.send(choose(call.screen, "statement"))
    screen = call.pin_if_asked()
    if "98" in options(screen).values() or "98" in screen:
        call.send("98")
    call.send("00")
    call.leave()


def trivial_session(phone: Handset, member: Member) -> None:
    """The same number and shape of hops against the trivial endpoint."""
    call = Call(phone, member)
    script = [(None, False), ("1", False), (member.pin, True), ("0", False), ("2", False)]
    for typed, pin in script + [("98", False), ("00", False)]:
        call.send(typed, pin)
    phone.end(call.sid, member.msisdn, call.inputs, "Success", call.screen)


MENU_HOPS = ("98", "0", "98", "0", "98", "00")  # after the dial: pages of the main menu


def menu_session(phone: Handset, member: Member) -> None:
    """Menu hops only: dial (the member is looked up), then the main menu's pages, more,
    back, more, back, more, home; no PIN, no data screen. The session is left open (as a
    member who hangs up) and its end notified, like ``app_session``'s."""
    call = Call(phone, member)
    call.dial()
    for typed in MENU_HOPS:
        if not options(call.send(typed)):
            raise Aborted(f"not a menu after {typed!r}: {call.screen[:80]!r}")
    phone.end(call.sid, member.msisdn, call.inputs, "Success", call.screen)


def floor_session(phone: Handset, member: Member) -> None:
    """``menu_session``'s hops against the floor (``bench/stateful_app.py``)."""
    call = Call(phone, member)
    for typed in (None, *MENU_HOPS):
        call.send(typed)
    phone.end(call.sid, member.msisdn, call.inputs, "Success", call.screen)


def load_process(
    port: int,
    path: str,
    session_fn: SessionFn,
    members: list[list[Member]],
    start_at: float,
    stop_at: float,
    think_s: float,
    out: Any,
) -> None:
    """One load process: a thread per simulated member slot, each cycling its members."""
    tallies = [Tally() for _ in members]

    def run(own: list[Member], tally: Tally) -> None:
        phone = Handset(port, path, tally, think_s)
        phone.stop_at = stop_at
        i = 0
        while time.time() < start_at:
            time.sleep(0.005)
        while time.time() < stop_at:
            member = own[i % len(own)]
            i += 1
            try:
                session_fn(phone, member)
                tally.sessions += 1
            except Stopped:
                break
            except (Aborted, OSError, http.client.HTTPException) as exc:
                tally.errors += 1
                phone.conn.close()  # a timed-out connection may still get the late answer
                if len(tally.error_samples) < 3:
                    tally.error_samples.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)  # don't spin on a failing server
        phone.conn.close()

    threads = [
        threading.Thread(target=run, args=(own, t), daemon=True)
        for own, t in zip(members, tallies, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for part in tallies:
        total.add(part, samples=1)
    out.put(total)


def drive(
    port: int,
    path: str,
    session_fn: SessionFn,
    members: list[Member],
    slots: int,
    seconds: float,
    procs: int,
    think_s: float,
) -> tuple[Tally, float]:
    """``slots`` concurrent members for ``seconds``; returns the merged tally and the wall time."""
    slots = max(1, min(slots, len(members)))
    per_slot = [members[i::slots] for i in range(slots)]
    groups = [per_slot[p::procs] for p in range(procs)]
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.5
    stop_at = start_at + seconds
    workers = [
        ctx.Process(
            target=load_process,
            args=(port, path, session_fn, g, start_at, stop_at, think_s, out),
        )
        for g in groups
        if g
    ]
    for w in workers:
        w.start()
    merged = Tally()
    for _ in workers:
        merged.add(out.get(timeout=seconds + 120))
    for w in workers:
        w.join(timeout=30)
    out.close()
    out.join_thread()
    return merged, seconds


# --------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


Pcts = tuple[float, float, float]


def three(values: list[float]) -> Pcts:
    return (pct(values, 50), pct(values, 95), pct(values, 99))


def fmt3(t: Pcts) -> str:
    return f"p50 {t[0]:6.1f}  p95 {t[1]:6.1f}  p99 {t[2]:6.1f} ms"


@dataclass
class Side:
    """One code path's figures in one round: this checkout's, or ``--before``'s."""

    menu_hops_s: float  # menu-only sessions, flat out: the throughput against the floor
    floor_hops_s: float  # the floor on the same hops, flat out, just before them
    menu_lat: Pcts  # their latency (queueing: no pause between hops)
    paced_menu: Pcts  # full sessions, members with think time: the latency aims
    paced_pin: Pcts
    paced_hops_s: float
    solo_menu: Pcts  # one member, no think time: the service time without queueing
    solo_pin: Pcts
    hash_ms: Pcts  # Argon2id alone, measured straight after this side's solo phase
    errors: int
    samples: list[str]

    @property
    def beyond_hash(self) -> float:
        """What the solo PIN hop costs beyond the hash: p50 minus Argon2id's p50 (ms)."""
        return self.solo_pin[0] - self.hash_ms[0]


@dataclass
class RoundResult:
    floor_hops_s: float  # bench/stateful_app.py flat out, menu_session's hops
    floor_lat: Pcts
    trivial_hops_s: float  # bench/trivial_app.py (CON hi), for the record only
    sides: dict[str, Side]

    def ratio(self, side: str) -> float:
        """The side's menu-only hops/s over the floor's measured just before them (the
        machine's load moves: adjacent phases are what can be compared)."""
        got = self.sides[side]
        return got.menu_hops_s / got.floor_hops_s if got.floor_hops_s else 0.0


def hops_per_s(t: Tally, secs: float) -> float:
    return (len(t.menu_ms) + len(t.pin_ms)) / secs


def med(results: Sequence[Any], f: Callable[[Any], float]) -> float:
    """The median over the rounds of one figure of a round's result."""
    return float(statistics.median(f(r) for r in results))


def med3(results: Sequence[Any], f: Callable[[Any], Pcts]) -> Pcts:
    return (
        med(results, lambda r: f(r)[0]),
        med(results, lambda r: f(r)[1]),
        med(results, lambda r: f(r)[2]),
    )


def load_args(
    description: str,
    seed: int = 200,
    seconds: float = 10.0,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options every USSD load bench takes, parsed and kept in sane ranges; adds
    ``think_s`` (seconds). ``extra`` adds a bench's own options."""
    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=seconds, help="load time per phase")
    parser.add_argument("--members", type=int, default=50, help="concurrent simulated members")
    parser.add_argument("--seed", type=int, default=seed, help="members to create")
    parser.add_argument("--procs", type=int, default=4, help="load generator processes")
    parser.add_argument(
        "--think-ms", type=float, default=1000.0, help="mean pause before each hop (paced phase)"
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 4)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("GUNICORN_THREADS", 4)))
    args = parser.parse_args()
    args.seed = max(1, min(args.seed, 100_000))
    args.members = max(1, min(args.members, 200, args.seed))
    args.seconds = max(1.0, min(args.seconds, 120.0))
    args.rounds = max(1, min(args.rounds, 10))
    args.procs = max(1, min(args.procs, 16))
    args.think_s = max(0.0, min(args.think_ms, 10_000.0)) / 1000
    return args


def prepare(database_url: str, redis_url: str) -> dict[str, str]:
    """Print the machine's load, re-create the bench databases; the app's production
    settings on them (fresh secrets)."""
    print(
        f"bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before start "
        f"(other work on the machine skews every number); database {database_url}; "
        f"redis {redis_url}",
        flush=True,
    )
    print("bench: re-creating and migrating the bench database ...", flush=True)
    recreate_database(database_url, redis_url)
    return production_env(database_url, redis_url)


def stop(procs: Sequence[Any]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def export_tree(rev: str, into: Path) -> Path:
    """The code of git revision ``rev`` (``git archive``), to serve the 'before' side."""
    tree = into / "before"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def hash_times(seconds: float) -> list[float]:
    """Argon2id verifications alone (``core.kernel.pins.PinHasher``'s production
    parameters, a right and a wrong PIN in turn) for ``seconds``, in ms each."""
    from core.kernel.pins import PinHasher

    hasher = PinHasher(secrets.token_bytes(32))
    digest = hasher.hash("4826")
    times: list[float] = []
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at or len(times) < 20:
        t = time.perf_counter()
        hasher.verify(digest, "4826" if len(times) % 2 else "7391")
        times.append((time.perf_counter() - t) * 1000)
    return times


@contextmanager
def profiled(pid: int, out: Path, seconds: float) -> Iterator[None]:
    """py-spy (``requirements-dev.txt``) samples gunicorn ``pid`` and its workers into a
    flame graph (SVG) while the block runs."""
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")), "record", "--subprocesses",
            "--pid", str(pid), "--duration", str(int(seconds) + 1), "--rate", "200",
            "--format", "flamegraph", "--output", str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        spy.wait(timeout=120)
    print(f"  profile: {out}", flush=True)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--before", help="git revision whose code path is measured too, in the same run"
    )
    parser.add_argument(
        "--profile", type=Path, help="directory for py-spy flame graphs of the menu hops (SVG)"
    )


def main() -> int:
    args = load_args(__doc__.split("\n")[0], extra=_options)
    think = args.think_s
    env = prepare(BENCH_DB, BENCH_REDIS)
    print(f"bench: seeding {args.seed} members with PINs through core/ ...", flush=True)
    t0 = time.monotonic()
    with bench_runtime(env) as runtime:
        members = seed_members(runtime, args.seed)
    print(f"  seeded in {time.monotonic() - t0:.1f}s", flush=True)

    path = f"/ussd?token={env['USSD_CALLBACK_TOKEN']}"
    w, t = args.workers, args.threads
    tmp = tempfile.TemporaryDirectory(prefix="bench-ussd-")
    servers: dict[str, tuple[Any, int]] = {}
    try:
        servers["after"] = start_gunicorn("wsgi:app", env, w, t)
        if args.before:
            tree = export_tree(args.before, Path(tmp.name))
            servers["before"] = start_gunicorn("wsgi:app", env, w, t, tree)
        # The app's settings for all: gunicorn's config reads them (the others ignore them).
        servers["floor"] = start_gunicorn("bench.stateful_app:app", env, w, t)
        servers["trivial"] = start_gunicorn("bench.trivial_app:app", env, w, t)
        sides: list[str] = [s for s in ("before", "after") if s in servers]
        print(
            f"bench: gunicorn x{len(servers)} ({w} workers x {t} threads, gthread): the app "
            + (f"(this checkout and {args.before}) " if args.before else "")
            + f"the floor (Redis read + write per hop) and CON hi; {args.members} concurrent "
            f"members from {args.procs} load processes; {args.rounds} rounds of: floor and "
            f"trivial flat out, then per app: menu-only sessions flat out, full sessions "
            f"paced (think {think * 1000:.0f} ms mean before each hop), {args.seconds:.0f}s "
            "each, one member alone for 5s, then Argon2id alone for 3s",
            flush=True,
        )
        results = run_rounds(args, path, members, servers, sides)
    finally:
        stop([proc for proc, _ in servers.values()])
        tmp.cleanup()
    report(args, results, sides)
    return 0


def run_rounds(
    args: argparse.Namespace,
    path: str,
    members: list[Member],
    servers: dict[str, tuple[Any, int]],
    sides: list[str],
) -> list[RoundResult]:
    n, secs, procs, think = args.members, args.seconds, args.procs, args.think_s
    port = {name: p for name, (_, p) in servers.items()}
    # Warm-up: imports, connection pools, Redis, argon2 memory; not counted.
    drive(port["trivial"], "/ussd", trivial_session, members, n, 2, procs, 0.0)
    drive(port["floor"], "/ussd", floor_session, members, n, 2, procs, 0.0)
    for side in sides:
        warm, _ = drive(port[side], path, app_session, members, n, 3, procs, 0.0)
        if warm.errors:
            print(f"  {side} warm-up errors: {warm.errors} e.g. {warm.error_samples[:2]}")
    if args.profile is not None:  # own phases, not counted: sampling slows the server
        args.profile.mkdir(parents=True, exist_ok=True)
        for side in sides:
            with profiled(servers[side][0].pid, args.profile / f"ussd-menu-{side}.svg", secs):
                drive(port[side], path, menu_session, members, n, secs, procs, 0.0)
    results: list[RoundResult] = []
    for r in range(1, args.rounds + 1):
        floor, _ = drive(port["floor"], "/ussd", floor_session, members, n, secs, procs, 0.0)
        triv, _ = drive(port["trivial"], "/ussd", trivial_session, members, n, secs, procs, 0.0)
        got: dict[str, Side] = {}
        for side in sides if r % 2 else sides[::-1]:  # alternate which side goes first
            fl, _ = drive(port["floor"], "/ussd", floor_session, members, n, secs, procs, 0.0)
            flat, _ = drive(port[side], path, menu_session, members, n, secs, procs, 0.0)
            paced, _ = drive(port[side], path, app_session, members, n, secs, procs, think)
            solo, _ = drive(port[side], path, app_session, members, 1, min(secs, 5.0), 1, 0.0)
            got[side] = Side(
                menu_hops_s=hops_per_s(flat, secs),
                floor_hops_s=hops_per_s(fl, secs),
                menu_lat=three(flat.menu_ms),
                paced_menu=three(paced.menu_ms),
                paced_pin=three(paced.pin_ms),
                paced_hops_s=hops_per_s(paced, secs),
                solo_menu=three(solo.menu_ms),
                solo_pin=three(solo.pin_ms),
                hash_ms=three(hash_times(3.0)),  # the same minutes as the solo PIN hops
                errors=flat.errors + paced.errors + solo.errors,
                samples=(flat.error_samples + paced.error_samples + solo.error_samples)[:3],
            )
        res = RoundResult(
            floor_hops_s=hops_per_s(floor, secs),
            floor_lat=three(floor.menu_ms),
            trivial_hops_s=hops_per_s(triv, secs),
            sides={s: got[s] for s in sides},
        )
        results.append(res)
        print(
            f"round {r}: floor {res.floor_hops_s:6.1f} hops/s, trivial "
            f"{res.trivial_hops_s:6.1f} hops/s (errors {floor.errors + triv.errors})",
            flush=True,
        )
        for side in sides:
            got_side = res.sides[side]
            print(
                f"  {side:<6} menu-only {got_side.menu_hops_s:6.1f} hops/s, floor just before "
                f"{got_side.floor_hops_s:6.1f}, ratio {res.ratio(side):.2f}; errors {got_side.errors}"
            )
            print(
                f"         paced menu {fmt3(got_side.paced_menu)} | PIN {fmt3(got_side.paced_pin)}"
            )
            print(f"         solo  menu {fmt3(got_side.solo_menu)} | PIN {fmt3(got_side.solo_pin)}")
            print(
                f"         Argon2id alone {fmt3(got_side.hash_ms)}; solo PIN hop beyond it "
                f"{got_side.beyond_hash:.1f} ms",
                flush=True,
            )
            for sample in got_side.samples:
                print(f"         error: {sample}", flush=True)
    return results


def report(args: argparse.Namespace, results: list[RoundResult], sides: list[str]) -> None:
    def side(name: str, f: Callable[[Side], Any]) -> Callable[[RoundResult], Any]:
        return lambda r: f(r.sides[name])

    floor = med(results, lambda r: r.floor_hops_s)
    print()
    print(f"median of {len(results)} rounds, {args.members} concurrent members:")
    print(
        f"  floor (Redis read + write per hop)  {floor:7.1f} hops/s  "
        f"latency {fmt3(med3(results, lambda r: r.floor_lat))}"
    )
    print(
        f"  trivial CON hi (not the yardstick)  {med(results, lambda r: r.trivial_hops_s):7.1f}"
        " hops/s"
    )
    for name in sides:
        label = f"{name} ({args.before})" if name == "before" else f"{name} (this checkout)"
        ratio = med(results, partial(RoundResult.ratio, side=name))
        paced_menu = med3(results, side(name, lambda s: s.paced_menu))
        paced_pin = med3(results, side(name, lambda s: s.paced_pin))
        solo_pin = med3(results, side(name, lambda s: s.solo_pin))
        print(f"  {label}:")
        print(
            f"    menu-only       {med(results, side(name, lambda s: s.menu_hops_s)):7.1f} "
            f"hops/s, ratio to the floor {ratio:.2f} (aim >= {TARGETS['ratio']})"
        )
        print(f"    paced menu hop  {fmt3(paced_menu)}  (aim p99 <= {TARGETS['menu_p99_ms']:.0f})")
        print(f"    paced PIN hop   {fmt3(paced_pin)}  (aim p99 <= {TARGETS['pin_p99_ms']:.0f})")
        print(f"    solo menu hop   {fmt3(med3(results, side(name, lambda s: s.solo_menu)))}")
        print(f"    solo PIN hop    {fmt3(solo_pin)}")
        print(f"    Argon2id alone  {fmt3(med3(results, side(name, lambda s: s.hash_ms)))}")
        print(
            "    PIN hop beyond the hash: "
            f"{med(results, side(name, lambda s: s.beyond_hash)):.1f} ms (median over the "
            "rounds of solo PIN hop p50 - Argon2id p50 measured straight after it)"
        )
        met = [
            ("ratio", ratio >= TARGETS["ratio"]),
            ("menu p99", paced_menu[2] <= TARGETS["menu_p99_ms"]),
            ("PIN p99", paced_pin[2] <= TARGETS["pin_p99_ms"]),
        ]
        print("    aims: " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in met))
        print(f"    errors over all rounds: {sum(r.sides[name].errors for r in results)}")
    if "before" in sides:
        after = med(results, side("after", lambda s: s.menu_hops_s))
        before = med(results, side("before", lambda s: s.menu_hops_s))
        print(f"  menu-only hops/s after / before: {after / before:.2f}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} (the bench itself included)")


if __name__ == "__main__":
    sys.exit(main())
