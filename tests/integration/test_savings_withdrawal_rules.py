"""The savings product's rules where money leaves savings, on real PostgreSQL (issue 14,
part 1): the teller's cash and the M-Pesa quote take the product's fee to fee income in
the same entry; the daily limit counts every channel within the Nairobi business day and
starts again at Nairobi midnight; the minimum balance holds on own transfers and loan
repayments too; two withdrawals at once never pass the daily limit together."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.money import Money
from core.kernel.permissions import SYSTEM, Principal
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members import registration as members_core
from core.members.registration import member_account_ids
from core.payments.mpesa.flows import quote_withdrawal
from core.payments.mpesa.rules import MpesaPolicy
from core.savings import products, tills
from core.savings.accounts import Credit, CreditSource, credit_member, transfer_own
from core.savings.rules import BelowMinimumBalance, DailyWithdrawalLimit
from core.staff import accounts as staff_core
from db.models import Member
from db.models_savings import SavingsProduct
from db.session import make_session_factory, unit_of_work

KES = 100
SERIAL = count()
# 20:59 UTC is 23:59 in Nairobi; a minute later is the next business day.
LATE = datetime(2026, 5, 4, 20, 59, tzinfo=UTC)


def at(deps: CoreDeps, moment: datetime) -> CoreDeps:
    return replace(deps, now=lambda: moment)


def set_savings_rules(s: Session, deps: CoreDeps, **changes: Any) -> None:
    product = s.scalars(select(SavingsProduct).where(SavingsProduct.default_for == "savings")).one()
    current = products.get_product(s, product.id)
    terms = replace(current.terms, **changes)
    products.change_product(s, deps, SYSTEM, product.id, product.current_version, terms)


def saver(s: Session, deps: CoreDeps, cents: int) -> Member:
    n = next(SERIAL)
    member = members_core.register_member(
        s, deps, full_name="Wanjiru Rules", msisdn=f"+25471300{n:04d}",
        national_id=f"5300{n:04d}", consent=True,
    )  # fmt: skip
    member.status = "active"
    credit_member(s, deps, Credit(
        member_id=member.id, target="savings", amount_cents=cents, source=CreditSource.BANK,
        idempotency_key=f"rules-bank-{n}", business_key=f"rules-{n}",
    ))  # fmt: skip
    return member


def teller(s: Session, deps: CoreDeps) -> Principal:
    n = next(SERIAL)
    return staff_core.principal_for(
        staff_core.create_staff(
            s,
            deps,
            SYSTEM,
            username=f"teller.rules{n}",
            full_name="Rules Teller",
            role="teller",
            password="correct horse battery staple",
        )  # fmt: skip
    )


def balance(s: Session, account_id: int) -> int:
    return ledger.get_balance(s, account_id).balance_cents


def system(s: Session, code: SystemAccount) -> int:
    return balance(s, ledger.account_id_by_code(s, code))


def test_cash_takes_the_fee_to_fee_income_in_the_same_entry_and_keeps_the_minimum(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    set_savings_rules(s, deps, min_balance_cents=1_000 * KES, withdrawal_fee_cents=50 * KES)
    member, cashier = saver(s, deps, 5_000 * KES), teller(s, deps)
    savings_id = member_account_ids(s, member.id)["savings"]
    fees0, bank0 = system(s, SystemAccount.FEE_INCOME), system(s, SystemAccount.BANK)
    # 5,000 - 1,000 kept - 50 fee: 3,950 is the most; a cent more is refused, naming it.
    with pytest.raises(BelowMinimumBalance) as refused:
        tills.cash_withdrawal(s, deps, cashier, member_id=member.id, amount_cents=3_950 * KES + 1,
                              idempotency_key="rules-cash-1")  # fmt: skip
    assert refused.value.limit_cents == 3_950 * KES and refused.value.reason == "min_balance"
    assert balance(s, savings_id) == 5_000 * KES  # nothing moved
    posted = tills.cash_withdrawal(
        s,
        deps,
        cashier,
        member_id=member.id,
        amount_cents=3_950 * KES,
        idempotency_key="rules-cash-2",
    )
    assert balance(s, savings_id) == 1_000 * KES
    assert system(s, SystemAccount.BANK) == bank0 - 3_950 * KES
    assert system(s, SystemAccount.FEE_INCOME) == fees0 + 50 * KES
    # A replay returns the first entry, its fee as it was, after the fee changed.
    set_savings_rules(s, deps, withdrawal_fee_cents=70 * KES)
    again = tills.cash_withdrawal(
        s,
        deps,
        cashier,
        member_id=member.id,
        amount_cents=3_950 * KES,
        idempotency_key="rules-cash-2",
    )
    assert again.entry_id == posted.entry_id and not again.created
    assert balance(s, savings_id) == 1_000 * KES
    # Own transfers keep the minimum too; deposits never move back (not withdrawable).
    with pytest.raises(BelowMinimumBalance):
        transfer_own(s, deps, member_id=member.id, from_purpose="savings", to_purpose="shares",
                     amount=Money(1), idempotency_key="rules-own-1")  # fmt: skip
    with pytest.raises(InvalidInput):
        transfer_own(s, deps, member_id=member.id, from_purpose="deposits",
                     to_purpose="savings", amount=Money(1),
                     idempotency_key="rules-own-2")  # fmt: skip
    assert verify_ledger(s).ok


def test_the_daily_limit_counts_cash_and_m_pesa_within_the_nairobi_day(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    late = at(deps, LATE)
    set_savings_rules(
        s, deps, daily_withdrawal_limit_cents=3_000 * KES, withdrawal_fee_cents=10 * KES
    )
    member, cashier = saver(s, late, 20_000 * KES), teller(s, late)
    tills.cash_withdrawal(s, late, cashier, member_id=member.id, amount_cents=2_000 * KES,
                          idempotency_key="rules-day-1")  # fmt: skip
    policy = MpesaPolicy()
    # M-Pesa sees the cash paid out today: 1,000 left, and the product's fee joins M-Pesa's.
    quote = quote_withdrawal(s, late, member_id=member.id, amount_cents=1_000 * KES,
                             policy=policy)  # fmt: skip
    assert quote.fee_cents == 10 * KES and quote.total_cents == 1_010 * KES
    with pytest.raises(DailyWithdrawalLimit) as refused:
        quote_withdrawal(s, late, member_id=member.id, amount_cents=1_001 * KES, policy=policy)
    assert refused.value.limit_cents == 1_000 * KES
    with pytest.raises(DailyWithdrawalLimit):
        tills.cash_withdrawal(s, late, cashier, member_id=member.id, amount_cents=1_001 * KES,
                              idempotency_key="rules-day-2")  # fmt: skip
    tills.cash_withdrawal(s, late, cashier, member_id=member.id, amount_cents=1_000 * KES,
                          idempotency_key="rules-day-3")  # fmt: skip
    # A minute later it is tomorrow in Nairobi: the whole limit again.
    tomorrow = at(deps, LATE + timedelta(minutes=1))
    tills.cash_withdrawal(s, tomorrow, cashier, member_id=member.id, amount_cents=3_000 * KES,
                          idempotency_key="rules-day-4")  # fmt: skip
    savings_id = member_account_ids(s, member.id)["savings"]
    assert balance(s, savings_id) == (20_000 - 6_000 - 30) * KES


def test_two_withdrawals_at_once_never_pass_the_daily_limit_together(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        set_savings_rules(s, deps, daily_withdrawal_limit_cents=5_000 * KES)
        member, cashier = saver(s, deps, 50_000 * KES), teller(s, deps)
        member_id = member.id
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def withdraw(key: str) -> None:
        start.wait()
        try:
            with unit_of_work(factory) as s:
                tills.cash_withdrawal(
                    s,
                    deps,
                    cashier,
                    member_id=member_id,
                    amount_cents=3_000 * KES,
                    idempotency_key=key,
                )
            result = "paid"
        except DailyWithdrawalLimit:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=withdraw, args=(f"rules-race-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["paid", "refused"]
    with unit_of_work(factory) as s:
        assert balance(s, member_account_ids(s, member_id)["savings"]) == 47_000 * KES
        assert verify_ledger(s).ok
