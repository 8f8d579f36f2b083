"""``make demo``'s path: gunicorn with SACCO_ENV=demo on a SQLite file, no PostgreSQL, no Redis."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import requests

from tests.e2e.servers import ROOT, clean_env, gunicorn, run_manage


def test_the_embedded_demo_serves_health_and_readiness_without_postgres_or_redis(
    tmp_path: Path,
) -> None:
    env = {"SACCO_ENV": "demo", "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    run_manage(["migrate"], env)
    with gunicorn(env) as base, requests.Session() as http:
        health = http.get(f"{base}/healthz", timeout=5)
        ready = http.get(f"{base}/readyz", timeout=5)
        page = http.get(f"{base}/simulator", timeout=5)
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "not configured"}
    assert page.status_code == 200  # the demo ships the phone simulator


def test_the_terminal_phone_registers_a_member_on_the_demo(tmp_path: Path) -> None:
    """``python -m tools.phone`` (what ``make phone`` runs), typed at like a member would."""
    env = {"SACCO_ENV": "demo", "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    run_manage(["migrate"], env)
    typed = "\n".join(["1", "Mary Wambui", "27654321", "1", "6041", "6041", "n", ""])
    with gunicorn(env) as base:
        done = subprocess.run(
            [sys.executable, "-m", "tools.phone", "--url", base, "--phone", "+254700000055"],
            cwd=ROOT,
            env=clean_env({}),
            input=typed,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        with requests.Session() as http:
            inbox = http.get(f"{base}/simulator/inbox?phone=%2B254700000055", timeout=5).json()
    assert done.returncode == 0, done.stderr
    # The phone draws screens in a 32-column frame: read them back as plain text.
    framed = [line[2:-2] for line in done.stdout.splitlines() if line.startswith("| ")]
    screens = re.sub(r"\s+", " ", " ".join(framed))
    assert "Choose language" in screens
    assert "Register (4/4)" in screens
    assert "we will SMS your member number" in screens, screens
    assert [m["template"] for m in inbox["messages"]] == ["member_registered"]
    assert "Mary" in inbox["messages"][0]["body"]
    assert re.search(r"member number is \d+", inbox["messages"][0]["body"])


def test_a_ussd_deposit_on_the_demo_shows_the_receipt_sms_and_the_new_balance(
    tmp_path: Path,
) -> None:
    """What ``make demo`` wires: gunicorn (SQLite, no Redis, in-process jobs and SMS
    delivery) beside the Daraja and Africa's Talking stand-ins; the seeded member's
    payment succeeds (``--outcome``) and the stand-in calls the app back."""
    from integrations.africastalking.standin import start_standin as start_at
    from integrations.mpesa.standin import start_standin as start_daraja
    from tests.e2e.gateway import GatewayPhone
    from tests.e2e.mpesa_harness import post, wait_for

    member = "+254712000001"  # Amina, seeded by seed-demo, PIN 4826
    cert = tmp_path / "mpesa-standin-cert.pem"
    with start_daraja(port=0, delay=0.2) as daraja, start_at(port=0) as at:
        cert.write_bytes(daraja.certificate_pem)
        post(daraja.url + "/_control", {"outcomes": {member: 0}})
        env = {
            "SACCO_ENV": "demo",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
            "MPESA_BASE_URL": daraja.url,
            "MPESA_CERTIFICATE_PATH": str(cert),
            "AT_BASE_URL": at.url,
            "AT_INSIGHTS_URL": at.url,
        }
        run_manage(["migrate"], env)
        run_manage(["seed-demo"], env)
        with gunicorn(env) as base, requests.Session() as http:
            daraja.state.callback_base = base  # as --callback-base does in make demo
            inbox_url = f"{base}/simulator/inbox?phone=%2B254712000001"

            def receipts() -> list[dict[str, str]]:  # of this deposit, not the seeded ones
                messages = http.get(inbox_url, timeout=5).json()["messages"]
                return [
                    m
                    for m in messages
                    if m["template"] == "deposit_received" and m["id"] not in seeded
                ]

            # The seeded deposits' receipts (every credit sends one) are there already.
            seeded = {m["id"] for m in http.get(inbox_url, timeout=5).json()["messages"]}
            phone = GatewayPhone(http, base, member)
            before = [phone.dial(), phone.send("1"), phone.send("4826")][-1]
            phone.dial()
            for typed in ("5", "500", "1", "1"):
                phone.send(typed)
            done = phone.send("4826")
            assert done.startswith("Approve the M-Pesa prompt for KES 500 on +254712000001.")
            [receipt] = wait_for(receipts, what="the receipt SMS in the simulator inbox")
            after = [phone.dial(), phone.send("1"), phone.send("4826")][-1]
    assert "KES 500 received into your savings account" in receipt["body"]
    saved = [re.search(r"Savings KES ([\d,]+)", s) for s in (before, after)]
    assert saved[0] and saved[1]
    assert int(saved[1][1].replace(",", "")) - int(saved[0][1].replace(",", "")) == 500
    assert f"New balance KES {saved[1][1]}" in receipt["body"]
    assert "ledger OK" in run_manage(["verify-ledger"], env)
