"""Every shilling of a till day is explained (issue 14, part 3): whatever the teller's cash
moves and whatever the count, expected = float + in − out, and once the difference is
approved the bank account moved by exactly in − out + difference while cash over and short
holds the difference's mirror; a withdrawal beyond the available balance moves nothing."""

from __future__ import annotations

from itertools import count

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.errors import InsufficientFunds
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members import registration as members_core
from core.members.backoffice import cash_deposit
from core.savings import tills
from core.savings.accounts import Credit, CreditSource, credit_member
from core.savings.approval_actions import count_till
from core.staff import accounts as staff_core

KES = 100
SERIAL = count()


def balance(s: Session, account: SystemAccount) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, account)).balance_cents


@settings(
    max_examples=10, deadline=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(
    float_kes=st.integers(0, 50_000),
    moves=st.lists(st.tuples(st.booleans(), st.integers(1, 40_000)), max_size=6),
    off_cents=st.integers(-5_000_00, 5_000_00),
)
def test_a_till_day_explains_every_shilling(
    db_session: Session,
    deps: CoreDeps,
    float_kes: int,
    moves: list[tuple[bool, int]],
    off_cents: int,
) -> None:
    s = db_session
    n = next(SERIAL)
    nested = s.begin_nested()
    try:
        teller, manager = (
            staff_core.principal_for(
                staff_core.create_staff(
                    s,
                    deps,
                    SYSTEM,
                    username=f"{role}.prop{n}",
                    full_name=f"Prop {role}",
                    role=role,
                    password="correct horse battery staple",
                )
            )  # fmt: skip
            for role in ("teller", "manager")
        )
        member = members_core.register_member(
            s, deps, full_name="Njeri Till", msisdn=f"+25471100{n:04d}",
            national_id=f"4200{n:04d}", consent=True,
        )  # fmt: skip
        member.status = "active"
        credit_member(s, deps, Credit(
            member_id=member.id, target="savings", amount_cents=20_000 * KES,
            source=CreditSource.BANK, idempotency_key=f"prop-bank-{n}", business_key=f"p-{n}",
        ))  # fmt: skip
        bank0, over_short0 = (
            balance(s, SystemAccount.BANK),
            balance(s, SystemAccount.CASH_OVER_SHORT),
        )
        till = tills.open_till(s, deps, teller, opening_float_cents=float_kes * KES)
        cash_in = cash_out = 0
        for k, (is_deposit, kes) in enumerate(moves):
            key = f"prop-{n}-{k}-move"
            if is_deposit:
                cash_deposit(s, deps, teller, member_id=member.id, target="savings",
                             amount_cents=kes * KES, idempotency_key=key)  # fmt: skip
                cash_in += kes * KES
                continue
            savings_before = ledger.get_balance(
                s, members_core.member_account_ids(s, member.id)["savings"]
            )
            try:
                tills.cash_withdrawal(s, deps, teller, member_id=member.id,
                                      amount_cents=kes * KES, idempotency_key=key)  # fmt: skip
                cash_out += kes * KES
            except InsufficientFunds:
                assert kes * KES > savings_before.available_cents
        expected = float_kes * KES + cash_in - cash_out
        assert tills.figures(s, till, deps.now()).expected_cents == expected
        counted = max(0, expected + off_cents)
        found, req = count_till(
            s, deps, teller, counted_cents=counted, explanation="counted twice at noon",
            large_threshold_cents=50_000 * KES,
        )  # fmt: skip
        assert (found.cash_in_cents, found.cash_out_cents) == (cash_in, cash_out)
        difference = counted - expected
        assert till.difference_cents == difference and (req is None) == (difference == 0)
        if req is not None:
            approvals.decide(s, deps, manager, req.id, approve=True)
        assert till.status == "closed"
        assert balance(s, SystemAccount.BANK) - bank0 == cash_in - cash_out + difference
        assert balance(s, SystemAccount.CASH_OVER_SHORT) - over_short0 == -difference
        assert verify_ledger(s).ok
    finally:
        nested.rollback()
        s.expire_all()
