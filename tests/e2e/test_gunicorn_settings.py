"""gunicorn reads the app's settings object (deploy/gunicorn.conf.py): a wrong setting
stops the server at once with the app's one-line message, before any worker boots."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.servers import ROOT, clean_env, free_port


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=clean_env({**env, "PORT": str(free_port())}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_without_secrets_stops_gunicorn_with_one_clear_line() -> None:
    done = start({"SACCO_ENV": "production"})
    assert done.returncode != 0
    assert "production needs DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr


def test_the_renamed_threshold_stops_gunicorn_naming_the_new_variable() -> None:
    done = start({"SACCO_ENV": "demo", "APPROVAL_MANAGER_THRESHOLD_CENTS": "5000000"})
    assert done.returncode != 0
    assert "APPROVAL_MANAGER_THRESHOLD_CENTS was renamed APPROVAL_MANAGER_THRESHOLD_KES" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
