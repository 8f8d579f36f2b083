"""The first administrator and the demo staff, as an operator creates them (real processes,
the embedded SQLite demo database)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app_factory import create_app
from config import load_settings
from db.models import StaffUser
from tests.e2e.test_commands import demo_env, run


def test_create_admin_then_sign_in_and_enrol_mfa(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    weak = run(["create-admin", "--username", "root", "--full-name", "Root Admin",
                "--password", "password123"], env)  # fmt: skip
    assert weak.returncode == 1
    assert "at least 12 characters" in weak.stderr
    made = run(["create-admin", "--username", "Wanjiru.Admin", "--full-name", "Wanjiru K",
                "--password", "a long and quiet river"], env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "administrator wanjiru.admin created" in made.stdout
    app = create_app(
        load_settings(
            sacco_env="demo", database_url=env["DATABASE_URL"], document_dir=str(tmp_path / "docs")
        )  # fmt: skip
    )
    client = app.test_client()
    r = client.post("/api/v1/auth/login",
                    json={"username": "wanjiru.admin", "password": "a long and quiet river"})  # fmt: skip
    assert r.status_code == 200
    assert r.json is not None and r.json["stage"] == "mfa_enrol"
    enrol = client.post("/api/v1/auth/mfa/enrol",
                        headers={"Authorization": f"Bearer {r.json['mfa_token']}"})  # fmt: skip
    assert enrol.status_code == 200
    app.extensions["sacco"].engine.dispose()


def test_seed_demo_creates_staff_of_every_role_and_prints_how_to_sign_in(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    run(["migrate"], env)
    seeded = run(["seed-demo"], env)
    assert seeded.returncode == 0, seeded.stderr
    for username in ("admin", "manager", "loans", "teller", "auditor"):
        assert f"  {username} " in seeded.stdout
    assert "DEMO ONLY" in seeded.stdout
    again = run(["seed-demo"], env)
    assert "demo staff already present" in again.stdout
    assert run(["verify-audit"], env).returncode == 0
    app = create_app(load_settings(sacco_env="demo", database_url=env["DATABASE_URL"]))
    with app.extensions["sacco"].session() as s:
        roles = sorted(s.scalars(select(StaffUser.role)))
    app.extensions["sacco"].engine.dispose()
    assert roles == ["admin", "auditor", "loan_officer", "manager", "teller"]
