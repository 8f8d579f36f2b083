"""Share capital moves between members only by maker-checker (issue 14, part 1): a teller
asks, a manager approves; the seller keeps the share product's minimum holding unless
exiting; both members are texted and the ledger moves exactly the amount, once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.verify import verify_ledger
from core.members import exit as member_exit
from core.members.registration import member_account_ids
from core.savings import products
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import Member, OutboxMessage
from db.models_savings import SavingsProduct
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth


def shares_of(factory: sessionmaker[Session], member_id: int) -> int:
    with unit_of_work(factory) as s:
        return ledger.get_balance(s, member_account_ids(s, member_id)["shares"]).balance_cents


def ask(api: FlaskClient, who: Staffer, member_id: int, body: dict[str, Any]) -> Any:
    return api.post(f"/api/v1/members/{member_id}/share-transfers", headers=auth(who), json=body)


def test_shares_move_between_members_only_when_another_person_approves(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    with unit_of_work(session_factory) as s:
        shr = s.scalars(select(SavingsProduct).where(SavingsProduct.default_for == "shares")).one()
        terms = replace(products.get_product(s, shr.id).terms, min_balance_cents=1_000_00)
        products.change_product(s, deps, SYSTEM, shr.id, shr.current_version, terms)
    seller, buyer = make_member(status="active"), make_member(status="active")
    teller, manager = make_staff("teller"), make_staff("manager")
    with unit_of_work(session_factory) as s:
        credit_member(s, deps, Credit(
            member_id=seller.id, target="shares", amount_cents=5_000_00,
            source=CreditSource.BANK, idempotency_key="shr-1", business_key="shr-1",
        ))  # fmt: skip
    # 5,000 held, 1,000 must stay: 4,000 at most, a cent more refused naming the rule.
    over = ask(api, teller, seller.id, {"to_member_id": buyer.id, "amount_cents": 4_000_01})
    assert over.status_code == 422 and over.json["code"] == "min_share_holding"
    assert "KES 4,000" in over.json["detail"]
    own = ask(api, teller, seller.id, {"to_member_id": seller.id, "amount_cents": 100})
    assert own.status_code == 422 and own.json["code"] == "share_transfer_refused"
    for bad in ({"to_member_id": buyer.id, "amount_cents": "5"}, {"to_member_id": buyer.id},
                {"to_member_id": buyer.id, "amount_cents": 0},
                {"to_member_id": buyer.id, "amount_cents": 1, "price": 3}):  # fmt: skip
        assert ask(api, teller, seller.id, bad).status_code == 422
    nobody = ask(api, teller, seller.id, {"to_member_id": 10**9, "amount_cents": 100})
    assert nobody.status_code == 404
    officer = make_staff("loan_officer")
    assert ask(api, officer, seller.id, {"to_member_id": buyer.id, "amount_cents": 1}).status_code == 403  # fmt: skip
    pending = ask(api, teller, seller.id, {"to_member_id": buyer.id, "amount_cents": 3_000_00})
    assert pending.status_code == 202 and pending.json["action"] == "share.transfer"
    assert shares_of(session_factory, seller.id) == 5_000_00  # nothing moved yet
    url = f"/api/v1/approvals/{pending.json['id']}/approve"
    assert api.post(url, headers=auth(teller), json={}).status_code == 403  # not the maker
    done = api.post(url, headers=auth(manager), json={})
    assert done.status_code == 200 and done.json["status"] == "approved"
    assert api.post(url, headers=auth(manager), json={}).status_code == 409  # decided once
    assert shares_of(session_factory, seller.id) == 2_000_00
    assert shares_of(session_factory, buyer.id) == 3_000_00
    with unit_of_work(session_factory) as s:
        texts = {
            (m, t): b for m, t, b in s.execute(
                select(OutboxMessage.member_id, OutboxMessage.template, OutboxMessage.body)
                .where(OutboxMessage.template.like("shares_transferred_%"))
            )
        }  # fmt: skip
        assert "KES 3,000 of your shares transferred to member" in texts[(seller.id, "shares_transferred_out")]  # fmt: skip
        assert "Shares now KES 3,000" in texts[(buyer.id, "shares_transferred_in")]
        assert verify_ledger(s).ok
    # 2,000 held: only 1,000 more may go while the seller stays a member...
    more = ask(api, teller, seller.id, {"to_member_id": buyer.id, "amount_cents": 1_000_01})
    assert more.status_code == 422 and more.json["code"] == "min_share_holding"
    # ...and everything once the seller has given notice to leave.
    with unit_of_work(session_factory) as s:
        member_exit.request_exit(
            s, deps, member_id=seller.id, reason="moving abroad",
            policy=member_exit.ExitPolicy(60), channel=member_exit.ExitChannel.STAFF,
        )  # fmt: skip
    all_of_it = ask(api, teller, seller.id, {"to_member_id": buyer.id, "amount_cents": 2_000_00})
    assert all_of_it.status_code == 202
    approved = api.post(f"/api/v1/approvals/{all_of_it.json['id']}/approve",
                        headers=auth(manager), json={})  # fmt: skip
    assert approved.json["status"] == "approved"
    assert shares_of(session_factory, seller.id) == 0
    assert shares_of(session_factory, buyer.id) == 5_000_00


def test_an_approval_whose_rule_no_longer_holds_fails_and_moves_nothing(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    seller, buyer, third = (make_member(status="active") for _ in range(3))
    teller, manager = make_staff("teller"), make_staff("manager")
    with unit_of_work(session_factory) as s:
        credit_member(s, deps, Credit(
            member_id=seller.id, target="shares", amount_cents=1_000_00,
            source=CreditSource.BANK, idempotency_key="shr-2", business_key="shr-2",
        ))  # fmt: skip
    first = ask(api, teller, seller.id, {"to_member_id": buyer.id, "amount_cents": 800_00})
    assert first.status_code == 202
    # One pending transfer per seller at a time.
    assert ask(api, teller, seller.id, {"to_member_id": third.id, "amount_cents": 1}).status_code == 409  # fmt: skip
    with unit_of_work(session_factory) as s:  # the buyer is suspended meanwhile
        s.get_one(Member, buyer.id).status = "suspended"
    r = api.post(f"/api/v1/approvals/{first.json['id']}/approve", headers=auth(manager), json={})
    assert r.json["status"] == "failed"
    assert shares_of(session_factory, seller.id) == 1_000_00
    assert shares_of(session_factory, buyer.id) == 0
