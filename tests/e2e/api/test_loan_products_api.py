"""Loan products over the staff API: asking is a 202 request a manager approves, a change
is a new version with the old one readable, bad input is a 422 naming the field and writes
nothing, and the role table decides who may read and who may ask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import ApprovalRequest
from db.models_loans import LoanProduct, LoanProductVersion
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

URL = "/api/v1/loan-products"
# Issue 12, "Products seen in the field": the emergency loan, capped, 12 months, 1.2%/month.
EMERGENCY: dict[str, Any] = {
    "code": "EMG",
    "name": "Emergency loan",
    "rate_percent": "1.2",
    "rate_period": "monthly",
    "method": "reducing_equal_instalments",
    "frequency": "monthly",
    "min_term": 1,
    "max_term": 12,
    "min_amount_cents": 100_000,
    "max_amount_cents": 10_000_000,
    "deposit_multiplier": "3",
    "rounding": "shilling",
    "channels": ["ussd", "staff"],
    "fees": [{"kind": "processing", "timing": "deducted_at_disbursement", "percent": "0.5"}],
}


def rows(session_factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with unit_of_work(session_factory) as s:
        return (
            s.scalar(select(func.count()).select_from(ApprovalRequest)) or 0,
            s.scalar(select(func.count()).select_from(LoanProduct)) or 0,
            s.scalar(select(func.count()).select_from(LoanProductVersion)) or 0,
        )


def approve(api: FlaskClient, checker: Staffer, request_id: int) -> dict[str, Any]:
    done = api.post(f"/api/v1/approvals/{request_id}/approve", headers=auth(checker), json={})
    assert done.status_code == 200, done.json
    body: dict[str, Any] = done.json or {}
    return body


@pytest.fixture
def product(api: FlaskClient, make_staff: Callable[..., Staffer]) -> tuple[int, Staffer, Staffer]:
    """The emergency product, asked by a loan officer and approved by a manager."""
    officer, manager = make_staff("loan_officer"), make_staff("manager")
    asked = api.post(URL, headers=auth(officer), json=EMERGENCY)
    assert asked.status_code == 202, asked.json
    result = approve(api, manager, asked.json["id"])["result"]
    return result["product_id"], officer, manager


def test_a_new_product_is_a_request_until_another_person_approves_it(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    officer, manager, teller = (
        make_staff("loan_officer"),
        make_staff("manager"),
        make_staff("teller"),
    )
    asked = api.post(URL, headers=auth(officer), json={**EMERGENCY, "note": "board minute 14"})
    assert asked.status_code == 202
    req = asked.json
    assert (req["action"], req["status"], req["maker_note"]) == (
        "loan_product.create", "pending", "board minute 14"
    )  # fmt: skip
    assert req["checker_permission"] == "approvals:decide_large"
    assert req["payload"]["terms"]["rate_percent"] == "1.2"
    assert api.get(URL, headers=auth(teller)).json["items"] == []

    own = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(officer), json={})
    assert own.status_code == 403 and own.json["code"] == "self_approval"
    other = make_staff("loan_officer")
    assert api.post(
        f"/api/v1/approvals/{req['id']}/approve", headers=auth(other), json={}
    ).status_code == 403  # fmt: skip

    done = approve(api, manager, req["id"])
    assert done["status"] == "approved" and done["result"]["version"] == 1
    [item] = api.get(URL, headers=auth(teller)).json["items"]
    assert item["code"] == "EMG" and item["version"] == 1 and item["approval_id"] == req["id"]
    assert (item["rate_percent"], item["deposit_multiplier"]) == ("1.2", "3")
    assert item["guarantor_cover_percent"] == "100"  # the default: fully secured
    assert item["channels"] == ["staff", "ussd"]
    one = api.get(f"{URL}/{item['id']}", headers=auth(teller))
    assert one.status_code == 200 and one.json["versions"] == [1]
    again = api.post(URL, headers=auth(officer), json=EMERGENCY)
    assert again.status_code == 409 and "exists" in again.json["detail"]


def test_a_change_is_a_new_version_and_the_old_one_stays_readable(
    api: FlaskClient, product: tuple[int, Staffer, Staffer]
) -> None:
    product_id, officer, manager = product
    asked = api.put(
        f"{URL}/{product_id}", headers=auth(officer),
        json={"rate_percent": "1.5", "max_amount_cents": 15_000_000},
    )  # fmt: skip
    assert asked.status_code == 202, asked.json
    assert asked.json["payload"]["changed"] == ["max_amount_cents", "rate_percent"]
    assert api.get(f"{URL}/{product_id}", headers=auth(officer)).json["version"] == 1
    approve(api, manager, asked.json["id"])

    now = api.get(f"{URL}/{product_id}", headers=auth(officer)).json
    assert (now["version"], now["versions"], now["rate_percent"]) == (2, [1, 2], "1.5")
    old = api.get(f"{URL}/{product_id}?version=1", headers=auth(officer)).json
    assert (old["version"], old["current_version"], old["rate_percent"]) == (1, 2, "1.2")
    assert old["max_amount_cents"] == 10_000_000
    missing = api.get(f"{URL}/{product_id}?version=9", headers=auth(officer))
    assert missing.status_code == 404

    off = api.put(f"{URL}/{product_id}", headers=auth(officer), json={"active": False})
    approve(api, manager, off.json["id"])
    assert api.get(f"{URL}?active=true", headers=auth(officer)).json["items"] == []
    [inactive] = api.get(f"{URL}?active=false", headers=auth(officer)).json["items"]
    assert (inactive["version"], inactive["active"]) == (3, False)


BAD_NEW: list[tuple[dict[str, Any], str]] = [
    ({"min_term": 13}, "max_term"),
    ({"min_amount_cents": 20_000_000}, "max_amount_cents"),
    ({"rate_percent": "-1"}, "rate_percent"),
    ({"rate_percent": "50"}, "rate_percent"),
    ({"rate_percent": 1.2}, "rate_percent"),  # a JSON number: a float, never
    ({"rate_percent": "1e9"}, "rate_percent"),
    ({"deposit_multiplier": "0"}, "deposit_multiplier"),
    ({"method": "balloon"}, "method"),
    ({"code": "e"}, "code"),
    ({"channels": []}, "channels"),
    ({"guarantor_policy": "none", "guarantor_cover_percent": "100"}, "guarantor_cover_percent"),
    ({"fees": [{"kind": "insurance", "timing": "added_to_schedule"}]}, "fees[0].percent"),
    ({"grace_instalments": 1}, "grace_instalments"),
    ({"surprise": True}, "surprise"),
    ({"allocation_order": "principal_first"}, "allocation_order"),
    ({"early_payoff_interest": "charge_half"}, "early_payoff_interest"),
    ({"early_payoff_interest": 7}, "early_payoff_interest"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_NEW, ids=[f for _, f in BAD_NEW])
def test_every_bad_definition_is_a_422_naming_the_field_and_changes_nothing(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
    bad: dict[str, Any],
    field: str,
) -> None:
    officer = make_staff("loan_officer")
    before = rows(session_factory)
    refused = api.post(URL, headers=auth(officer), json={**EMERGENCY, **bad})
    assert refused.status_code == 422, refused.json
    assert refused.json["code"] == "invalid_input"
    assert field in refused.json["errors"], refused.json
    assert rows(session_factory) == before


def test_a_bad_change_is_a_422_and_changes_nothing(
    api: FlaskClient,
    product: tuple[int, Staffer, Staffer],
    session_factory: sessionmaker[Session],
) -> None:
    product_id, officer, _ = product
    before = rows(session_factory)
    for body, field in (
        ({"min_term": 24}, "max_term"),
        ({"rate_percent": "1.2"}, "rate_percent"),  # nothing changes
        ({"code": "NEW"}, "code"),
        ({}, "body"),
    ):
        refused = api.put(f"{URL}/{product_id}", headers=auth(officer), json=body)
        assert refused.status_code == 422, (body, refused.json)
        assert field in refused.json["errors"], refused.json
    assert rows(session_factory) == before
    assert (
        api.put(f"{URL}/999999", headers=auth(officer), json={"active": False}).status_code == 404
    )


def test_who_may_read_and_who_may_ask(
    api: FlaskClient, staff_by_role: dict[str, Staffer], session_factory: sessionmaker[Session]
) -> None:
    before = rows(session_factory)
    for role in ("teller", "auditor", "admin"):
        asked = api.post(URL, headers=auth(staff_by_role[role]), json=EMERGENCY)
        assert asked.status_code == 403, role
    assert rows(session_factory) == before
    for role in ("manager", "loan_officer", "teller", "auditor"):
        assert api.get(URL, headers=auth(staff_by_role[role])).status_code == 200, role
    assert api.get(URL, headers=auth(staff_by_role["admin"])).status_code == 403
    assert api.get(URL).status_code == 401
    for role in ("manager", "loan_officer"):
        asked = api.post(
            URL,
            headers=auth(staff_by_role[role]),
            json={**EMERGENCY, "code": f"E{role[:3].upper()}"},
        )
        assert asked.status_code == 202, role


def test_the_allocation_order_and_early_payoff_rule_change_as_a_new_version(
    api: FlaskClient, product: tuple[int, Staffer, Staffer]
) -> None:
    product_id, officer, manager = product
    v1 = api.get(f"{URL}/{product_id}", headers=auth(officer)).json
    assert (v1["allocation_order"], v1["early_payoff_interest"]) == (
        "penalties_fees_interest_principal", "waive"
    )  # fmt: skip
    asked = api.put(
        f"{URL}/{product_id}", headers=auth(officer),
        json={"allocation_order": "interest_principal_penalties_fees",
              "early_payoff_interest": "charge_current_period"},
    )  # fmt: skip
    assert asked.status_code == 202, asked.json
    assert asked.json["payload"]["changed"] == ["allocation_order", "early_payoff_interest"]
    approve(api, manager, asked.json["id"])
    v2 = api.get(f"{URL}/{product_id}", headers=auth(officer)).json
    assert (v2["version"], v2["allocation_order"], v2["early_payoff_interest"]) == (
        2, "interest_principal_penalties_fees", "charge_current_period"
    )  # fmt: skip
    old = api.get(f"{URL}/{product_id}?version=1", headers=auth(officer)).json
    assert old["early_payoff_interest"] == "waive"  # loans made under it keep it


def test_the_openapi_document_describes_the_products(api: FlaskClient) -> None:
    spec = api.get("/api/v1/openapi.json").json
    assert {"get", "post"} <= set(spec["paths"]["/api/v1/loan-products"])
    assert {"get", "put"} <= set(spec["paths"]["/api/v1/loan-products/{product_id}"])
    product_in = spec["components"]["schemas"]["LoanProductIn"]
    assert product_in["properties"]["rate_percent"]["type"] == "string"
    assert "rate_percent" in product_in["required"]
    assert product_in["properties"]["allocation_order"]["enum"] == [
        "penalties_fees_interest_principal",
        "oldest_instalment_first",
        "interest_principal_penalties_fees",
    ]
    assert product_in["properties"]["early_payoff_interest"]["enum"] == [
        "waive", "charge_current_period", "charge_all"
    ]  # fmt: skip
    product_out = spec["components"]["schemas"]["LoanProductOut"]
    assert {"allocation_order", "early_payoff_interest"} <= set(product_out["required"])
