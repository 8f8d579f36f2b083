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
    assert re.search(r"member number is \d+", screens), screens
    assert [m["template"] for m in inbox["messages"]] == ["member_registered"]
    assert "Mary" in inbox["messages"][0]["body"]
