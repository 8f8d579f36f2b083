"""Operator commands cannot get round separation of duties (real processes, SQLite files).

``seed-demo`` (known passwords, money out of nowhere) runs only in demo/development;
``create-admin`` bootstraps an empty system only; the first manager comes from
``create-first-manager``, once; every later account that can move money or read personal
data is asked for by one person and approved by another through the API.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.e2e.test_commands import demo_env, run


def counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        staff = conn.execute("SELECT COUNT(*) FROM staff_users").fetchone()[0]
        members = conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]
    return int(staff), int(members)


def test_seed_demo_refuses_outside_demo_and_development(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    refused = run(["seed-demo"], {**env, "SACCO_ENV": "test"})
    assert refused.returncode == 2
    assert "seed-demo runs only with SACCO_ENV=demo or development" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert counts(tmp_path / "demo.db") == (0, 0)  # no known passwords, no money
    assert run(["seed-demo"], {**env, "SACCO_ENV": "development"}).returncode == 0
    assert counts(tmp_path / "demo.db") != (0, 0)


def test_the_command_line_bootstraps_one_admin_and_one_first_manager_then_only_the_api(
    tmp_path: Path,
) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0

    def make(command: str, username: str):  # type: ignore[no-untyped-def]
        return run([command, "--username", username, "--full-name", f"{username} K",
                    "--password", "a long and quiet river"], env)  # fmt: skip

    first = make("create-admin", "grace.admin")
    assert first.returncode == 0, first.stderr
    again = make("create-admin", "second.admin")
    assert again.returncode == 1 and "bootstrap_closed" in again.stderr
    assert "POST /api/v1/staff" in again.stderr
    manager = make("create-first-manager", "peter.manager")
    assert manager.returncode == 0, manager.stderr
    second = make("create-first-manager", "puppet.manager")
    assert second.returncode == 1 and "bootstrap_closed" in second.stderr
    assert counts(tmp_path / "demo.db") == (2, 0)
    with sqlite3.connect(tmp_path / "demo.db") as conn:
        roles = sorted(r for (r,) in conn.execute("SELECT role FROM staff_users"))
    assert roles == ["admin", "manager"]
    assert run(["verify-audit"], env).returncode == 0
