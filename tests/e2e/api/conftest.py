"""Fixtures for the back-office API: staff of every role, tokens, members, a tmp documents dir."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from api.v1.security import issue_token
from config import Settings, load_settings
from core.kernel.deps import CoreDeps
from core.members import registration as members_core
from core.staff import accounts as staff_core
from core.staff.permissions import ROLES, SYSTEM
from db.models import Member, StaffSession, StaffUser
from db.session import unit_of_work
from tests.settings import PG_URL, REDIS_URL

PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        sacco_env="test",
        database_url=PG_URL,
        redis_url=REDIS_URL,
        document_dir=str(tmp_path / "documents"),
        api_rate_limit="100000/minute",
        api_login_rate_limit="1000/minute",
        api_cors_origins="https://backoffice.example",
    )


@dataclass
class Staffer:
    id: int
    username: str
    role: str
    branch: str | None
    token: str
    session_id: str


@pytest.fixture
def make_staff(
    app: Flask, session_factory: sessionmaker[Session], deps: CoreDeps
) -> Callable[..., Staffer]:
    """A staff account with an active session and its access token (MFA already passed)."""

    def make(role: str, branch: str | None = None, username: str | None = None) -> Staffer:
        name = username or f"{role.replace('_', '')}{secrets.token_hex(3)}"
        with unit_of_work(session_factory) as s:
            staff = staff_core.create_staff(
                s, deps, SYSTEM, username=name, full_name=f"Test {role}", role=role,
                password=PASSWORD, branch=branch,
            )  # fmt: skip
            sid = secrets.token_hex(16)
            now = deps.now()
            s.add(
                StaffSession(
                    id=sid,
                    staff_id=staff.id,
                    stage="active",
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(hours=12),
                    address="",
                )  # fmt: skip
            )
            s.commit()
        with app.app_context():
            token, _ = issue_token(staff.id, sid, "access", role)
        return Staffer(staff.id, name, role, branch, token, sid)

    return make


@pytest.fixture
def staff_by_role(make_staff: Callable[..., Staffer]) -> dict[str, Staffer]:
    return {role: make_staff(role) for role in ROLES}


def auth(staffer: Staffer | str) -> dict[str, str]:
    token = staffer if isinstance(staffer, str) else staffer.token
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_member(session_factory: sessionmaker[Session], deps: CoreDeps) -> Callable[..., Member]:
    counter = iter(range(10_000))

    def make(branch: str | None = None, status: str = "pending_kyc", **kw: Any) -> Member:
        n = next(counter)
        with unit_of_work(session_factory) as s:
            member = members_core.register_member(
                s, deps, full_name=kw.get("full_name", f"Wanjiku Test {chr(65 + n % 26)}"),
                msisdn=f"+2547{secrets.randbelow(10**8):08d}",
                national_id=str(20000000 + secrets.randbelow(10**7)),
                consent=True, pin="4826",
            )  # fmt: skip
            member.branch = branch
            if status != "pending_kyc":
                member.status = status
            s.commit()
            return member

    return make


@pytest.fixture
def api(client: FlaskClient) -> FlaskClient:
    return client


def staff_row(session_factory: sessionmaker[Session], staff_id: int) -> StaffUser:
    with unit_of_work(session_factory) as s:
        row = s.get(StaffUser, staff_id)
        assert row is not None
        return row
