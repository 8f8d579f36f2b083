"""A member's whole life over HTTP (issue 14, "Show"): joins at the branch, saves monthly on
USSD, earns interest, receives a dividend SMS; a phone change blocks the old number; an exit
refunds exactly what the ledger says.

gunicorn serves the demo profile (one worker, jobs and SMS delivery in-process) beside the
Africa's Talking and Daraja stand-ins, on the PostgreSQL test database seeded by
``manage.py seed-demo``. Time is an input: the server is ``tests.e2e.clocked_wsgi:app``
started with ``SACCO_TEST_CLOCK`` set to the phase's day, and every ``manage.py`` command runs
under the same variable, so the member joins in January 2025, saves in January, February and
March (the server restarted each month), interest is accrued and posted month by month, the
year 2025 ends and its dividend and rebate are paid in January 2026, when the phone changes;
the member leaves in February, past the SIM-swap window of the new line (within it the
refund would be paid at the branch). ``manage.py verify-ledger`` after every step.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.ledger import entries as ledger
from core.members.registration import member_account_ids
from db.models_mpesa import B2CPayout
from integrations.africastalking.standin import start_standin as start_at
from integrations.mpesa.standin import start_standin as start_daraja
from tests.e2e.gateway import GatewayPhone
from tests.e2e.mpesa_harness import post, wait_for
from tests.e2e.servers import ROOT, clean_env, gunicorn
from tests.e2e.test_loan_walk import sms_to, wait_sms
from tests.settings import PG_URL

pytestmark = pytest.mark.slow

KES = 100
OLD, NEW = "+254733100200", "+254733100299"
PIN = "7391"
JANUARY, FEBRUARY, MARCH = (datetime(2025, m, 6, 7, 0, tzinfo=UTC) for m in (1, 2, 3))
APRIL = datetime(2025, 4, 1, 7, 0, tzinfo=UTC)  # 10:00 in Nairobi: accrue through 31 March
NEXT_YEAR = datetime(2026, 1, 20, 7, 0, tzinfo=UTC)
LEAVING = datetime(2026, 2, 3, 7, 0, tzinfo=UTC)
STAFF = {  # manage.py DEMO_STAFF, and the second manager the admin adds
    "admin": "jacaranda-sunrise-26",
    "manager": "baobab-shade-2026",
    "loans": "acacia-river-2026",
    "manager2": "mvule-canopy-2026-second",
}
RESERVES = 5_000_000 * KES
FIRST_PASSWORD = "mvule-canopy-2026-first"  # manager2 changes it at the first sign-in


def clock(at: datetime) -> str:
    return "@" + at.isoformat().replace("+00:00", "Z")


def manage_at(at: datetime, args: list[str], env: dict[str, str]) -> str:
    """``manage.py …`` with the clock at ``at`` (``tests.clockshift.start()`` first)."""
    launcher = (
        "import runpy, sys; from tests import clockshift; clockshift.start(); "
        "sys.argv = ['manage.py', *sys.argv[1:]]; runpy.run_path('manage.py', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", launcher, *args],
        cwd=ROOT,
        env=clean_env({**env, "SACCO_TEST_CLOCK": clock(at)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def ledger_ok(at: datetime, env: dict[str, str]) -> None:
    out = manage_at(at, ["verify-ledger"], env)
    assert "ledger OK" in out, out


@dataclass
class Server:
    """gunicorn living on another day; ``now()`` is its clock (for the TOTP codes)."""

    base: str
    offset: float
    http: requests.Session
    tokens: dict[str, str] = field(default_factory=dict)

    def now(self) -> float:
        return time.time() + self.offset

    def api(self, method: str, path: str, who: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kw.pop("headers", {})}
        return self.http.request(
            method, f"{self.base}/api/v1{path}", headers=headers, timeout=30, **kw
        )

    def phone(self, msisdn: str) -> GatewayPhone:
        return GatewayPhone(self.http, self.base, msisdn)


@contextmanager
def serving(at: datetime, env: dict[str, str], daraja: Any) -> Iterator[Server]:
    offset = at.timestamp() - time.time()
    with (
        gunicorn({**env, "SACCO_TEST_CLOCK": clock(at)}, app="tests.e2e.clocked_wsgi:app") as base,
        requests.Session() as http,
    ):
        daraja.state.callback_base = base
        env["MPESA_CALLBACK_BASE_URL"] = base
        manage_at(at, ["mpesa-register-urls"], env)
        yield Server(base, offset, http)
        daraja.state.join_workers(timeout=30)


def sign_in(server: Server, who: str, totp: dict[str, str], password: str = "") -> None:
    """A demo staff member signs in with TOTP: enrolled on the first sign-in (the README's
    ``signin``), a code from the authenticator after that, at the server's time."""
    http, api = server.http, f"{server.base}/api/v1"
    r = http.post(
        f"{api}/auth/login", json={"username": who, "password": password or STAFF[who]}, timeout=30
    )
    assert r.status_code == 200, r.text
    mfa = r.json()["mfa_token"]
    if who not in totp:
        enrol = http.post(f"{api}/auth/mfa/enrol", headers={"Authorization": f"Bearer {mfa}"})
        assert enrol.status_code == 200, enrol.text
        totp[who] = enrol.json()["secret"]
        code = pyotp.TOTP(totp[who]).at(server.now())
        done = http.post(
            f"{api}/auth/mfa/confirm",
            headers={"Authorization": f"Bearer {mfa}"},
            json={"code": code},
            timeout=30,
        )
        assert done.status_code == 200, done.text
        server.tokens[who] = done.json()["tokens"]["access_token"]
        return
    code = pyotp.TOTP(totp[who]).at(server.now())
    done = http.post(f"{api}/auth/mfa/verify", json={"mfa_token": mfa, "code": code}, timeout=30)
    assert done.status_code == 200, done.text
    server.tokens[who] = done.json()["access_token"]


def approve(server: Server, request_id: int, who: str) -> dict[str, Any]:
    done = server.api("POST", f"/approvals/{request_id}/approve", who, json={})
    assert done.status_code == 200 and done.json()["status"] == "approved", done.text
    return done.json()  # type: ignore[no-any-return]


TARGETS = {"savings": ("1", "Savings"), "deposits": ("2", "Deposits"), "shares": ("3", "Shares")}


def deposit(server: Server, engine: Engine, member_id: int, kes: int, target: str) -> None:
    """Deposit, the amount, the account, Confirm, the PIN: the STK prompt, paid by the
    Daraja stand-in, whose callback credits the account."""
    before = balances(engine, member_id)[target]
    phone = server.phone(OLD)
    phone.dial()
    assert phone.send("5") == "Deposit by M-Pesa. Enter amount in KES:"
    assert phone.send(str(kes)).startswith("Deposit to:")
    assert phone.send(TARGETS[target][0]).startswith(f"Deposit KES {kes:,} to {TARGETS[target][1]}")
    assert phone.send("1") == "Enter your PIN:"
    done = phone.send(PIN)
    assert phone.ended and done.startswith(f"Approve the M-Pesa prompt for KES {kes:,}"), done
    wait_for(
        lambda: balances(engine, member_id)[target] == before + kes * KES,
        timeout=60,
        what=f"KES {kes:,} in {target}",
    )


def cents(text: str) -> int:
    """``20,000`` or ``22,109.54`` (an SMS's figure) in cents."""
    whole, _, part = text.replace(",", "").partition(".")
    return int(whole) * KES + int(part.ljust(2, "0") if part else 0)


def kes_text(amount_cents: int) -> str:
    """As the SMS and the screens write it: KES 9,000 or KES 22,109.54."""
    whole, part = divmod(amount_cents, KES)
    return f"KES {whole:,}" + (f".{part:02d}" if part else "")


def balances(engine: Engine, member_id: int) -> dict[str, int]:
    with Session(engine) as s:
        ids = member_account_ids(s, member_id)
        return {
            purpose: ledger.get_balance(s, ids[purpose]).balance_cents
            for purpose in ("savings", "deposits", "shares")
        }


@pytest.mark.timeout(900)
def test_a_member_joins_saves_earns_is_paid_a_dividend_changes_phone_and_leaves(
    committed_pg: Engine, tmp_path: Path
) -> None:
    with start_daraja(port=0, delay=0) as daraja, start_at(port=0) as at:
        post(daraja.url + "/_control", {"outcomes": {OLD: 0, NEW: 0}})
        cert = tmp_path / "mpesa-standin-cert.pem"
        cert.write_bytes(daraja.certificate_pem)
        env = {
            "SACCO_ENV": "demo",
            "DATABASE_URL": PG_URL,
            "AT_BASE_URL": at.url,
            "AT_INSIGHTS_URL": at.url,
            "MPESA_BASE_URL": daraja.url,
            "MPESA_CERTIFICATE_PATH": str(cert),
            "EXIT_NOTICE_DAYS": "0",
        }
        totp: dict[str, str] = {}
        manage_at(JANUARY, ["seed-demo"], env)
        ledger_ok(JANUARY, env)

        # 1. January: staff sign in; the loan officer registers a walk-in at the branch.
        with serving(JANUARY, env, daraja) as server:
            for who in ("admin", "manager", "loans"):
                sign_in(server, who, totp)
            body = {
                "full_name": "Wanjiku Kamau",
                "msisdn": OLD,
                "national_id": "31234567",
                "date_of_birth": "1988-07-01",
                "language": "en",
                "consent": True,
                "next_of_kin": {"name": "Kamau Njoroge", "relationship": "Spouse",
                                "phone": "+254733100201"},
                "beneficiaries": [
                    {"name": "Kamau Njoroge", "relationship": "spouse", "id_kind": "national_id",
                     "id_number": "22334455", "share_percent": "100"},
                ],
            }  # fmt: skip
            made = server.api(
                "POST", "/members", "loans", json=body, headers={"Idempotency-Key": "walkin-1"}
            )
            assert made.status_code == 201, made.text
            member_id = made.json()["id"]
            code_sms = wait_sms(at.url, OLD, r"PIN reset code is \d{6}")
            code = re.search(r"code is (\d{6})", code_sms)[1]  # type: ignore[index]
            phone = server.phone(OLD)
            assert phone.dial() == "Enter the reset code from our SMS:"
            assert phone.send(code) == "Enter a new 4-digit PIN:"
            assert phone.send(PIN) == "Enter the PIN again:"
            assert phone.send(PIN) == "PIN changed. Dial again to use it." and phone.ended

            # The admin adds a second manager (approved by the first): the checker of the
            # savings rate and the year end.
            asked = server.api("POST", "/staff", "admin", json={
                "username": "manager2", "full_name": "Mary Manager", "role": "manager",
                "branch": None, "password": FIRST_PASSWORD})  # fmt: skip
            assert asked.status_code == 202, asked.text
            approve(server, asked.json()["id"], "manager")
            sign_in(server, "manager2", totp, password=FIRST_PASSWORD)
            changed = server.api("POST", "/auth/password", "manager2", json={
                "current_password": FIRST_PASSWORD, "new_password": STAFF["manager2"]})  # fmt: skip
            assert changed.status_code == 204, changed.text
            # Ordinary savings earns 6% a year from now on (maker-checker).
            asked = server.api("PUT", "/savings-products/1", "manager", json={"rate_percent": "6"})
            assert asked.status_code == 202, asked.text
            approve(server, asked.json()["id"], "manager2")
            ledger_ok(JANUARY, env)

            # 2. January's savings on USSD, paid by M-Pesa (the Daraja stand-in): savings,
            # share capital and the month's deposits.
            for kes, target in ((20_000, "savings"), (5_000, "shares"), (3_000, "deposits")):
                deposit(server, committed_pg, member_id, kes, target)
                wait_sms(at.url, OLD, rf"KES {kes:,} received into your {target} account\.")
            manage_at(JANUARY, ["savings-accrue"], env)  # the first run: 5 January alone
        ledger_ok(JANUARY, env)

        # February and March: the server a month on each time, the month's deposits.
        for month in (FEBRUARY, MARCH):
            with serving(month, env, daraja) as server:
                deposit(server, committed_pg, member_id, 3_000, "deposits")
            ledger_ok(month, env)
        held = balances(committed_pg, member_id)
        assert held == {"savings": 20_000 * KES, "shares": 5_000 * KES, "deposits": 9_000 * KES}

        # 3. 1 April: interest accrued daily and posted at each month end, net of 15% tax.
        out = manage_at(APRIL, ["savings-accrue"], env)
        assert "2025-03-31 ran" in out, out
        interest = balances(committed_pg, member_id)["savings"] - held["savings"]
        # 6% on KES 20,000 from 6 January to 31 March (85 days), less 15%: about KES 237.
        assert 23_000 < interest < 24_500, interest
        ledger_ok(APRIL, env)

        # 4. January 2026: interest to the year's end, then the year end for 2025.
        manage_at(NEXT_YEAR, ["savings-accrue"], env)
        ledger_ok(NEXT_YEAR, env)
        with serving(NEXT_YEAR, env, daraja) as server:
            for who in ("manager", "manager2", "loans"):
                sign_in(server, who, totp)
            # The interest SMS queued by the runs went out once the server was back: their
            # net amounts add up to the interest the ledger credited.
            wait_sms(at.url, OLD, r"interest on your savings to 31/12/2025")
            before = balances(committed_pg, member_id)
            nets = [
                cents(m) for m in re.findall(r"([\d,.]+) credited", " ".join(sms_to(at.url, OLD)))
            ]
            assert len(nets) == 12 and sum(nets) == before["savings"] - 20_000 * KES, nets

            # The reserves the SACCO built before 2025 (its opening retained earnings), booked
            # through maker-checker: without them core capital would fall below 10%.
            asked = server.api("POST", "/ledger/adjustments", "manager", json={
                "debit_account": "1000", "credit_account": "3200", "amount_cents": RESERVES,
                "memo": "retained earnings brought forward", "note": "opening reserves"})  # fmt: skip
            assert asked.status_code == 202, asked.text
            approve(server, asked.json()["id"], "manager2")
            # The board's rates: 12% dividend on shares, 8% rebate on deposits (monthly pro
            # rata); previewed, submitted by one manager, approved by the other.
            made = server.api("POST", "/year-end/runs", "manager", json={
                "financial_year": 2025, "dividend_rate_percent": "12",
                "rebate_rate_percent": "8"})  # fmt: skip
            assert made.status_code == 201, made.text
            run = made.json()["id"]
            shown = server.api("GET", f"/year-end/runs/{run}/preview", "manager").json()
            mine = [x for x in shown["lines"] if x["member_id"] == member_id]
            # Shares KES 5,000 x 12% = 600, tax 5% = 30; deposits 3,000 in each of January,
            # February and March for the 11, 10 and 9 months left: 7,500 x 8% = 600, tax 15%
            # = 90 (the Income Tax Act's rate on interest, which a rebate is).
            assert [
                (x["dividend_gross_cents"], x["rebate_gross_cents"], x["tax_cents"], x["net_cents"])
                for x in mine
            ] == [(60_000, 60_000, 12_000, 108_000)], mine
            assert shown["below_minimum"] == []
            asked = server.api("POST", f"/year-end/runs/{run}/submit", "manager", json={})
            assert asked.status_code == 202, asked.text
            approve(server, asked.json()["id"], "manager2")
            wait_sms(
                at.url, OLD,
                r"2025 dividend KES 600 \+ rebate KES 600 - tax KES 120 = KES 1,080, paid to "
                r"your savings\.",
            )  # fmt: skip
            after = balances(committed_pg, member_id)
            assert after == {**before, "savings": before["savings"] + 108_000}
            ledger_ok(NEXT_YEAR, env)

            # 5. A lost SIM: the loan officer checks the ID and asks, the manager approves.
            asked = server.api("POST", f"/members/{member_id}/phone-change", "loans",
                               json={"msisdn": NEW, "id_checked": True, "note": "lost SIM"})  # fmt: skip
            assert asked.status_code == 202, asked.text
            approve(server, asked.json()["id"], "manager")
            # The old number is a stranger now: a new caller's first screen, not the menu.
            old = server.phone(OLD).dial()
            assert old.startswith("Welcome to Umoja SACCO. Choose language:"), old
            new = server.phone(NEW)
            assert new.dial().startswith("Umoja SACCO\n1. Check balances")
            assert new.send("1") == "Enter your PIN:"
            assert new.send(PIN).startswith(f"Savings {kes_text(after['savings'])}\n")
            wait_sms(
                at.url,
                OLD,
                r"phone was changed to \+2547\*{5}299 on .*\. This number no longer works",
            )
            wait_sms(at.url, NEW, r"now uses this phone \(was \+2547\*{5}200\)")
            ledger_ok(NEXT_YEAR, env)

        # 6. Two weeks on (past the SIM-swap window a new line starts), the member leaves,
        # the refund by M-Pesa (EXIT_NOTICE_DAYS=0: due today).
        with serving(LEAVING, env, daraja) as server:
            for who in ("manager", "manager2"):
                sign_in(server, who, totp)
            gave = server.api("POST", f"/members/{member_id}/exit", "manager2",
                              json={"reason": "moving abroad", "refund_method": "mpesa"})  # fmt: skip
            assert gave.status_code == 201, gave.text
            manage_at(LEAVING, ["exit-run", "--maker", "manager2"], env)
            pending = server.api("GET", "/approvals?status=pending", "manager").json()["items"]
            exits = [a for a in pending if a["action"] == "member.exit"]
            assert [a["member_id"] for a in exits] == [member_id], pending
            held = balances(committed_pg, member_id)  # what the ledger says the member has
            approve(server, exits[0]["id"], "manager")
            total = sum(held.values())
            # M-Pesa pays whole shillings: the odd cents wait at the branch.
            sent, branch = total - total % KES, total % KES
            told = wait_sms(at.url, NEW, r"you have left\. Loans repaid .*\. Refund ")
            assert f"Refund {kes_text(sent)} to M-Pesa" in told, (held, told)
            assert f"; {kes_text(branch)} at the branch" in told or branch == 0, (held, told)
            paid = wait_sms(at.url, NEW, r"your exit refund KES [\d,.]+ was sent to M-Pesa")
            assert f"exit refund {kes_text(sent)} was sent" in paid, (held, paid)
            assert balances(committed_pg, member_id) == dict.fromkeys(held, 0)
            with Session(committed_pg) as s:
                refund = s.scalars(select(B2CPayout).where(B2CPayout.amount_cents == sent)).all()
            assert [(p.status, p.amount_cents) for p in refund] == [("succeeded", sent)]
            shown = server.api("GET", f"/members/{member_id}", "manager").json()
            assert shown["status"] == "exited", shown
            ledger_ok(LEAVING, env)
    ledger_ok(LEAVING, env)
