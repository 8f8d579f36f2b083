"""Teller cash out, till days and dormant savings over the staff API (issue 14, part 3).

What a teller and a supervisor see, and what the ledger holds: a withdrawal posts once and
never beyond what is available; above the till limit it waits for another person; a till
day's expected cash is the float plus the teller's own cash entries; a counted difference
posts to cash over and short only when a supervisor approves it; dormant savings refuse
every withdrawal until staff reactivate them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.errors import SaccoError
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members.registration import member_account_ids
from core.payments.mpesa.flows import quote_withdrawal
from core.payments.mpesa.rules import MpesaPolicy
from core.savings.accounts import Credit, CreditSource, credit_member
from core.savings.dormancy import mark_dormant
from db.models import AuditEvent, Member, OutboxMessage
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

LIMIT = 100_000_00  # CASH_DEPOSIT_TILL_LIMIT_KES in these tests


def withdraw(api: FlaskClient, who: Staffer, member_id: int, cents: int, key: str) -> Any:
    return api.post(
        f"/api/v1/members/{member_id}/withdrawals",
        headers={**auth(who), "Idempotency-Key": key},
        json={"amount_cents": cents},
    )


def deposit(api: FlaskClient, who: Staffer, member_id: int, cents: int, key: str) -> Any:
    r = api.post(
        f"/api/v1/members/{member_id}/deposits",
        headers={**auth(who), "Idempotency-Key": key},
        json={"amount_cents": cents},
    )
    assert r.status_code == 201, r.json
    return r


def fund(factory: sessionmaker[Session], deps: CoreDeps, member: Member, cents: int) -> None:
    """Money in by bank transfer (no till involved)."""
    with unit_of_work(factory) as s:
        credit_member(s, deps, Credit(
            member_id=member.id, target="savings", amount_cents=cents, source=CreditSource.BANK,
            idempotency_key=f"test-bank-{member.id}-{cents}", business_key=f"t-{member.id}-{cents}",
        ))  # fmt: skip


def savings(factory: sessionmaker[Session], member_id: int) -> ledger.Balance:
    with unit_of_work(factory) as s:
        return ledger.get_balance(s, member_account_ids(s, member_id)["savings"])


def system_balance(factory: sessionmaker[Session], account: SystemAccount) -> int:
    with unit_of_work(factory) as s:
        return ledger.get_balance(s, ledger.account_id_by_code(s, account)).balance_cents


def test_a_cash_withdrawal_posts_once_never_beyond_the_available_balance_and_texts_a_receipt(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    teller = make_staff("teller")
    fund(session_factory, deps, member, 5_000_00)
    bank_before = system_balance(session_factory, SystemAccount.BANK)
    r = withdraw(api, teller, member.id, 2_000_00, "wd-0000001")
    assert r.status_code == 201 and r.json["balances"]["savings_cents"] == 3_000_00
    again = withdraw(api, teller, member.id, 2_000_00, "wd-0000001")
    assert again.status_code == 200 and again.json["entry_reference"] == r.json["entry_reference"]
    conflict = withdraw(api, teller, member.id, 1_000_00, "wd-0000001")
    assert conflict.status_code == 409 and conflict.json["code"] == "idempotency_conflict"
    # A hold (an M-Pesa withdrawal on its way) counts: 3,000 in savings, 1,000 held.
    with unit_of_work(session_factory) as s:
        ledger.reserve_hold(
            s, account_id=member_account_ids(s, member.id)["savings"], amount_cents=1_000_00,
            idempotency_key="test-hold-1", now=deps.now(),
        )  # fmt: skip
    too_much = withdraw(api, teller, member.id, 2_000_01, "wd-0000002")
    assert too_much.status_code == 409 and too_much.json["code"] == "insufficient_funds"
    for bad in ({"amount_cents": 0}, {"amount_cents": "5"}, {}):
        r_bad = api.post(
            f"/api/v1/members/{member.id}/withdrawals",
            headers={**auth(teller), "Idempotency-Key": "wd-0000003"},
            json=bad,
        )
        assert r_bad.status_code == 422  # fmt: skip
    no_key = api.post(f"/api/v1/members/{member.id}/withdrawals", headers=auth(teller),
                      json={"amount_cents": 100})  # fmt: skip
    assert no_key.status_code == 422
    assert withdraw(api, teller, member.id, 2_000_00, "wd-0000004").status_code == 201
    left = savings(session_factory, member.id)
    assert (left.balance_cents, left.held_cents, left.available_cents) == (1_000_00, 1_000_00, 0)
    assert system_balance(session_factory, SystemAccount.BANK) == bank_before - 4_000_00
    with unit_of_work(session_factory) as s:
        bodies = list(
            s.scalars(
                select(OutboxMessage.body).where(
                    OutboxMessage.member_id == member.id,
                    OutboxMessage.template == "withdrawal_cash",
                )
            )
        )
        assert len(bodies) == 2 and "KES 2,000 cash paid out" in bodies[0]  # fmt: skip
        assert "KES 3,000" in bodies[0] and "KES 1,000" in bodies[1]  # the new balances
        assert verify_ledger(s).ok
    # A teller cannot pay out a suspended member's savings; a loan officer has no till.
    officer = make_staff("loan_officer")
    assert withdraw(api, officer, member.id, 100, "wd-0000005").status_code == 403


def test_cash_above_the_till_limit_is_paid_only_when_another_person_approves(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    teller, manager = make_staff("teller"), make_staff("manager")
    fund(session_factory, deps, member, 300_000_00)
    r = withdraw(api, teller, member.id, LIMIT + 1, "wd-big-0001")
    assert r.status_code == 202 and r.json["action"] == "withdrawal.cash"
    assert r.json["checker_permission"] == "approvals:decide_large"
    assert savings(session_factory, member.id).balance_cents == 300_000_00  # nothing paid yet
    assert withdraw(api, teller, member.id, LIMIT + 1, "wd-big-0001").json["id"] == r.json["id"]
    own = api.post(f"/api/v1/approvals/{r.json['id']}/approve", headers=auth(teller), json={})
    assert own.status_code == 403
    ok = api.post(f"/api/v1/approvals/{r.json['id']}/approve", headers=auth(manager), json={})
    assert ok.status_code == 200 and ok.json["status"] == "approved"
    assert savings(session_factory, member.id).balance_cents == 300_000_00 - (LIMIT + 1)
    # More than is left: the approval fails and pays nothing.
    big = withdraw(api, teller, member.id, 250_000_00, "wd-big-0002")
    assert big.status_code == 409 and big.json["code"] == "insufficient_funds"
    with unit_of_work(session_factory) as s:
        assert verify_ledger(s).ok


def till(api: FlaskClient, who: Staffer) -> Any:
    return api.get("/api/v1/tills/current", headers=auth(who))


def count(api: FlaskClient, who: Staffer, cents: int, why: str = "") -> Any:
    return api.post("/api/v1/tills/current/count", headers=auth(who),
                    json={"counted_cents": cents, "explanation": why})  # fmt: skip


def test_a_till_day_balances_from_the_tellers_own_entries_and_a_difference_needs_a_supervisor(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active")
    teller, other, manager = make_staff("teller"), make_staff("teller"), make_staff("manager")
    assert till(api, teller).status_code == 404
    opened = api.post(
        "/api/v1/tills", headers=auth(teller), json={"opening_float_cents": 10_000_00}
    )
    assert opened.status_code == 201 and opened.json["expected_cents"] == 10_000_00
    twice = api.post("/api/v1/tills", headers=auth(teller), json={"opening_float_cents": 1})
    assert twice.status_code == 409 and twice.json["code"] == "till_refused"
    deposit(api, teller, member.id, 5_000_00, "dep-till-0001")
    deposit(api, other, member.id, 700_00, "dep-till-0002")  # another till's cash
    assert withdraw(api, teller, member.id, 2_000_00, "wd-till-0001").status_code == 201
    now = till(api, teller).json
    assert (now["cash_in_cents"], now["cash_out_cents"], now["expected_cents"]) == (
        5_000_00, 2_000_00, 13_000_00,
    )  # fmt: skip
    # Counted right: the day closes and nothing posts.
    closed = count(api, teller, 13_000_00)
    assert closed.status_code == 200 and closed.json["till"]["status"] == "closed"
    assert closed.json["till"]["difference_cents"] == 0 and closed.json["approval"] is None
    # The next day: KES 500 short.
    assert api.post("/api/v1/tills", headers=auth(teller),
                    json={"opening_float_cents": 13_000_00}).status_code == 201  # fmt: skip
    deposit(api, teller, member.id, 1_000_00, "dep-till-0003")
    assert count(api, teller, 13_500_00).status_code == 422  # a difference needs a reason
    bank_before = system_balance(session_factory, SystemAccount.BANK)
    short = count(api, teller, 13_500_00, "a KES 500 note paid out twice")
    assert short.status_code == 202
    req = short.json["approval"]
    assert req["action"] == "till.close" and req["amount_cents"] == 500_00
    assert short.json["till"]["status"] == "counted"
    assert short.json["till"]["difference_cents"] == -500_00
    assert count(api, teller, 14_000_00).json["code"] == "till_refused"  # waits for a decision
    # The teller cannot approve their own shortage; rejected, they count again.
    own = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(teller), json={})
    assert own.status_code == 403
    no = api.post(f"/api/v1/approvals/{req['id']}/reject", headers=auth(manager),
                  json={"note": "count again"})  # fmt: skip
    assert no.json["status"] == "rejected"
    again = count(api, teller, 13_600_00, "recounted: KES 400 short")
    assert again.status_code == 202 and again.json["till"]["difference_cents"] == -400_00
    ok = api.post(f"/api/v1/approvals/{again.json['approval']['id']}/approve",
                  headers=auth(manager), json={})  # fmt: skip
    assert ok.status_code == 200 and ok.json["status"] == "approved", ok.json
    seen = api.get(f"/api/v1/tills/{again.json['till']['id']}", headers=auth(manager)).json
    assert seen["status"] == "closed" and seen["entry_reference"] == ok.json["result"]["entry"]
    assert system_balance(session_factory, SystemAccount.CASH_OVER_SHORT) == 400_00
    assert system_balance(session_factory, SystemAccount.BANK) == bank_before - 400_00
    listed = api.get("/api/v1/tills?status=closed", headers=auth(manager)).json["items"]
    assert [t["staff_id"] for t in listed] == [teller.id, teller.id]
    assert api.get("/api/v1/tills", headers=auth(teller)).status_code == 403
    with unit_of_work(session_factory) as s:
        assert verify_ledger(s).ok


def test_dormant_savings_refuse_every_withdrawal_until_staff_reactivate_them(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    idle, busy, gone = (make_member(status=s) for s in ("active", "active", "exited"))
    teller, manager = make_staff("teller"), make_staff("manager")
    for m in (idle, busy):
        fund(session_factory, deps, m, 800_00)
    later = replace(deps, now=lambda: deps.now() + timedelta(days=400))
    with unit_of_work(session_factory) as s:  # the busy member saved a month ago
        credit_member(s, replace(deps, now=lambda: deps.now() + timedelta(days=370)), Credit(
            member_id=busy.id, target="savings", amount_cents=100, source=CreditSource.MPESA,
            idempotency_key="test-recent-mpesa", business_key="test-recent-mpesa",
        ))  # fmt: skip
    with unit_of_work(session_factory) as s:
        assert mark_dormant(s, later, months=12) == 1  # the idle one: not busy, not exited
    with unit_of_work(session_factory) as s:
        assert mark_dormant(s, later, months=12) == 0  # once
    r = withdraw(api, teller, idle.id, 100_00, "wd-dormant-01")
    assert r.status_code == 409 and r.json["code"] == "account_dormant"
    assert withdraw(api, teller, busy.id, 100_00, "wd-busy-0001").status_code == 201
    with unit_of_work(session_factory) as s, pytest.raises(SaccoError) as refused:
        quote_withdrawal(s, deps, member_id=idle.id, amount_cents=100_00, policy=MpesaPolicy())
    assert refused.value.code == "account_dormant"  # USSD and M-Pesa ask the same rule
    report = api.get("/api/v1/reports/dormant-accounts?limit=100", headers=auth(manager)).json
    mine = {row["member_id"]: row for row in report["items"]}
    assert idle.id in mine and busy.id not in mine and gone.id not in mine
    assert mine[idle.id]["balance_cents"] == 800_00 and report["total_cents"] >= 800_00
    assert api.get("/api/v1/reports/dormant-accounts", headers=auth(teller)).status_code == 403
    bad = api.post(f"/api/v1/members/{idle.id}/reactivate", headers=auth(manager), json={})
    assert bad.status_code == 422
    woke = api.post(f"/api/v1/members/{idle.id}/reactivate", headers=auth(manager),
                    json={"note": "came in with her ID"})  # fmt: skip
    assert woke.status_code == 200
    again = api.post(f"/api/v1/members/{idle.id}/reactivate", headers=auth(manager),
                     json={"note": "came in with her ID"})  # fmt: skip
    assert again.status_code == 409 and again.json["code"] == "not_dormant"
    assert withdraw(api, teller, idle.id, 100_00, "wd-dormant-02").status_code == 201
    with unit_of_work(session_factory) as s:  # reactivated now: not dormant a month later
        soon = replace(deps, now=lambda: deps.now() + timedelta(days=31))
        mark_dormant(s, soon, months=12)
        assert s.scalar(select(AuditEvent.action).where(
            AuditEvent.action == "member.savings_reactivate")) is not None  # fmt: skip
    assert withdraw(api, teller, idle.id, 100_00, "wd-dormant-03").status_code == 201


def test_a_branch_tellers_difference_is_decided_by_that_branchs_supervisor(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    teller = make_staff("teller", branch="Nakuru")
    here, there = make_staff("manager", branch="Nakuru"), make_staff("manager", branch="Kisumu")
    api.post("/api/v1/tills", headers=auth(teller), json={"opening_float_cents": 0})
    over = count(api, teller, 100, "a coin found under the drawer")
    assert over.status_code == 202 and over.json["approval"]["branch"] == "Nakuru"
    url = f"/api/v1/approvals/{over.json['approval']['id']}/approve"
    assert api.post(url, headers=auth(there), json={}).status_code in (403, 404)
    assert api.post(url, headers=auth(here), json={}).json["status"] == "approved"
    assert till(api, teller).status_code == 404  # closed: nothing open any more


def test_the_savings_products_rules_refuse_cash_with_a_422_naming_the_rule(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    """Issue 14, part 1: minimum balance and daily limit at the counter; the fee goes to
    fee income in the withdrawal's own entry."""
    from core.kernel.permissions import SYSTEM
    from core.savings import products
    from db.models_savings import SavingsProduct

    with unit_of_work(session_factory) as s:
        sav = s.scalars(select(SavingsProduct).where(SavingsProduct.default_for == "savings")).one()
        terms = replace(
            products.get_product(s, sav.id).terms, min_balance_cents=1_000_00,
            withdrawal_fee_cents=25_00, daily_withdrawal_limit_cents=3_500_00,
        )  # fmt: skip
        products.change_product(s, deps, SYSTEM, sav.id, sav.current_version, terms)
    member, teller = make_member(status="active"), make_staff("teller")
    fund(session_factory, deps, member, 4_000_00)
    fees_before = system_balance(session_factory, SystemAccount.FEE_INCOME)
    over = withdraw(api, teller, member.id, 3_500_01, "wd-rule-001")
    assert over.status_code == 422 and over.json["code"] == "daily_withdrawal_limit"
    assert "KES 3,500 left today" in over.json["detail"]
    ok = withdraw(api, teller, member.id, 2_000_00, "wd-rule-002")
    assert ok.status_code == 201 and ok.json["balances"]["savings_cents"] == 1_975_00
    assert system_balance(session_factory, SystemAccount.FEE_INCOME) == fees_before + 25_00
    keep = withdraw(api, teller, member.id, 950_01, "wd-rule-003")
    assert keep.status_code == 422 and keep.json["code"] == "min_balance"
    assert "minimum balance" in keep.json["detail"] and "KES 950" in keep.json["detail"]
    assert savings(session_factory, member.id).balance_cents == 1_975_00
    assert withdraw(api, teller, member.id, 950_00, "wd-rule-004").status_code == 201
    assert savings(session_factory, member.id).balance_cents == 1_000_00  # the minimum, kept
    last = withdraw(api, teller, member.id, 100_00, "wd-rule-005")  # 2,950 of 3,500 today
    assert last.status_code == 422 and last.json["code"] == "min_balance"
