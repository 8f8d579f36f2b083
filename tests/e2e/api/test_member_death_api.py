"""A member's death over the staff API (docs/members/death.md): a bad record refused with
nothing written, the death recorded once (the member deceased at once), the settlement
approved by another manager under /approvals, the estate shared per the nomination into
payables, a teller paying one at the branch once, and the ledger verifying."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from core.kernel.deps import CoreDeps
from core.ledger.verify import verify_ledger
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import Member
from db.models_exit import MemberDeath
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.settings import PG_URL, REDIS_URL

KES = 100


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL,
        document_dir=str(tmp_path / "documents"), api_rate_limit="100000/minute",
    )  # fmt: skip


def test_a_death_over_the_api_from_record_to_a_paid_beneficiary(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    with unit_of_work(session_factory) as s:
        key = f"death-api:{member.id}"
        credit_member(
            s, deps, Credit(member.id, "deposits", 10_000_01, CreditSource.CASH, key, key)
        )
        s.commit()
    officer, manager, teller = make_staff("manager"), make_staff("manager"), make_staff("teller")
    nominated = api.put(f"/api/v1/members/{member.id}/beneficiaries", headers=auth(teller), json={
        "beneficiaries": [
            {"name": "Achieng Otieno", "relationship": "spouse", "id_kind": "national_id",
             "id_number": "23456789", "share_percent": "60"},
            {"name": "Baraka Otieno", "relationship": "child", "id_kind": "birth_certificate",
             "id_number": "BC12345", "share_percent": "40", "phone": "0722000333"},
        ]})  # fmt: skip
    assert nominated.status_code == 200, nominated.json
    phones = [b["phone"] for b in nominated.json["beneficiaries"]]
    assert phones[0] is None and phones[1] != "+254722000333"  # masked without pii:read
    assert phones[1].endswith("333")
    url = f"/api/v1/members/{member.id}/death"

    assert api.get(url, headers=auth(officer)).status_code == 404
    future = api.post(url, headers=auth(officer),
                      json={"died_on": "2999-01-01", "certificate_ref": "DC-1"})  # fmt: skip
    assert future.status_code == 422
    assert api.post(url, headers=auth(teller), json={"died_on": "2026-01-01",
                    "certificate_ref": "DC-100"}).status_code == 403  # fmt: skip
    with unit_of_work(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(MemberDeath)) == 0
        assert s.get_one(Member, member.id).status == "active"

    body = {"died_on": "2026-01-01", "certificate_ref": "DC 100/2026", "document_ref": "scan-7"}
    recorded = api.post(url, headers=auth(officer), json=body)
    assert recorded.status_code == 201, recorded.json
    assert recorded.json["status"] == "awaiting_approval"
    assert recorded.json["certificate_ref"] == "DC100/2026"
    assert api.post(url, headers=auth(officer), json=body).status_code == 200
    assert api.get(f"/api/v1/members/{member.id}", headers=auth(officer)).json["status"] == (
        "deceased"
    )
    request_id = recorded.json["approval_id"]
    mine = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(officer),
                    json={"note": "mine"})  # fmt: skip
    assert mine.status_code == 403
    approved = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(manager),
                        json={"note": "certificate seen"})  # fmt: skip
    assert approved.status_code == 200 and approved.json["status"] == "approved", approved.json

    settled = api.get(url, headers=auth(teller)).json
    assert settled["status"] == "settled" and settled["estate_cents"] == 10_000_01
    amounts = [p["amount_cents"] for p in settled["payables"]]
    assert amounts == [6_000_01, 4_000_00]  # the odd cent to the larger fraction
    first = settled["payables"][0]["payable_id"]
    report = api.get("/api/v1/members/estate-payables", headers=auth(teller)).json["items"]
    assert {r["payable_id"] for r in report if r["member_id"] == member.id} == {
        p["payable_id"] for p in settled["payables"]
    }
    pay = f"{url}/payables/{first}/payment"
    assert api.post(pay, headers=auth(teller), json={"method": "cash"}).status_code == 422
    paid = api.post(pay, headers=auth(teller), json={"method": "cash", "reference": "R-0001"})
    assert paid.status_code == 201 and paid.json["status"] == "paid", paid.json
    again = api.post(pay, headers=auth(teller), json={"method": "cash", "reference": "R-0001"})
    assert again.status_code == 200
    report = api.get("/api/v1/members/estate-payables", headers=auth(teller)).json["items"]
    assert first not in {r["payable_id"] for r in report}
    with unit_of_work(session_factory) as s:
        assert verify_ledger(s).ok
