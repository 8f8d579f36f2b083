"""Real server processes for end-to-end tests: gunicorn on a free loopback port.

The child gets a clean environment (only what is passed plus PATH/HOME/locale),
so a developer's own ``DATABASE_URL`` or ``REDIS_URL`` never leaks into a test.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import requests

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SACCO_TEST_CLOCK")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def production_env(ussd_token: str, trusted_proxy_hops: int) -> dict[str, str]:
    """Production settings with fresh random secrets, on the test PostgreSQL and Redis."""
    from cryptography.fernet import Fernet

    from tests.settings import PG_URL, REDIS_URL

    return {
        "SACCO_ENV": "production",
        "DATABASE_URL": PG_URL,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "JWT_SECRET_KEY": secrets.token_urlsafe(32),
        "PIN_PEPPER": secrets.token_urlsafe(32),
        "PII_KEYS": Fernet.generate_key().decode(),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "USSD_CALLBACK_TOKEN": ussd_token,
        "SMS_CALLBACK_TOKEN": secrets.token_urlsafe(24),
        "TRUSTED_PROXY_HOPS": str(trusted_proxy_hops),
    }


def flush_redis(url: str) -> None:
    """Empty the test's Redis database (sessions, queues, rate limits)."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def run_manage(args: list[str], env: Mapping[str, str], *, stderr: bool = False) -> str:
    """``python manage.py …`` as an operator runs it; raises with its output on failure.
    Returns what it printed (``stderr=True``: its log lines on standard error too)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + (done.stderr if stderr else "")


@contextmanager
def gunicorn(
    env: Mapping[str, str], app: str = "wsgi:app", output: IO[str] | None = None
) -> Iterator[str]:
    """Serve ``app`` with the project's gunicorn config; yields the base URL. ``output``: a
    file that receives everything gunicorn and the app write (else a temporary one)."""
    port = free_port()
    with _log_file(output) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", app],
            cwd=ROOT,
            env=clean_env({**env, "HOST": "127.0.0.1", "PORT": str(port)}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(proc, base, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextmanager
def _log_file(given: IO[str] | None) -> Iterator[IO[str]]:
    if given is not None:
        yield given
        return
    with tempfile.TemporaryFile(mode="w+") as log:
        yield log


def _wait_until_up(proc: subprocess.Popen[bytes], base: str, log: IO[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"gunicorn exited with {proc.returncode}:\n{log.read()[-4000:]}")
        try:
            with requests.get(f"{base}/healthz", timeout=3) as resp:
                if resp.status_code == 200:
                    return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    log.seek(0)
    raise AssertionError(
        f"gunicorn did not answer /healthz in {START_TIMEOUT_S}s:\n{log.read()[-4000:]}"
    )
