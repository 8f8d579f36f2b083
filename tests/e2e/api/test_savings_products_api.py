"""Savings products over the staff API: the three defaults are there at rate 0; setting a
rate is a 202 request another manager approves into a new version; a new product likewise;
bad input is a 422 naming the field and writes nothing; the role table decides who reads
and who asks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import ApprovalRequest
from db.models_savings import SavingsProductVersion
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

URL = "/api/v1/savings-products"


def counts(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    with unit_of_work(session_factory) as s:
        return (
            s.scalar(select(func.count()).select_from(ApprovalRequest)) or 0,
            s.scalar(select(func.count()).select_from(SavingsProductVersion)) or 0,
        )


def approve(api: FlaskClient, checker: Staffer, request_id: int) -> dict[str, Any]:
    done = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(checker), json={})
    assert done.status_code == 200, done.json
    return done.json or {}


def test_setting_a_rate_is_a_request_a_second_manager_approves(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    manager, manager2 = make_staff("manager"), make_staff("manager")
    listed = api.get(URL, headers=auth(manager)).json["items"]
    assert [(p["code"], p["default_for"], p["rate_percent"]) for p in listed] == [
        ("SAV", "savings", "0"), ("DEP", "deposits", "0"), ("SHR", "shares", "0")
    ]  # fmt: skip
    sav = listed[0]["id"]
    asked = api.put(f"{URL}/{sav}", headers=auth(manager), json={"rate_percent": "6.5"})
    assert asked.status_code == 202 and asked.json["action"] == "savings_product.change"
    assert api.get(f"{URL}/{sav}", headers=auth(manager)).json["rate_percent"] == "0"
    own = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(manager), json={})
    assert own.status_code in (403, 409)  # never the maker
    approve(api, manager2, asked.json["id"])
    now = api.get(f"{URL}/{sav}", headers=auth(manager)).json
    assert (now["version"], now["versions"], now["rate_percent"]) == (2, [1, 2], "6.5")
    old = api.get(f"{URL}/{sav}?version=1", headers=auth(manager)).json
    assert old["rate_percent"] == "0"


def test_a_new_product_and_bad_input(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    manager, manager2, teller = make_staff("manager"), make_staff("manager"), make_staff("teller")
    before = counts(session_factory)
    for body, field in (
        ({"code": "HOL", "name": "Holiday", "kind": "ordinary_savings", "rate_percent": 5}, "rate_percent"),
        ({"code": "HOL", "name": "Holiday", "kind": "ordinary_savings", "rate_percent": "31"}, "rate_percent"),
        ({"code": "HOL", "name": "Holiday", "kind": "share_capital", "rate_percent": "2"}, "rate_percent"),
        ({"code": "HOL", "name": "Holiday", "kind": "deposits", "withdrawal_fee_cents": 100}, "withdrawal_fee_cents"),
        ({"code": "HOL", "name": "Holiday", "kind": "savings"}, "kind"),
    ):  # fmt: skip
        bad = api.post(URL, headers=auth(manager), json=body)
        assert bad.status_code == 422, (body, bad.json)
        assert field in str(bad.json), bad.json
    assert counts(session_factory) == before
    assert api.post(URL, headers=auth(teller), json={"code": "X"}).status_code == 403
    assert api.get(URL, headers=auth(teller)).status_code == 200

    asked = api.post(
        URL, headers=auth(manager),
        json={"code": "hol", "name": "Holiday savings", "kind": "ordinary_savings",
              "rate_percent": "5", "posting_frequency": "quarterly",
              "daily_withdrawal_limit_cents": 5_000_000},
    )  # fmt: skip
    assert asked.status_code == 202, asked.json
    made = approve(api, manager2, asked.json["id"])["result"]
    got = api.get(f"{URL}/{made['product_id']}", headers=auth(teller)).json
    assert (got["code"], got["kind"], got["posting_frequency"], got["default_for"]) == (
        "HOL", "ordinary_savings", "quarterly", None
    )  # fmt: skip
    kind = api.put(f"{URL}/{made['product_id']}", headers=auth(manager), json={"kind": "deposits"})
    assert kind.status_code == 422
