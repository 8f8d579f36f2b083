"""More than one savings account per member (issue 14, part 1): staff open a holiday
account under a product open to members; money reaches it by paybill with the member
number and the product's code (an account not held is refused at validation and parked in
suspense if paid anyway); it earns interest and keeps the withdrawal rules of its own
product; bad input is a 4xx and writes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.ledger.verify import verify_ledger
from core.payments.mpesa import flows as mpesa
from core.payments.mpesa.rules import MpesaPolicy, parse_bill_ref
from core.savings import products
from core.savings.interest import accrue_day
from core.savings.member_accounts import account_for_target
from core.savings.rules import rules_for_account
from core.savings.vocabulary import ProductKind
from db.models import Account, Member, OutboxMessage
from db.models_savings import SavingsAccrual
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

DAY = date(2027, 3, 10)


def make_holiday_product(factory: sessionmaker[Session], deps: CoreDeps, **terms: Any) -> None:
    with unit_of_work(factory) as s:
        products.create_product(
            s, deps, SYSTEM, "HOLI",
            products.parse_terms({**products.DEFAULTS, "name": "Holiday savings",
                                  "kind": ProductKind.ORDINARY_SAVINGS.value, **terms}),
        )  # fmt: skip


def open_for(api: FlaskClient, who: Staffer, member_id: int, code: str) -> Any:
    return api.post(
        f"/api/v1/members/{member_id}/savings-accounts", headers=auth(who),
        json={"product_code": code},
    )  # fmt: skip


def test_staff_open_a_holiday_account_that_paybill_fills_and_interest_grows(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    make_holiday_product(
        session_factory, deps, rate_percent="10", min_balance_cents=500_00,
        daily_withdrawal_limit_cents=1_000_00,
    )  # fmt: skip
    member, teller = make_member(status="active"), make_staff("teller")
    opened = open_for(api, teller, member.id, "holi")
    assert opened.status_code == 201, opened.json
    number = member.member_number
    assert opened.json["target"] == "@HOLI" and opened.json["paybill_account"] == f"{number}HOLI"
    assert open_for(api, teller, member.id, "HOLI").json["code"] == "savings_account_refused"
    assert open_for(api, teller, member.id, "SAV").status_code == 409  # a default: not open
    assert open_for(api, teller, member.id, "NOPE").status_code == 409
    for bad in ({}, {"product_code": 5}, {"product_code": "H"}, {"product_code": "HOLI", "x": 1}):
        r = api.post(f"/api/v1/members/{member.id}/savings-accounts", headers=auth(teller),
                     json=bad)  # fmt: skip
        assert r.status_code == 422
    assert open_for(api, make_staff("auditor"), member.id, "HOLI").status_code == 403
    listed = api.get(f"/api/v1/members/{member.id}/savings-accounts", headers=auth(teller)).json
    assert [a["target"] for a in listed["items"]] == ["savings", "@HOLI"]
    assert listed["items"][0]["paybill_account"] == number
    # Paybill: <member number>HOLI (any case, a dash allowed) reaches the holiday account.
    policy = MpesaPolicy()
    assert parse_bill_ref(f"{number}-holi").target == "@HOLI"  # type: ignore[union-attr]
    with unit_of_work(session_factory) as s:
        ok = mpesa.validate_c2b(
            s,
            bill_ref=f"{number}HOLI",
            amount_cents=36_500_00,
            shortcode="174379",
            expected_shortcode="174379",
            policy=policy,
        )
        assert ok == ("0", "Accepted")
        refused = mpesa.validate_c2b(s, bill_ref=f"{number}XMAS", amount_cents=100_00,
                                     shortcode="174379", expected_shortcode="174379",
                                     policy=policy)  # fmt: skip
        assert refused[0] == "C2B00012"
        paid = mpesa.C2BIn("QHO1234567", datetime.now(UTC), 36_500_00, f"{number}HOLI", "174379")
        assert mpesa.record_c2b(s, deps, paid) == "credited"
        stray = mpesa.C2BIn("QHO7654321", datetime.now(UTC), 100_00, f"{number}XMAS", "174379")
        assert mpesa.record_c2b(s, deps, stray) == "suspense"
        holiday = account_for_target(s, member.id, "@HOLI")
        assert holiday.balance_cents == 36_500_00
        main = account_for_target(s, member.id, "savings")
        assert main.balance_cents == 0  # the member number alone still means main savings
        [sms] = s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == "deposit_received"
            )
        )
        assert "into your Holiday savings account" in sms
        opened_sms = s.scalar(select(OutboxMessage.body).where(
            OutboxMessage.member_id == member.id,
            OutboxMessage.template == "savings_account_opened"))  # fmt: skip
        assert opened_sms is not None and f"account {number}HOLI" in opened_sms
        # The holiday product's own rules apply to its account, not the default's.
        rules = rules_for_account(s, holiday.account_id)
        assert (rules.product_code, rules.min_balance_cents) == ("HOLI", 500_00)
        # A day at 10% on KES 36,500 is KES 10.00 exactly.
        moment = datetime.combine(DAY, time(9), tzinfo=UTC)
        accrue_day(s, dataclasses.replace(deps, now=lambda: moment), DAY)
        accrual = s.get_one(SavingsAccrual, holiday.account_id)
        assert accrual.accrued_cents == 10_00
        assert (
            s.scalar(
                select(func.count())
                .select_from(SavingsAccrual)
                .where(SavingsAccrual.account_id == main.account_id)
            )
            == 0
        )  # SAV is at 0%
        assert verify_ledger(s).ok
    with unit_of_work(session_factory) as s:
        code = s.scalar(select(Account.code).where(Account.id == opened.json["account_id"]))
        assert code == f"2000-{number}-HOLI"
