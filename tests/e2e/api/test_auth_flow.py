"""Signing in: passwords, lockout, TOTP enrolment and replay, recovery codes, refresh
rotation with reuse detection, logout, idle and absolute limits, password change."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

import pyotp
import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.staff import accounts as staff_core
from core.staff.permissions import SYSTEM
from db.models import AuditEvent, StaffSession, StaffUser
from db.session import unit_of_work
from tests.e2e.api.conftest import PASSWORD, Staffer, auth, staff_row


def login(client: FlaskClient, username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def enrol(client: FlaskClient, token: str) -> tuple[pyotp.TOTP, dict]:  # type: ignore[type-arg]
    r = client.post("/api/v1/auth/mfa/enrol", headers=auth(token))
    assert r.status_code == 200, r.json
    assert r.json["provisioning_uri"].startswith("otpauth://totp/")
    assert base64.b64decode(r.json["qr_png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    totp = pyotp.TOTP(r.json["secret"])
    r = client.post("/api/v1/auth/mfa/confirm", headers=auth(token), json={"code": totp.now()})
    assert r.status_code == 200, r.json
    return totp, dict(r.json or {})


def _last_step(session_factory: sessionmaker[Session], staff_id: int) -> int:
    """The TOTP time step of the last code the server accepted for this staff member."""
    from db.models import StaffUser

    with unit_of_work(session_factory) as s:
        row = s.get(StaffUser, staff_id)
        assert row is not None and row.totp_last_step is not None
        return int(row.totp_last_step)


def _shift_steps(session_factory: sessionmaker[Session], staff_id: int) -> None:
    """Pretend the last accepted TOTP step was long ago (instead of waiting 30 s)."""
    from db.models import StaffUser

    with unit_of_work(session_factory) as s:
        row = s.get(StaffUser, staff_id)
        assert row is not None
        row.totp_last_step = (row.totp_last_step or 0) - 10
        s.commit()


def test_auditor_signs_in_with_password_and_gets_tokens(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    """The auditor (reads, changes nothing) is the one role without TOTP; tellers need it."""
    auditor = make_staff("auditor", branch="Nairobi")
    r = login(api, auditor.username)
    assert r.status_code == 200
    assert r.json["stage"] == "active"
    assert r.json["staff"]["role"] == "auditor"
    me = api.get("/api/v1/auth/me", headers=auth(r.json["access_token"]))
    assert me.status_code == 200
    assert "audit:read" in me.json["permissions"]
    assert me.json["branch"] == "Nairobi"


def test_wrong_password_and_unknown_user_get_the_same_answer(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    teller = make_staff("teller")
    wrong = login(api, teller.username, "not the password at all")
    unknown = login(api, "nobody-here", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json["detail"] == unknown.json["detail"] == "wrong username or password"
    assert wrong.mimetype == "application/problem+json"


def _answer(r) -> tuple[int, str, str, bool]:  # type: ignore[no-untyped-def]
    """What a caller sees of a sign-in answer (no request id, no timing)."""
    return (
        r.status_code,
        r.json.get("code", ""),
        r.json.get("detail", ""),
        "Retry-After" in r.headers,
    )


def test_wrong_passwords_throttle_a_name_the_same_whether_it_exists_or_not(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    """Nobody learns which usernames exist from the answers (no 423 for real ones only)."""
    teller = make_staff("teller")
    known = [_answer(login(api, teller.username, "wrong password 123")) for _ in range(6)]
    unknown = [_answer(login(api, "nobody-here", "wrong password 123")) for _ in range(6)]
    assert known == unknown
    assert [a[0] for a in known] == [401, 401, 401, 401, 401, 429]
    assert known[-1][3]  # Retry-After: the throttle ends by itself
    # The right password is throttled too while the name is: guessing gains nothing.
    assert login(api, teller.username).status_code == 429
    row = staff_row(session_factory, teller.id)
    assert row.locked_until is None  # no lock on the account itself


def test_nobody_can_lock_a_staff_account_by_failing_its_sign_in(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    """Failed passwords only throttle (it expires: here the limiter's window is emptied);
    the account needs no administrator to unlock it."""
    teller = make_staff("teller")
    for _ in range(12):
        login(api, teller.username, "wrong password 123")
    row = staff_row(session_factory, teller.id)
    assert row.locked_until is None and row.failed_logins == 0
    redis_client.flushdb()  # as when the throttle's window has passed
    assert login(api, teller.username).status_code == 200


def test_a_lock_is_told_only_to_whoever_knows_the_password(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    staff_by_role: dict[str, Staffer],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    """Wrong second factors still lock the account (only the password holder gets there);
    then a wrong password is answered as for an unknown name, the right one with 423."""
    teller = make_staff("teller")
    with unit_of_work(session_factory) as s:
        row = s.get(StaffUser, teller.id)
        assert row is not None
        row.locked_until = deps.now() + timedelta(minutes=15)
        s.commit()
    assert _answer(login(api, teller.username, "wrong password 123")) == _answer(
        login(api, "nobody-at-all", "wrong password 123")
    )
    locked = login(api, teller.username)
    assert locked.status_code == 423
    assert locked.json["code"] == "account_locked"
    assert "locked until" in locked.json["detail"]
    admin = staff_by_role["admin"]
    assert api.post(f"/api/v1/staff/{teller.id}/unlock", headers=auth(admin)).status_code == 200
    assert login(api, teller.username).status_code == 200


def test_wrong_second_factors_lock_the_account(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    officer = make_staff("loan_officer")
    totp, _ = enrol(api, login(api, officer.username).json["mfa_token"])
    answers = []
    for _ in range(5):
        pending = login(api, officer.username).json["mfa_token"]
        r = api.post("/api/v1/auth/mfa/verify", json={"mfa_token": pending, "code": "000000"})
        answers.append(r.status_code)
    assert answers == [401, 401, 401, 401, 423]
    assert login(api, officer.username).status_code == 423


def test_manager_must_enrol_mfa_then_sign_in_with_totp_never_replayed(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    manager = make_staff("manager")
    first = login(api, manager.username)
    assert first.json["stage"] == "mfa_enrol"
    assert first.json["access_token"] is None
    # The enrolment token is good for enrolment only.
    assert api.get("/api/v1/members", headers=auth(first.json["mfa_token"])).status_code == 401
    totp, confirmed = enrol(api, first.json["mfa_token"])
    assert len(confirmed["recovery_codes"]) == 10
    assert confirmed["tokens"]["stage"] == "active"
    assert (
        api.get("/api/v1/members", headers=auth(confirmed["tokens"]["access_token"])).status_code
        == 200
    )

    second = login(api, manager.username)
    assert second.json["stage"] == "mfa_pending"
    # Exactly the code that confirmed enrolment (not totp.now(): on a slow run the clock may
    # have moved into the next 30 s step, whose fresh code would rightly be accepted).
    code = totp.at(_last_step(session_factory, manager.id) * totp.interval)
    # The code used to confirm enrolment is refused as a replay.
    replay = api.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": second.json["mfa_token"], "code": code}
    )
    assert replay.status_code == 401
    assert replay.json["code"] == "mfa_invalid"
    _shift_steps(session_factory, manager.id)
    ok = api.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": second.json["mfa_token"], "code": code}
    )
    assert ok.status_code == 200
    assert ok.json["stage"] == "active"
    # Same code again, with a new login: never accepted twice.
    third = login(api, manager.username)
    again = api.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": third.json["mfa_token"], "code": code}
    )
    assert again.status_code == 401
    # A recovery code works once.
    recovery = confirmed["recovery_codes"][0]
    used = api.post(
        "/api/v1/auth/mfa/verify",
        json={"mfa_token": third.json["mfa_token"], "recovery_code": recovery},
    )
    assert used.status_code == 200
    fourth = login(api, manager.username)
    reused = api.post(
        "/api/v1/auth/mfa/verify",
        json={"mfa_token": fourth.json["mfa_token"], "recovery_code": recovery},
    )
    assert reused.status_code == 401


def test_mfa_token_cannot_be_used_as_access_token_or_twice(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    officer = make_staff("loan_officer")
    totp, _ = enrol(api, login(api, officer.username).json["mfa_token"])
    pending = login(api, officer.username).json["mfa_token"]
    assert api.get("/api/v1/auth/me", headers=auth(pending)).status_code == 401
    _shift_steps(session_factory, officer.id)
    assert (
        api.post(
            "/api/v1/auth/mfa/verify", json={"mfa_token": pending, "code": totp.now()}
        ).status_code
        == 200
    )
    _shift_steps(session_factory, officer.id)
    second = api.post("/api/v1/auth/mfa/verify", json={"mfa_token": pending, "code": totp.now()})
    assert second.status_code == 401


def test_refresh_rotates_and_a_replayed_refresh_token_revokes_the_family(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    auditor = make_staff("auditor")
    tokens = login(api, auditor.username).json
    r1 = api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r1.status_code == 200
    assert r1.json["refresh_token"] != tokens["refresh_token"]
    # The thief replays the first refresh token:
    stolen = api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert stolen.status_code == 401
    assert stolen.json["code"] == "refresh_token_reused"
    # ... and the whole family is dead: the newest refresh and access tokens too.
    assert (
        api.post(
            "/api/v1/auth/refresh", json={"refresh_token": r1.json["refresh_token"]}
        ).status_code
        == 401
    )
    assert api.get("/api/v1/auth/me", headers=auth(r1.json["access_token"])).status_code == 401
    assert api.get("/api/v1/auth/me", headers=auth(tokens["access_token"])).status_code == 401


def test_logout_revokes_access_and_refresh_at_once(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    auditor = make_staff("auditor")
    tokens = login(api, auditor.username).json
    assert api.post("/api/v1/auth/logout", headers=auth(tokens["access_token"])).status_code == 204
    assert api.get("/api/v1/auth/me", headers=auth(tokens["access_token"])).status_code == 401
    assert (
        api.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).status_code
        == 401
    )


def test_revocation_lives_in_the_database_not_redis(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    redis_client: redis.Redis,
) -> None:
    auditor = make_staff("auditor")
    tokens = login(api, auditor.username).json
    api.post("/api/v1/auth/logout", headers=auth(tokens["access_token"]))
    redis_client.flushdb()  # as after a Redis restart
    assert api.get("/api/v1/auth/me", headers=auth(tokens["access_token"])).status_code == 401


def test_idle_and_absolute_session_limits(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    idle, old = make_staff("teller"), make_staff("teller")
    with unit_of_work(session_factory) as s:
        row = s.get(StaffSession, idle.session_id)
        assert row is not None
        row.last_seen_at = deps.now() - timedelta(minutes=31)
        row2 = s.get(StaffSession, old.session_id)
        assert row2 is not None
        row2.expires_at = deps.now() - timedelta(seconds=1)
        s.commit()
    r = api.get("/api/v1/auth/me", headers=auth(idle))
    assert r.status_code == 401
    assert "idle" in r.json["detail"]
    r = api.get("/api/v1/auth/me", headers=auth(old))
    assert r.status_code == 401
    assert "time limit" in r.json["detail"]


def test_password_change_refuses_weak_and_ends_other_sessions(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    auditor = make_staff("auditor")
    other = login(api, auditor.username).json
    weak = api.post("/api/v1/auth/password", headers=auth(auditor),
                    json={"current_password": PASSWORD, "new_password": "password2026!"})  # fmt: skip
    assert weak.status_code == 422
    assert "common" in weak.json["errors"]["password"][0]
    ok = api.post("/api/v1/auth/password", headers=auth(auditor),
                  json={"current_password": PASSWORD, "new_password": "a much better passphrase"})  # fmt: skip
    assert ok.status_code == 204
    assert api.get("/api/v1/auth/me", headers=auth(other["access_token"])).status_code == 401
    assert api.get("/api/v1/auth/me", headers=auth(auditor)).status_code == 200
    assert login(api, auditor.username, "a much better passphrase").status_code == 200


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short pass", "too_short"), ("qwerty123456", "too_common"), ("Password2026!!", "too_common"),
     ("aaaaaaaaaaaaaaa", "too_common"), ("tellerjoe-is-great", "contains_username")],
)  # fmt: skip
def test_staff_creation_refuses_weak_passwords(
    session_factory: sessionmaker[Session], deps: CoreDeps, password: str, reason: str
) -> None:
    with session_factory() as s, pytest.raises(InvalidInput) as err:
        staff_core.create_staff(s, deps, SYSTEM, username="tellerjoe", full_name="Joe",
                                role="teller", password=password)  # fmt: skip
    assert err.value.reason == reason


def test_logins_and_failures_are_audited_with_the_address(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    teller = make_staff("teller")
    login(api, teller.username, "wrong password 123")
    login(api, teller.username)
    with unit_of_work(session_factory) as s:
        rows = s.scalars(
            select(AuditEvent).where(
                AuditEvent.target_type.in_(["staff", "session"]), AuditEvent.action.like("auth.%")
            )  # fmt: skip
        ).all()
    actions = [r.action for r in rows]
    assert actions[-2:] == ["auth.login_failed", "auth.login"]
    assert rows[-1].address == "127.0.0.1"


def test_account_made_by_an_admin_must_change_its_password_first(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    admin = staff_by_role["admin"]
    made = api.post("/api/v1/staff", headers=auth(admin), json={
        "username": "new.auditor", "full_name": "New Auditor", "role": "auditor",
        "branch": "Nairobi", "password": "first password from admin"})  # fmt: skip
    assert made.status_code == 202  # reads personal data: a manager approves it first
    approved = api.post(f"/api/v1/approvals/{made.json['id']}/approve",
                        headers=auth(staff_by_role["manager"]), json={})  # fmt: skip
    assert approved.json["status"] == "approved"
    listed = api.get("/api/v1/staff", headers=auth(admin)).json["items"]
    assert [s["must_change_password"] for s in listed if s["username"] == "new.auditor"] == [True]
    token = login(api, "new.auditor", "first password from admin").json["access_token"]
    blocked = api.get("/api/v1/members", headers=auth(token))
    assert blocked.status_code == 403
    assert blocked.json["code"] == "password_change_required"
    assert api.get("/api/v1/auth/me", headers=auth(token)).json["must_change_password"] is True
    changed = api.post("/api/v1/auth/password", headers=auth(token), json={
        "current_password": "first password from admin",
        "new_password": "my own secret sentence"})  # fmt: skip
    assert changed.status_code == 204
    assert api.get("/api/v1/members", headers=auth(token)).status_code == 200


def test_disabling_an_account_ends_its_sessions_and_sign_in(
    api: FlaskClient, make_staff: Callable[..., Staffer], staff_by_role: dict[str, Staffer]
) -> None:
    auditor = make_staff("auditor")
    tokens = login(api, auditor.username).json
    admin = staff_by_role["admin"]
    r = api.put(f"/api/v1/staff/{auditor.id}/active", headers=auth(admin), json={"active": False})
    assert r.status_code == 200 and r.json["is_active"] is False
    assert api.get("/api/v1/auth/me", headers=auth(tokens["access_token"])).status_code == 401
    assert (
        api.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).status_code
        == 401
    )
    assert login(api, auditor.username).status_code == 401
    own = api.put(f"/api/v1/staff/{admin.id}/active", headers=auth(admin), json={"active": False})
    assert own.status_code == 409  # nobody locks themselves out


def test_mfa_reset_by_an_admin_forces_a_new_enrolment(
    api: FlaskClient, make_staff: Callable[..., Staffer], staff_by_role: dict[str, Staffer]
) -> None:
    officer = make_staff("loan_officer")
    _, confirmed = enrol(api, login(api, officer.username).json["mfa_token"])
    session_token = confirmed["tokens"]["access_token"]
    admin = staff_by_role["admin"]
    assert api.post(f"/api/v1/staff/{officer.id}/mfa-reset", headers=auth(admin)).status_code == 200
    assert api.get("/api/v1/auth/me", headers=auth(session_token)).status_code == 401
    assert login(api, officer.username).json["stage"] == "mfa_enrol"


def test_revoked_partner_key_stops_at_once(
    api: FlaskClient, staff_by_role: dict[str, Staffer]
) -> None:
    admin = staff_by_role["admin"]
    created = api.post("/api/v1/api-clients", headers=auth(admin),
                       json={"name": "Check-off", "permissions": ["members:read"]}).json  # fmt: skip
    manager = staff_by_role["manager"]
    api.post(f"/api/v1/approvals/{created['approval']['id']}/approve", headers=auth(manager),
             json={})  # fmt: skip
    key = {"X-API-Key": created["api_key"]}
    assert api.get("/api/v1/members", headers=key).status_code == 200
    assert api.get("/api/v1/members/1/statement", headers=key).status_code == 403  # not granted
    refused = api.post("/api/v1/api-clients", headers=auth(admin),
                       json={"name": "Greedy", "permissions": ["pii:read"]})  # fmt: skip
    assert refused.status_code == 422
    assert (
        api.delete(
            f"/api/v1/api-clients/{created['client']['id']}", headers=auth(admin)
        ).status_code
        == 204
    )
    assert api.get("/api/v1/members", headers=key).status_code == 401
