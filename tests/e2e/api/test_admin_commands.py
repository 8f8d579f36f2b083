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
    with app.extensions["sacco"].unit_of_work() as s:
        roles = sorted(s.scalars(select(StaffUser.role)))
    app.extensions["sacco"].engine.dispose()
    assert roles == ["admin", "auditor", "loan_officer", "manager", "teller"]


def test_the_demo_back_office_works_on_sqlite(tmp_path: Path) -> None:
    """The embedded default: teller (TOTP) deposit, manager (TOTP) approves a PIN reset."""
    import pyotp

    env = demo_env(tmp_path)
    run(["migrate"], env)
    assert run(["seed-demo"], env).returncode == 0
    app = create_app(
        load_settings(
            sacco_env="demo", database_url=env["DATABASE_URL"], document_dir=str(tmp_path / "docs")
        )  # fmt: skip
    )
    client = app.test_client()

    def login(username: str, password: str) -> dict:  # type: ignore[type-arg]
        r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.json
        return dict(r.json or {})

    def enrolled(username: str, password: str) -> dict[str, str]:
        """Sign in for the first time: every demo role but the auditor enrols TOTP."""
        first = login(username, password)
        e = {"Authorization": f"Bearer {first['mfa_token']}"}
        secret = (client.post("/api/v1/auth/mfa/enrol", headers=e).json or {})["secret"]
        confirmed = client.post("/api/v1/auth/mfa/confirm", headers=e,
                                json={"code": pyotp.TOTP(secret).now()}).json  # fmt: skip
        assert confirmed is not None
        return {"Authorization": f"Bearer {confirmed['tokens']['access_token']}"}

    t = enrolled("teller", "mango-market-2026")
    found = client.get("/api/v1/members?phone=0712000001", headers=t).json
    assert found is not None
    (amina,) = found["items"]
    dep = client.post(f"/api/v1/members/{amina['id']}/deposits", json={"amount_cents": 250_00},
                      headers={**t, "Idempotency-Key": "demo-till-0001"})  # fmt: skip
    assert dep.status_code == 201
    # At the counter (no SIM-swap stand-in runs here: a remote reset would be refused).
    req = client.post(f"/api/v1/members/{amina['id']}/pin-reset", headers=t,
                      json={"in_person": True}).json  # fmt: skip
    assert req is not None and req["status"] == "pending"

    m = enrolled("manager", "baobab-shade-2026")
    approved = client.post(f"/api/v1/approvals/{req['id']}/approve", headers=m, json={})
    assert approved.json is not None and approved.json["status"] == "approved"
    audit_rows = client.get("/api/v1/audit?limit=100", headers=m).json
    assert audit_rows is not None and len(audit_rows["items"]) > 5
    app.extensions["sacco"].engine.dispose()
    assert run(["verify-audit"], env).returncode == 0
    assert run(["verify-ledger"], env).returncode == 0
