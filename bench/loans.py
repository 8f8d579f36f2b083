"""Loans on USSD under load: the apply-for-loan hops against the savings menu's, same run.

    .venv/bin/python bench/loans.py           (or: make bench-loans)
    .venv/bin/python bench/loans.py --rounds 5 --seconds 15 --members 50

What it does, in one run (the pieces are ``bench/ussd.py``'s: handsets, load processes,
percentiles):

1. Re-creates PostgreSQL database ``sacco_bench_loans`` (``BENCH_LOANS_DATABASE_URL``),
   migrates it, flushes Redis db 13 (``BENCH_LOANS_REDIS_URL``), creates the demo's three
   loan products (``manage.DEMO_PRODUCTS``) asking ``BENCH_LOANS_MIN_MONTHS`` (6) months
   of membership, and seeds ``--seed`` members (default 200) through ``core/`` with a
   clock set back: each joined a year ago, bought shares, and has paid in deposits and
   savings every quarter since.
2. Starts the app on gunicorn with production settings (``deploy/gunicorn.conf.py``).
3. Each round measures, one after the other and in alternating order, ``--members``
   members pausing ``--think-ms`` on average before each hop (*paced*: the latency aims)
   doing either session:

   * **loans**: dial, 98 More, Loans, PIN, then (one purpose a dial) half the time My
     limit, back, My loans, the newest, home; the other half Apply, the instant loan (a
     ``Choose``), an amount, a term, the instalment screen, Confirm: the application is
     appraised, approved within the product's ceiling and paid to savings in that hop
     (the *apply hop*: it moves money, so it is measured on its own, like the PIN hop, and
     not counted in the menu hops); then the
     session-end notification;
   * **savings** (the baseline): ``bench/ussd.py``'s session, dial, balances (PIN), back,
     mini statement, more, home;

   then each session with one member alone (*solo*: the service time, no queueing).
4. Prints p50/p95/p99 of menu hops and PIN hops for both, per round and as medians over
   the rounds, and the ratios loans ÷ savings (the machine is noisy: the ratio is what
   travels); then how many loans were paid out and ``verify-ledger``. Aim (reported, not
   asserted): paced loans menu hop p99 < 20 ms.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ussd import (  # noqa: E402  (the path above first)
    Aborted,
    Call,
    Handset,
    Member,
    Pcts,
    Tally,
    app_session,
    bench_runtime,
    choose,
    drive,
    fmt3,
    load_args,
    med3,
    options,
    prepare,
    seed_members,
    start_gunicorn,
    stop,
    three,
)

if TYPE_CHECKING:
    from core.ledger.verify import LedgerReport
    from runtime import Runtime

BENCH_DB = os.environ.get(
    "BENCH_LOANS_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/sacco_bench_loans"
)
BENCH_REDIS = os.environ.get("BENCH_LOANS_REDIS_URL", "redis://127.0.0.1:6379/13")
JOINED_DAYS_AGO = 365
RATE_LIMIT = "6000/minute;100000/day"
# A year of payments: share capital once, then deposits and savings each quarter (KES
# 60,000 of deposits: the instant loan's limit, 1x deposits, is its maximum, 20,000).
HISTORY = (("shares", 1_000),) + (("deposits", 15_000), ("savings", 2_000)) * 4
PRODUCT = "instant"  # the words of its line on the Choose screen
AMOUNTS_KES = (500, 2_000)  # small loans: a member's limit lasts the whole run
TERMS = (1, 3)
APPLY_SHARE = 0.5  # of loans sessions; the others look at My limit and My loans

# Issue 12's budget for the loans menu hops (bench-ussd's own aim, issue 18, is tighter).
LOANS_MENU_P99_MS = 20.0


def seed_products(runtime: Runtime, min_months: int) -> None:
    """The demo's loan products, created the way the demo creates them (from the system,
    with the clock set back to before the members joined), each asking ``min_months`` of
    membership."""
    from core.kernel.permissions import SYSTEM
    from core.loans import products
    from manage import DEMO_PRODUCTS
    from tools.demo_loans import at

    deps = at(runtime.deps, runtime.deps.now(), JOINED_DAYS_AGO + 10)
    with runtime.unit_of_work() as session:
        for definition in DEMO_PRODUCTS:
            raw = {**products.DEFAULTS, **definition, "min_membership_months": min_months}
            code = str(raw.pop("code"))
            products.create_product(session, deps, SYSTEM, code, products.parse_terms(raw))


def loans_menu(call: Call) -> str:
    """Dial, Loans (on the main menu's second page), the PIN: the Loans menu."""
    screen = call.dial()
    if not any("loans" in label for label in options(screen)):
        screen = call.send("98")
    call.send(choose(screen, "loans"))
    if "My limit" not in call.pin_if_asked():
        raise Aborted(f"no Loans menu after the PIN: {call.screen[:80]!r}")
    return call.screen


def look(call: Call) -> None:
    """My limit, back, My loans and the newest of them, home, hang up."""
    if "KES" not in call.send(choose(loans_menu(call), "my limit")):
        raise Aborted(f"no limit shown: {call.screen[:80]!r}")
    call.send("0")
    if options(call.send(choose(call.screen, "my loans"))):  # none yet: the list says so
        call.send("1")
    call.send("00")
    call.leave()


def apply(call: Call) -> None:
    """Apply for the instant loan: product, amount, term, to savings, the instalment screen, Confirm;
    within the product's ceiling it is approved and paid to savings in that hop."""
    call.send(choose(loans_menu(call), "apply"))
    call.send(choose(call.screen, PRODUCT))
    if "how many" not in call.send(str(call.phone.rng.randint(*AMOUNTS_KES))):
        raise Aborted(f"amount not taken: {call.screen[:80]!r}")
    if "money go" not in call.send(str(call.phone.rng.randint(*TERMS))):
        raise Aborted(f"no payout choice: {call.screen[:80]!r}")
    if "Instalment" not in call.send(choose(call.screen, "Savings")):
        raise Aborted(f"no instalment screen: {call.screen[:80]!r}")
    done = call.send(choose(call.screen, "confirm"), write=True)
    if not done.startswith("END") or "approved" not in done:
        raise Aborted(f"not paid out: {done[:80]!r}")
    call.leave()


def loan_session(phone: Handset, member: Member) -> None:
    """One dial for one purpose, as members do: half look at their limit and loans, half
    apply."""
    call = Call(phone, member)
    (apply if phone.rng.random() < APPLY_SHARE else look)(call)


def book_after(runtime: Runtime) -> tuple[int, LedgerReport]:
    """How many loans the run paid out, and the ledger's check."""
    from sqlalchemy import func, select

    from core.ledger.verify import verify_ledger
    from db.models_loans import Loan

    with runtime.unit_of_work() as session:
        paid = session.scalar(select(func.count()).select_from(Loan)) or 0
        return paid, verify_ledger(session)


@dataclass
class Pair:
    """One phase's loans and savings tallies, measured under the same conditions."""

    loans: Tally
    savings: Tally

    def errors(self) -> int:
        return self.loans.errors + self.savings.errors


@dataclass
class RoundResult:
    paced_loans_menu: Pcts
    paced_loans_pin: Pcts
    paced_loans_write: Pcts
    paced_savings_menu: Pcts
    paced_savings_pin: Pcts
    solo_loans_menu: Pcts
    solo_loans_pin: Pcts
    solo_loans_write: Pcts
    solo_savings_menu: Pcts
    solo_savings_pin: Pcts
    applied: int  # apply hops answered
    errors: int


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def fmt_ratio(loans: Pcts, savings: Pcts) -> str:
    return f"x{ratio(loans[0], savings[0]):.2f} at p50, x{ratio(loans[2], savings[2]):.2f} at p99"


def main() -> int:
    args = load_args(__doc__.split("\n")[0], seconds=20.0)
    env = prepare(BENCH_DB, BENCH_REDIS)
    # The per-phone limit still counts every hop in Redis; only its threshold is out of
    # reach, as the bench's members dial many times a minute (a person cannot).
    env["USSD_RATE_LIMIT"] = RATE_LIMIT
    min_months = int(os.environ.get("BENCH_LOANS_MIN_MONTHS", "6"))
    print(
        f"bench: loan products (the demo's, {min_months} months of membership asked) and "
        f"{args.seed} members who joined {JOINED_DAYS_AGO} days ago, through core/ ...",
        flush=True,
    )
    t0 = time.monotonic()
    with bench_runtime(env) as runtime:
        seed_products(runtime, min_months)
        members = seed_members(runtime, args.seed, history=HISTORY, joined_days_ago=JOINED_DAYS_AGO)
    print(f"  seeded in {time.monotonic() - t0:.1f}s", flush=True)
    random.Random(12).shuffle(members)

    path = f"/ussd?token={env['USSD_CALLBACK_TOKEN']}"
    app_proc, port = start_gunicorn("wsgi:app", env, args.workers, args.threads)
    n, secs, procs, think = args.members, args.seconds, args.procs, args.think_s
    print(
        f"bench: gunicorn ({args.workers} workers x {args.threads} threads, gthread); "
        f"{args.rounds} rounds of: loans and savings sessions paced ({n} members, think "
        f"{think * 1000:.0f} ms mean before each hop, {secs:.0f}s each, from {procs} load "
        f"processes), then each with one member alone for {min(secs, 5.0):.0f}s",
        flush=True,
    )

    def phase(slots: int, seconds: float, load_procs: int, pause: float, loans_first: bool) -> Pair:
        def one(loans: bool) -> Tally:
            fn = loan_session if loans else app_session
            return drive(port, path, fn, members, slots, seconds, load_procs, pause)[0]

        first, second = one(loans_first), one(not loans_first)
        return Pair(first, second) if loans_first else Pair(second, first)

    results: list[RoundResult] = []
    try:
        # Warm-up: imports, connection pools, Redis, argon2 memory; not counted.
        warm = phase(n, 3, procs, 0.0, True)
        if warm.errors():
            samples = warm.loans.error_samples + warm.savings.error_samples
            print(f"  warm-up errors: {warm.errors()} e.g. {samples[:2]}", flush=True)
        for r in range(1, args.rounds + 1):
            loans_first = r % 2 == 1  # alternate, so neither always runs on a warmer machine
            paced = phase(n, secs, procs, think, loans_first)
            solo = phase(1, min(secs, 5.0), 1, 0.0, loans_first)
            res = RoundResult(
                paced_loans_menu=three(paced.loans.menu_ms),
                paced_loans_pin=three(paced.loans.pin_ms),
                paced_loans_write=three(paced.loans.write_ms),
                paced_savings_menu=three(paced.savings.menu_ms),
                paced_savings_pin=three(paced.savings.pin_ms),
                solo_loans_menu=three(solo.loans.menu_ms),
                solo_loans_pin=three(solo.loans.pin_ms),
                solo_loans_write=three(solo.loans.write_ms),
                solo_savings_menu=three(solo.savings.menu_ms),
                solo_savings_pin=three(solo.savings.pin_ms),
                applied=len(paced.loans.write_ms) + len(solo.loans.write_ms),
                errors=paced.errors() + solo.errors(),
            )
            results.append(res)
            print(
                f"round {r}: {res.applied} loans applied for, errors {res.errors}; "
                f"paced {(paced.loans.sessions + paced.savings.sessions) / secs:.1f} sessions/s",
                flush=True,
            )
            print(
                f"   paced  loans   menu {fmt3(res.paced_loans_menu)} | PIN {fmt3(res.paced_loans_pin)}"
            )
            print(
                f"   paced  savings menu {fmt3(res.paced_savings_menu)} | PIN {fmt3(res.paced_savings_pin)}"
            )
            print(f"   paced  loans   apply hop {fmt3(res.paced_loans_write)}")
            print(
                f"   solo   loans   menu {fmt3(res.solo_loans_menu)} | PIN {fmt3(res.solo_loans_pin)}"
            )
            print(
                f"   solo   savings menu {fmt3(res.solo_savings_menu)} | PIN {fmt3(res.solo_savings_pin)}"
            )
            samples = [
                *paced.loans.error_samples,
                *paced.savings.error_samples,
                *solo.loans.error_samples,
                *solo.savings.error_samples,
            ]
            for sample in samples[:3]:
                print(f"   error: {sample}", flush=True)
    finally:
        stop((app_proc,))

    def m(f: str) -> Pcts:
        return med3(results, lambda r: getattr(r, f))

    aim = LOANS_MENU_P99_MS
    loans_menu, savings_menu = m("paced_loans_menu"), m("paced_savings_menu")
    loans_pin, savings_pin = m("paced_loans_pin"), m("paced_savings_pin")
    print()
    print(f"median of {len(results)} rounds, {n} members paced:")
    print(f"  loans menu hop    {fmt3(loans_menu)}  (aim p99 < {aim:.0f} ms)")
    print(f"  savings menu hop  {fmt3(savings_menu)}  (the baseline, same run)")
    print(f"    loans / savings {fmt_ratio(loans_menu, savings_menu)}")
    print(f"  loans apply hop   {fmt3(m('paced_loans_write'))}  (appraise, approve, pay out)")
    print(f"  loans PIN hop     {fmt3(loans_pin)}")
    print(f"  savings PIN hop   {fmt3(savings_pin)}")
    print(f"    loans / savings {fmt_ratio(loans_pin, savings_pin)}")
    solo_loans, solo_savings = m("solo_loans_menu"), m("solo_savings_menu")
    print(f"  solo loans menu   {fmt3(solo_loans)}  (one member, no queueing)")
    print(f"  solo savings menu {fmt3(solo_savings)}")
    print(f"    loans / savings {fmt_ratio(solo_loans, solo_savings)}")
    print(f"  solo loans apply  {fmt3(m('solo_loans_write'))}")
    print(f"  solo loans PIN    {fmt3(m('solo_loans_pin'))}")
    print(f"  solo savings PIN  {fmt3(m('solo_savings_pin'))}")
    print(
        f"  aim: loans menu p99 < {aim:.0f} ms paced: {'met' if loans_menu[2] < aim else 'MISSED'}"
    )
    print(f"  loans applied for during the rounds: {sum(r.applied for r in results)}")
    with bench_runtime(env) as runtime:
        paid, report = book_after(runtime)
    print(f"  loans paid out in all (warm-up included): {paid}")
    print(
        f"  verify-ledger: {'OK' if report.ok else report.problems[:3]} ({report.entries} entries)"
    )
    print(f"  errors over all rounds: {sum(r.errors for r in results)}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} (the bench itself included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
