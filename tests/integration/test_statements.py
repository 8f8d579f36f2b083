"""Read-only member views used by the USSD statement and balances screens."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.ledger import entries as ledger
from core.ledger import statements
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members import registration as members
from core.members.access import ALL_FEATURES, self_service_features
from core.savings import accounts as savings
from db.base import utcnow
from tests.ussdutil import make_member


def test_recent_movements_merge_all_member_accounts_newest_first(
    db_session: Session, deps: CoreDeps
) -> None:
    amina = make_member(db_session, deps)
    other = make_member(db_session, deps, msisdn="+254722000002", national_id="23456782")
    for i, (target, kes) in enumerate(
        [("savings", "100"), ("deposits", "200"), ("shares", "300"), ("savings", "400")]
    ):
        savings.credit_member(
            db_session,
            deps,
            savings.Credit(
                member_id=amina.id,
                target=target,
                amount_cents=Money.of(kes).cents,
                source=savings.CreditSource.MPESA,
                idempotency_key=f"a{i}",
                business_key=f"deposit_received:a{i}",
            ),
        )
    savings.credit_member(
        db_session,
        deps,
        savings.Credit(
            member_id=other.id,
            target="savings",
            amount_cents=Money.of(999).cents,
            source=savings.CreditSource.MPESA,
            idempotency_key="o1",
            business_key="deposit_received:o1",
        ),
    )
    moves = statements.recent_movements(db_session, amina.id, limit=3)
    assert [(m.account_purpose, m.amount_cents, m.kind) for m in moves] == [
        ("savings", 40000, "deposit.mpesa"),
        ("shares", 30000, "deposit.mpesa"),
        ("deposits", 20000, "deposit.mpesa"),
    ]
    assert moves[0].balance_after_cents == 50000  # savings: 100 + 400
    assert len(statements.recent_movements(db_session, amina.id, limit=10)) == 4
    assert statements.recent_movements(db_session, 10**9) == []


def test_a_transfer_between_own_accounts_shows_both_sides(
    db_session: Session, deps: CoreDeps
) -> None:
    amina = make_member(db_session, deps)
    savings.credit_member(
        db_session,
        deps,
        savings.Credit(
            member_id=amina.id,
            target="savings",
            amount_cents=Money.of(500).cents,
            source=savings.CreditSource.MPESA,
            idempotency_key="d",
            business_key="deposit_received:d",
        ),
    )
    savings.transfer_own(
        db_session,
        deps,
        member_id=amina.id,
        from_purpose="savings",
        to_purpose="shares",
        amount=Money.of(200),
        idempotency_key="t",
    )
    moves = statements.recent_movements(db_session, amina.id)
    assert sorted((m.account_purpose, m.amount_cents) for m in moves[:2]) == [
        ("savings", -20000),
        ("shares", 20000),
    ]


def test_loans_outstanding_sums_the_members_loan_accounts(
    db_session: Session, deps: CoreDeps
) -> None:
    amina = make_member(db_session, deps)
    assert statements.loans_outstanding_cents(db_session, amina.id) == 0  # no loans yet
    disbursement = ledger.account_id_by_code(db_session, SystemAccount.MPESA_DISBURSEMENT_FLOAT)
    for i, cents in enumerate((500_000, 250_050)):
        loan = ledger.create_account(
            db_session,
            code=f"LN-{amina.member_number}-{i}",
            name="Loan",
            type_="asset",
            purpose=statements.LOAN_PURPOSE,
            no_overdraft=False,
            member_id=amina.id,
            now=utcnow(),
        )
        ledger.post_entry(
            db_session,
            kind=EntryKind.ADJUSTMENT_MANUAL,  # loans post no entries yet,
            legs=[ledger.Leg(loan.id, cents), ledger.Leg(disbursement, -cents)],
            idempotency_key=f"loan-{i}",
            now=utcnow(),
        )
    db_session.commit()
    assert statements.loans_outstanding_cents(db_session, amina.id) == 750_050
    assert members.member_balances(db_session, amina.id).savings_cents == 0
    moves = statements.recent_movements(db_session, amina.id)
    assert [(m.account_purpose, m.amount_cents) for m in moves] == [
        ("loan", 250_050),
        ("loan", 500_000),
    ]


def test_self_service_features_by_status() -> None:
    assert self_service_features("active") == ALL_FEATURES
    assert self_service_features("pending_kyc") == {"balances", "account", "change_pin", "deposit"}
    assert self_service_features("suspended") == {"balances"}
    assert self_service_features("exited") == frozenset()
    assert self_service_features("no such status") == frozenset()


def test_caller_by_msisdn_finds_the_member_in_any_phone_format(
    db_session: Session, deps: CoreDeps
) -> None:
    from core.members.access import caller_by_msisdn

    amina = make_member(db_session, deps, status="suspended", language="sw")
    caller = caller_by_msisdn(db_session, "0712000001")
    assert caller is not None
    assert (caller.member_id, caller.status, caller.language) == (amina.id, "suspended", "sw")
    assert caller.features == {"balances"}
    assert caller_by_msisdn(db_session, "+254799999999") is None
    assert caller_by_msisdn(db_session, "garbage") is None
