"""Fixed deposits over the staff API (issue 14, part 1; docs/savings/fixed-deposits.md):
a teller opens one from the member's savings, it is listed with its locked terms, it is
closed early with its penalty; bad input is a 4xx and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.members.registration import member_account_ids
from core.savings import products
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import Account, AuditEvent, JournalEntry, Member
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

KES = 100


def setup(factory: sessionmaker[Session], deps: CoreDeps, member: Member) -> None:
    with unit_of_work(factory) as s:
        products.create_product(
            s, deps, SYSTEM, "FD12",
            products.parse_terms({**products.DEFAULTS, "name": "Fixed 12 months",
                                  "kind": "fixed_deposit", "rate_percent": "11",
                                  "term_months": 12, "interest_at": "maturity",
                                  "penalty": "rate", "penalty_rate_percent": "1"}),
        )  # fmt: skip
        key = f"fd-api:{uuid4().hex[:8]}"
        credit_member(s, deps, Credit(member.id, "savings", 60_000 * KES, CreditSource.CASH,
                                      key, key))  # fmt: skip


def count(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as s:
        return int(s.scalar(select(func.count()).select_from(JournalEntry)) or 0)


def test_open_list_and_close_early_over_the_api_and_bad_input(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member, teller = make_member(status="active"), make_staff("teller")
    setup(session_factory, deps, member)
    url = f"/api/v1/members/{member.id}/fixed-deposits"
    good: dict[str, Any] = {"product_code": "FD12", "amount_cents": 50_000 * KES,
                            "rollover": "principal_and_interest"}  # fmt: skip
    before = count(session_factory)
    for bad, status in (
        ({}, 422), ({**good, "amount_cents": 0}, 422), ({**good, "amount_cents": "5"}, 422),
        ({**good, "rollover": "never"}, 422), ({**good, "x": 1}, 422),
        ({**good, "product_code": "SAV"}, 409), ({**good, "product_code": "NONE"}, 404),
        ({**good, "amount_cents": 70_000 * KES}, 409),
    ):  # fmt: skip
        r = api.post(url, headers=auth(teller), json=bad)
        assert r.status_code == status, (bad, r.json)
    assert api.post(url, headers=auth(make_staff("auditor")), json=good).status_code == 403
    assert count(session_factory) == before

    opened = api.post(url, headers=auth(teller), json=good)
    assert opened.status_code == 201, opened.json
    fd = opened.json
    assert (fd["principal_cents"], fd["balance_cents"], fd["rate_percent"]) == (
        50_000 * KES, 50_000 * KES, "11")  # fmt: skip
    assert fd["term_months"] == 12 and fd["status"] == "active"
    assert fd["maturity_date"][5:] == fd["start_date"][5:]  # twelve months on
    listed = api.get(url, headers=auth(teller)).json["items"]
    assert [i["reference"] for i in listed] == [fd["reference"]]
    with unit_of_work(session_factory) as s:
        savings = s.get_one(Account, member_account_ids(s, member.id)["savings"])
        assert savings.balance_cents == 10_000 * KES

    close = f"/api/v1/fixed-deposits/{fd['id']}/close"
    assert api.post(close, headers=auth(teller), json={}).status_code == 422
    assert api.post(close, headers=auth(teller), json={"note": "x"}).status_code == 422
    assert api.post("/api/v1/fixed-deposits/999999/close", headers=auth(teller),
                    json={"note": "needs it"}).status_code == 404  # fmt: skip
    closed = api.post(close, headers=auth(teller), json={"note": "hospital bill"})
    assert closed.status_code == 200, closed.json
    assert closed.json["status"] == "closed_early"
    assert closed.json["penalty_cents"] == 500 * KES  # 1 % of the principal
    again = api.post(close, headers=auth(teller), json={"note": "hospital bill"})
    assert again.status_code == 409 and again.json["code"] == "fixed_deposit_refused"
    with unit_of_work(session_factory) as s:
        savings = s.get_one(Account, member_account_ids(s, member.id)["savings"])
        paid = closed.json["interest_paid_cents"] - closed.json["tax_cents"]
        assert savings.balance_cents == 60_000 * KES - 500 * KES + paid
        actions = set(s.scalars(select(AuditEvent.action).where(
            AuditEvent.action.like("fixed_deposit.%"))))  # fmt: skip
        assert actions == {"fixed_deposit.opened", "fixed_deposit.closed_early"}
