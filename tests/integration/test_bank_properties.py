"""Property: whatever the bank says about one transfer, in whatever order and however
often (callbacks, status answers, staff), the member's money moves once or not at all.

The first final word decides: success posts the hold (savings down by exactly the amount,
the bank account down by the same), failure releases it (savings as before); every later
word is a ``duplicate`` or a ``conflict`` that moves nothing; nothing stays held; the
ledger verifies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members.registration import member_account_ids
from core.payments.bank import transfers
from core.payments.bank.transfers import BankPolicy, TransferResult
from db.models import JournalEntry
from tests.loanutil import funded_member

NOW = datetime(2026, 6, 10, 7, 0, tzinfo=UTC)
POLICY = BankPolicy("01", "1100223344", 999_999_00, 100_00)

words = st.lists(
    st.tuples(st.booleans(), st.sampled_from(["FTA", "FTB", ""]), st.booleans()),
    min_size=1, max_size=6,
)  # fmt: skip


@settings(
    max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(amount=st.integers(min_value=1, max_value=10**10), extra=st.integers(0, 10**8), said=words)
def test_a_transfer_moves_money_once_whatever_the_bank_says(
    db_session: Session, deps: CoreDeps, amount: int, extra: int,
    said: list[tuple[bool, str, bool]],
) -> None:  # fmt: skip
    s, d = db_session, replace(deps, now=lambda: NOW)
    member = funded_member(s, d, savings_cents=amount + extra)
    transfers.set_member_bank_account(
        s, d, SYSTEM, member.id, bank_code="11", account_number="0123456789",
        account_name="Amina Wanjiru",
    )  # fmt: skip
    savings_id = member_account_ids(s, member.id)["savings"]
    bank_id = ledger.account_id_by_code(s, SystemAccount.BANK)
    bank_before = ledger.get_balance(s, bank_id).balance_cents
    row = transfers.request_transfer(
        s, d, POLICY, member_id=member.id, amount_cents=amount,
        idempotency_key=f"prop:{member.id}", narration="Loan L1",
    )  # fmt: skip
    assert transfers.claim_for_sending(s, d, POLICY, row.id) is not None
    transfers.record_accepted(s, d, row.id, "RRN1")
    outcomes = []
    for succeeded, suffix, right_amount in said:
        result = TransferResult(
            reference=row.reference,
            bank_reference=f"{suffix}{member.id}" if suffix else "",
            succeeded=succeeded,
            code="SUCCESS" if succeeded else "FAILED",
            description="",
            amount_cents=amount if right_amount else amount + 1,
        )
        outcomes.append(transfers.apply_result(s, d, result))
    settled = [o for o in outcomes if o in ("succeeded", "failed")]
    assert len(settled) <= 1  # one final word moves money, never a second
    view = ledger.get_balance(s, savings_id)
    posted = s.scalar(
        select(func.count()).select_from(JournalEntry).where(
            JournalEntry.idempotency_key == f"bank:transfer:{row.reference}"
        )
    )  # fmt: skip
    if settled == ["succeeded"]:
        assert (view.balance_cents, view.held_cents) == (extra, 0)
        assert bank_before - ledger.get_balance(s, bank_id).balance_cents == amount
        assert posted == 1
    elif settled == ["failed"]:
        assert (view.balance_cents, view.held_cents) == (amount + extra, 0)
        assert posted == 0
    else:  # a wrong amount first: staff review, the money still held
        assert outcomes[0] == "conflict" and row.status == "review"
        assert (view.balance_cents, view.held_cents) == (amount + extra, amount)
        assert posted == 0
    assert verify_ledger(s).ok
