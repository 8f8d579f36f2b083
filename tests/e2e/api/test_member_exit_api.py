"""A member's exit over the staff API (docs/members/exit.md): notice recorded once, a bad
reason refused with nothing written, the plan shown, the run (``exit-run``'s core verb) put
to a manager who approves it under /approvals, and the member left with every account at
zero and the ledger verifying."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from core.kernel.deps import CoreDeps
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members import exit as member_exit
from core.members.registration import member_account_ids
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import Member
from db.models_exit import MemberExit
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.settings import PG_URL, REDIS_URL

KES = 100


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL,
        document_dir=str(tmp_path / "documents"), api_rate_limit="100000/minute",
        exit_notice_days=0,  # the by-laws' period over at once: the run can go today
    )  # fmt: skip


def test_exit_over_the_api_from_notice_to_zero_balances(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    with unit_of_work(session_factory) as s:
        for target, cents in (
            ("deposits", 7_000 * KES),
            ("savings", 1_234_56),
            ("shares", 500 * KES),
        ):
            key = f"exit-api:{member.id}:{target}"
            credit_member(s, deps, Credit(member.id, target, cents, CreditSource.CASH, key, key))
        s.commit()
    officer, manager = make_staff("manager"), make_staff("manager")
    url = f"/api/v1/members/{member.id}/exit"

    assert api.get(url, headers=auth(officer)).status_code == 404
    bad = api.post(url, headers=auth(officer), json={"reason": "x"})
    assert bad.status_code == 422
    with unit_of_work(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(MemberExit)) == 0

    given = api.post(url, headers=auth(officer), json={"reason": "moving abroad"})
    assert given.status_code == 201, given.json
    body = given.json
    assert body["status"] == "notice" and body["notice_days"] == 0
    assert body["plan"]["refund_cents"] == 7_000 * KES + 1_234_56 + 500 * KES
    assert body["plan"]["blockers"] == []
    assert (body["plan"]["further"], body["plan"]["further_cents"]) == ([], 0)
    again = api.post(url, headers=auth(officer), json={"reason": "moving abroad"})
    assert again.status_code == 200 and again.json["exit_id"] == body["exit_id"]

    with unit_of_work(session_factory) as s:
        maker = Principal("staff", officer.id, officer.username, "manager", None,
                          permissions_for_role("manager"))  # fmt: skip
        report = member_exit.exit_run(s, deps, maker, policy=member_exit.ExitPolicy(0),
                                      large_threshold_cents=50_000 * KES)  # fmt: skip
        s.commit()
    [(_, request_id)] = report.asked
    self_approved = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(officer),
                             json={"note": "mine"})  # fmt: skip
    assert self_approved.status_code == 403
    approved = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(manager),
                        json={"note": "notice served"})  # fmt: skip
    assert approved.status_code == 200 and approved.json["status"] == "approved", approved.json

    done = api.get(url, headers=auth(officer)).json
    assert done["status"] == "done" and done["plan"] is None
    assert done["refund_cents"] == 7_000 * KES + 1_234_56 + 500 * KES
    assert api.get(f"/api/v1/members/{member.id}", headers=auth(officer)).json["status"] == "exited"
    with unit_of_work(session_factory) as s:
        ids = member_account_ids(s, member.id)
        assert {p: ledger.get_balance(s, i).balance_cents for p, i in ids.items()} == {
            "savings": 0, "deposits": 0, "shares": 0,
        }  # fmt: skip
        assert verify_ledger(s).ok
