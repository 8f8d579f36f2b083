"""A loan's whole life over HTTP, as the README's demo walk shows it (issue 12).

gunicorn serves the demo profile (``SACCO_ENV=demo``: one worker, jobs and SMS delivery
in-process) on the PostgreSQL test database, seeded by ``manage.py seed-demo``, beside
the Africa's Talking and Daraja stand-ins. The test runs the README's "A loan, start to
end" block itself, in one bash, step by step: member A applies on USSD (the gateway's
exact POST, through the terminal phone), guarantor B accepts on a second phone with the
PIN, the loan officer recommends and the manager approves over the staff API (TOTP
enrolled on first sign-in), the loan is paid into savings, A repays from savings on USSD
and the rest by a paybill payment with the loan's reference as the account (the Daraja
confirmation, sent by the stand-in) until it closes. After every step it runs
``manage.py verify-ledger`` as an operator would and checks what the members read by
SMS (the Africa's Talking stand-in) and what the loan book holds.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import requests
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.models_loans import Loan, LoanApplication, LoanGuarantee
from integrations.africastalking.standin import start_standin as start_at
from integrations.mpesa.standin import start_standin as start_daraja
from tests.e2e.mpesa_harness import post, wait_for
from tests.e2e.servers import ROOT, clean_env, gunicorn, run_manage
from tests.settings import PG_URL
from tools.demo import DEMO_PHONES

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
HEADING = "### A loan, start to end"
DEMO_URL, DEMO_DARAJA = "http://127.0.0.1:8000", "http://127.0.0.1:8702"
AMINA, OTIENO = "+254712000001", "+254722000002"
DONE = "@@step-done"


def readme_steps() -> list[str]:
    """The README's walk: its ``sh`` block cut at the numbered comments (``# 1.``); the
    lines before the first (the URLs and the phone) are step 0."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(HEADING) :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's loan walk has no sh block"
    steps: list[list[str]] = [[]]
    for line in block[1].splitlines():
        if re.match(r"# \d+\. ", line):
            steps.append([])
        steps[-1].append(line)
    return ["\n".join(step) for step in steps]


@dataclass
class Walk:
    """One bash running the README's steps; ``step()`` lets it run the next and returns
    what it printed."""

    proc: subprocess.Popen[str]
    stdout: IO[str]
    stdin: IO[str]

    def step(self) -> str:
        self.stdin.write("\n")
        self.stdin.flush()
        lines = []
        for line in self.stdout:
            if line.rstrip("\n").endswith(DONE):  # after a prompt with no newline, maybe
                lines.append(line.rstrip("\n").removesuffix(DONE))
                return "".join(lines)
            lines.append(line)
        raise AssertionError(f"the walk stopped (exit {self.proc.wait()}):\n{''.join(lines)}")


@contextmanager
def run_walk(steps: list[str], base: str, daraja: str) -> Iterator[Walk]:
    """bash with the README's steps, the demo's URLs swapped for this test's servers; it
    waits for a line on its stdin before each step, and prints ``DONE`` after it."""
    parts = ["set -euo pipefail"]
    for step in steps:
        parts += ["read -r _", step.replace(DEMO_URL, base).replace(DEMO_DARAJA, daraja)]
        parts.append(f"echo {DONE}")
    proc = subprocess.Popen(
        ["bash", "-c", "\n".join(parts)],
        cwd=ROOT,
        env=clean_env({}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield Walk(proc, proc.stdout, proc.stdin)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def screens(output: str) -> str:
    """The terminal phone's framed screens as one line of text."""
    framed = [line[2:-2] for line in output.splitlines() if line.startswith("| ")]
    return re.sub(r"\s+", " ", " ".join(framed))


def sms_to(at_url: str, msisdn: str) -> list[str]:
    with requests.get(f"{at_url}/_messages", params={"to": msisdn}, timeout=5) as r:
        return [m["message"] for m in r.json()["messages"]]


def wait_sms(at_url: str, msisdn: str, pattern: str) -> str:
    """The SMS to ``msisdn`` the stand-in accepted that matches ``pattern``."""

    def found() -> str | None:
        return next((m for m in sms_to(at_url, msisdn) if re.search(pattern, m)), None)

    return str(wait_for(found, timeout=120, what=f"an SMS to {msisdn} matching {pattern!r}"))


def ledger_ok(env: dict[str, str]) -> None:
    out = run_manage(["verify-ledger"], env)
    assert "ledger OK" in out, out


def book(engine: Engine, phone: str) -> tuple[LoanApplication, Loan | None, list[LoanGuarantee]]:
    """Amina's latest application, its loan and guarantees, as the book holds them."""
    from db.models import Member

    with Session(engine) as s:
        member_id = s.scalar(select(Member.id).where(Member.msisdn == phone))
        application = s.scalars(
            select(LoanApplication)
            .where(LoanApplication.member_id == member_id)
            .order_by(LoanApplication.id.desc())
        ).first()
        assert application is not None
        loan = s.scalar(select(Loan).where(Loan.application_id == application.id))
        pledges = list(
            s.scalars(select(LoanGuarantee).where(LoanGuarantee.application_id == application.id))
        )
        s.expunge_all()
    return application, loan, pledges


def last_json(output: str) -> Any:
    """The last JSON object a step printed on a line of its own (an API answer; the
    terminal phone's last prompt may precede it)."""
    for line in reversed(output.splitlines()):
        if "{" in line and line.rstrip().endswith("}"):
            return json.loads(line[line.index("{") :])
    raise AssertionError(f"no JSON answer in:\n{output}")


def test_the_readme_loan_walk_from_application_to_closed_loan(
    committed_pg: Engine, tmp_path: Path
) -> None:
    steps = readme_steps()
    assert len(steps) == 7, "step 0 (the set-up) and the six numbered steps"
    with start_daraja(port=0, delay=0) as daraja, start_at(port=0) as at:
        post(daraja.url + "/_control", {"outcomes": dict.fromkeys(DEMO_PHONES, 0)})
        cert = tmp_path / "mpesa-standin-cert.pem"
        cert.write_bytes(daraja.certificate_pem)
        env = {
            "SACCO_ENV": "demo",
            "DATABASE_URL": PG_URL,
            "AT_BASE_URL": at.url,
            "AT_INSIGHTS_URL": at.url,
            "MPESA_BASE_URL": daraja.url,
            "MPESA_CERTIFICATE_PATH": str(cert),
        }
        seeded = run_manage(["seed-demo"], env)
        assert "loan " in seeded and "demo SACCO seeded" in seeded
        ledger_ok(env)
        with gunicorn(env) as base:
            env["MPESA_CALLBACK_BASE_URL"] = base  # as tools/demo.py registers them
            daraja.state.callback_base = base
            run_manage(["mpesa-register-urls"], env)
            with run_walk(steps, base, daraja.url) as shell:
                _walk(shell, env, at.url, committed_pg)
            daraja.state.join_workers(timeout=30)
    ledger_ok(env)


def _walk(walk: Walk, env: dict[str, str], at_url: str, engine: Engine) -> None:
    assert walk.step().strip() == ""  # step 0: the URLs and the phone function, nothing printed

    # 1. Amina applies on USSD and asks Otieno to pledge.
    shown = screens(walk.step())
    assert "Loan KES 25,000, 12 months" in shown
    assert "guarantors must pledge KES 5,000" in shown, shown
    application, loan, pledges = book(engine, AMINA)
    assert (application.status, application.amount_cents, loan) == (
        "awaiting_guarantors",
        2_500_000,
        None,
    )
    assert [(p.status, p.amount_cents) for p in pledges] == [("requested", 500_000)]
    # In Swahili, Otieno's language: Amina asks for a pledge; accept on USSD > Mikopo.
    asked = wait_sms(at_url, OTIENO, r"Amina \(\d+\) anakuomba dhamana ya KES 5,000")
    assert "Mikopo" in asked and len(asked) <= 160
    ledger_ok(env)

    # 2. Otieno accepts on his phone, with his PIN: the pledge is held, Amina is told.
    shown = screens(walk.step())
    assert "Amina Wanjiru" in shown, shown
    application, loan, pledges = book(engine, AMINA)
    assert application.status == "pending_approval" and loan is None
    assert [(p.status, p.amount_cents) for p in pledges] == [("accepted", 500_000)]
    wait_sms(
        at_url,
        AMINA,
        rf"Otieno pledged KES 5,000 for your loan {application.reference}\. "
        r"Still needed from guarantors: KES 0\.",
    )
    ledger_ok(env)

    # 3. Recommended by the loan officer, approved by the manager: paid to savings.
    out = walk.step()
    approved = last_json(out)
    assert approved["status"] == "approved", out
    assert approved["action"] == "loan.approve"
    application, loan, _ = book(engine, AMINA)
    assert application.status == "disbursed" and loan is not None
    assert loan.principal_cents == 2_500_000 and loan.status == "active"
    wait_sms(
        at_url,
        AMINA,
        rf"loan {loan.reference} of KES 25,000 paid to your savings "
        r"\(KES 24,750 after fees\)",
    )
    ledger_ok(env)

    # 4. KES 2,000 from savings on USSD.
    shown = screens(walk.step())
    assert f"Paid KES 2,000 to loan {loan.reference}" in shown, shown
    wait_sms(at_url, AMINA, rf"KES 2,000 received for loan {loan.reference}\. .*Loan balance")
    ledger_ok(env)

    # 5. The loan's reference on USSD (My loans), then the paybill payment through Daraja's C2B.
    out = walk.step()
    assert f"Loan {loan.reference}: " in screens(out), out
    paid = last_json(out)
    assert paid["completed"] is True, out
    wait_sms(at_url, AMINA, rf"Loan {loan.reference} is fully repaid and closed")
    ledger_ok(env)

    # 6. The API says closed; the last SMS in the simulator's inbox says so too.
    out = walk.step()
    assert json.loads(out.splitlines()[0]) == {"reference": loan.reference, "status": "closed"}
    assert loan.reference in out.splitlines()[1]
    _, closed, pledges = book(engine, AMINA)
    assert closed is not None and closed.status == "closed"
    assert [p.status for p in pledges] == ["released"]
    ledger_ok(env)
