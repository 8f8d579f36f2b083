"""The operator commands and the demo server, as a newcomer runs them (real processes)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        SACCO_ENV="demo", DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}", PYTHONPATH=str(ROOT)
    )
    return env


def test_migrate_seed_and_verify_ledger_then_tampering_is_caught(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    seeded = run(["seed-demo"], env)
    assert seeded.returncode == 0 and "Amina Wanjiru" in seeded.stdout
    assert "already present" in run(["seed-demo"], env).stdout
    ok = run(["verify-ledger"], env)
    assert ok.returncode == 0 and "ledger OK" in ok.stdout
    tb = run(["trial-balance"], env)
    assert tb.returncode == 0 and "balanced" in tb.stdout
    fit = run(["fit-scorecard", "--write"], env)  # the demo's few loans: the expert table stays
    assert fit.returncode == 1 and "defaulted loans: at least 100 are needed" in fit.stderr
    with sqlite3.connect(tmp_path / "demo.db") as db:
        assert db.execute("SELECT version, source FROM scorecards").fetchall() == [
            (1, "expert"),
            (2, "expert"),
        ]
    with sqlite3.connect(tmp_path / "demo.db") as db:
        db.execute(
            "UPDATE accounts SET balance_cents = balance_cents + 100 WHERE code LIKE '2000-%' AND id = (SELECT MIN(id) FROM accounts WHERE code LIKE '2000-%')"
        )
    bad = run(["verify-ledger"], env)
    assert bad.returncode == 1 and "MISMATCH" in bad.stderr


def test_production_start_without_secrets_stops_with_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SACCO_ENV", "DATABASE_URL")}
    result = run(["verify-ledger"], env)
    assert result.returncode == 2
    assert "production needs DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_serves_health_with_no_postgres_or_redis(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    port = free_port()
    env["PORT"] = str(port)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(f"{base}/healthz", timeout=2)
                break
            # Listening before its worker has booted: on a busy machine the first request
            # can wait past its timeout. Not up yet, not a failure.
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "redis": "not configured"}
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_register_urls_with_a_missing_certificate_says_so_in_one_line(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    env["MPESA_CERTIFICATE_PATH"] = str(tmp_path / "missing.pem")
    assert run(["migrate"], env).returncode == 0
    done = run(["mpesa-register-urls"], env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"MPESA_CERTIFICATE_PATH: No such file or directory: {tmp_path / 'missing.pem'}"
    )


def test_the_settings_file_the_units_read_is_read_by_manage_py(tmp_path: Path) -> None:
    """`manage.py --env-file /etc/sacco/env CMD` (or SACCO_ENV_FILE) instead of guessing
    `set -a; . /etc/sacco/env`; a variable already set wins over the file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SACCO_", "DATABASE_"))}
    base["PYTHONPATH"] = str(ROOT)
    settings = tmp_path / "env"
    settings.write_text(
        f"# as /etc/sacco/env\nSACCO_ENV=demo\nDATABASE_URL='sqlite:///{tmp_path / 'live.db'}'\n"
    )
    assert run(["--env-file", str(settings), "migrate"], base).returncode == 0
    ok = run(["verify-ledger"], {**base, "SACCO_ENV_FILE": str(settings)})
    assert ok.returncode == 0 and "ledger OK" in ok.stdout
    assert (tmp_path / "live.db").exists()
    # The shell's DATABASE_URL wins: a restored copy checked with the live file's keys.
    copy = tmp_path / "restored.db"
    env = {**base, "DATABASE_URL": f"sqlite:///{copy}"}
    assert run(["--env-file", str(settings), "migrate"], env).returncode == 0
    assert copy.exists()
    missing = run(["--env-file", str(tmp_path / "nope"), "verify-ledger"], base)
    assert missing.returncode == 2 and "cannot read the settings file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_mark_dormant_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    """(What it marks, on both databases: tests/integration/test_dormancy.py.)"""
    bad = run(["mark-dormant"], {**demo_env(tmp_path), "DORMANCY_MONTHS": "0"})
    assert bad.returncode == 2 and "DORMANCY_MONTHS" in bad.stderr.upper()
    assert "Traceback" not in bad.stderr
    months = run(["mark-dormant", "--months", "0"], demo_env(tmp_path))
    assert months.returncode == 2 and "--months" in months.stderr
