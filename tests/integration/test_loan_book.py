"""The loan book on real PostgreSQL: apply -> guarantors consent -> approve -> disbursed,
every refusal clear and writing nothing, one hold however often a guarantee is accepted,
and pledges plus own free deposits always covering an approved loan's principal."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.money import parse_amount
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.statements import loans_owed_cents, recent_movements
from core.ledger.verify import verify_ledger
from core.loans import approval_actions, book, guarantees
from core.loans.errors import GuaranteeRefused, LoanRefused, LoanStateError, ProductUnavailable
from core.loans.facts import free_deposits_cents
from core.loans.pledges import pledged_cents
from core.members.registration import member_account_ids, set_status
from db.models import Hold, JournalEntry, Member, OutboxMessage, StaffUser
from db.models_loans import Loan, LoanApplication, LoanGuarantee, LoanInstalment
from db.session import make_session_factory, unit_of_work
from tests.loanutil import funded_member, make_product

KES = 100  # cents
THRESHOLD = 1_000_000 * KES  # the manager threshold (APPROVAL_MANAGER_THRESHOLD_KES)


def staff(s: Session, role: str, name: str) -> Principal:
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def sms(s: Session, member: Member, template: str) -> list[str]:
    return list(
        s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == template
            )
        )
    )


def balances(s: Session, member: Member) -> dict[str, tuple[int, int]]:
    return {
        purpose: (b.balance_cents, b.held_cents)
        for purpose, account_id in member_account_ids(s, member.id).items()
        if (b := ledger.get_balance(s, account_id))
    }


def fee_income(s: Session) -> int:
    return ledger.get_balance(
        s, ledger.account_id_by_code(s, SystemAccount.FEE_INCOME)
    ).balance_cents


def test_apply_guarantor_accepts_approve_disbursed(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    product = make_product(s, deps)
    borrower = funded_member(s, deps, deposits_cents=200_000 * KES, name="Amina Wanjiru")
    guarantor = funded_member(s, deps, deposits_cents=400_000 * KES, name="Otieno Kamau")
    fees_before = fee_income(s)

    application = book.apply_for_loan(
        s, deps, borrower.id, product.code, 500_000 * KES, 12, "ussd", "apply-000001"
    )
    assert application.status == "awaiting_guarantors"
    # Own free deposits cover 200,000; guarantors must pledge the other 300,000.
    assert (application.required_cover_cents, application.own_cover_cents) == (
        500_000 * KES,
        200_000 * KES,
    )
    assert application.guarantor_cover_cents == 300_000 * KES
    assert application.deducted_fee_cents == 5_000 * KES  # 1% processing
    assert application.instalment_cents == 44_425 * KES  # 8,884.88 x 5, up to the shilling
    # The same key again (a USSD retry) is the same application.
    again = book.apply_for_loan(
        s, deps, borrower.id, product.code, 500_000 * KES, 12, "ussd", "apply-000001"
    )
    assert again.id == application.id

    request = guarantees.request_guarantee(
        s, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=guarantor.member_number or "", amount_cents=300_000 * KES,
    )  # fmt: skip
    [asked] = sms(s, guarantor, "guarantee_request")
    assert "dial *384*44135# > Loans" in asked and f"DECLINE {request.code}" in asked
    assert "Amina" in asked and "KES 300,000" in asked

    accepted = guarantees.accept_by_code(
        s, deps, msisdn=guarantor.msisdn, code=request.code.lower()
    )
    assert accepted.status == "accepted"
    assert balances(s, guarantor)["deposits"] == (400_000 * KES, 300_000 * KES)
    assert application.status == "pending_approval"
    [told] = sms(s, borrower, "guarantee_accepted")
    assert "Otieno pledged KES 300,000" in told and "KES 0" in told

    officer = staff(s, "loan_officer", "officer.book")
    manager = staff(s, "manager", "manager.book")
    req = approval_actions.recommend(
        s, deps, officer, application.id, large_threshold_cents=THRESHOLD
    )
    assert req.checker_permission == "approvals:decide"
    with pytest.raises(approvals.SelfApproval):
        approvals.decide(s, deps, officer, req.id, approve=True)
    decided = approvals.decide(s, deps, manager, req.id, approve=True, note="good record")
    assert decided.status == "approved", decided.result

    assert application.status == "disbursed"
    loan = s.scalars(select(Loan).where(Loan.application_id == application.id)).one()
    assert (loan.status, loan.principal_cents, loan.deducted_fee_cents) == (
        "active", 500_000 * KES, 5_000 * KES,
    )  # fmt: skip
    rows = list(
        s.scalars(
            select(LoanInstalment)
            .where(LoanInstalment.loan_id == loan.id)
            .order_by(LoanInstalment.number)
        )
    )
    assert [r.number for r in rows] == list(range(1, 13))
    assert sum(r.principal_cents for r in rows) == 500_000 * KES
    assert all(r.paid_cents == 0 for r in rows)
    # The ledger: the loan account owes the principal, savings got it less the fee.
    assert ledger.get_balance(s, loan.account_id).balance_cents == 500_000 * KES
    assert balances(s, borrower)["savings"] == (495_000 * KES, 0)
    assert balances(s, borrower)["deposits"] == (200_000 * KES, 0)
    assert fee_income(s) - fees_before == 5_000 * KES
    assert loans_owed_cents(s, borrower.id) == 500_000 * KES
    entry = s.get(JournalEntry, loan.disbursement_entry_id)
    assert entry is not None and entry.kind == "loan.disbursement"
    assert {m.label for m in recent_movements(s, borrower.id)} >= {"loan"}
    # The pledge stays held for the loan.
    assert balances(s, guarantor)["deposits"] == (400_000 * KES, 300_000 * KES)
    assert s.get(LoanGuarantee, request.id).loan_id == loan.id  # type: ignore[union-attr]
    [paid] = sms(s, borrower, "loan_disbursed")
    assert "KES 500,000 paid to your savings (KES 495,000 after fees)" in paid
    assert f"First instalment KES 44,425 due {rows[0].due_on:%d/%m/%Y}" in paid
    report = verify_ledger(s)
    assert report.ok, report.problems


def test_within_the_ceiling_and_without_guarantors_it_is_approved_and_paid_at_once(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    instant = make_product(
        s, deps, guarantor_policy="none", guarantor_cover_percent=None,
        auto_approve_ceiling_cents=20_000 * KES, min_amount_cents=500 * KES,
        max_amount_cents=50_000 * KES, max_term=3,
        fees=[{"kind": "processing", "percent": Decimal("7.5000"),
               "timing": "deducted_at_disbursement", "max_term": 1},
              {"kind": "processing", "percent": Decimal("10.0000"),
               "timing": "deducted_at_disbursement", "min_term": 2}],
    )  # fmt: skip
    member = funded_member(s, deps, deposits_cents=10_000 * KES)
    application = book.apply_for_loan(
        s, deps, member.id, instant.code, 10_000 * KES, 1, "ussd", "instant-0001"
    )
    assert application.status == "disbursed"
    assert application.approval_id is None  # no request: the rules decided
    assert balances(s, member)["savings"] == (9_250 * KES, 0)  # 7.5% for one month
    # Above the ceiling: waits for a person even though nothing is missing.
    other = funded_member(s, deps, deposits_cents=10_000 * KES)
    bigger = book.apply_for_loan(
        s, deps, other.id, instant.code, 25_000 * KES, 3, "ussd", "instant-0002"
    )
    assert bigger.status == "pending_approval"
    assert verify_ledger(s).ok


def test_a_rejection_tells_the_member_why_and_releases_the_pledges(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    product = make_product(s, deps)
    borrower = funded_member(s, deps, deposits_cents=10_000 * KES)
    guarantor = funded_member(s, deps, deposits_cents=50_000 * KES, name="Otieno Kamau")
    application = book.apply_for_loan(
        s, deps, borrower.id, product.code, 30_000 * KES, 6, "ussd", "reject-0001"
    )
    g = guarantees.request_guarantee(
        s, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=guarantor.msisdn.replace("+254", "0"), amount_cents=20_000 * KES,
    )  # fmt: skip
    guarantees.accept_guarantee(s, deps, guarantee_id=g.id, guarantor_id=guarantor.id)
    officer = staff(s, "loan_officer", "officer.rej")
    manager = staff(s, "manager", "manager.rej")
    req = approval_actions.recommend(
        s, deps, officer, application.id, large_threshold_cents=THRESHOLD
    )
    approval_actions.reject_application(
        s, deps, manager, application.id, reason="income too irregular"
    )
    assert s.get(type(req), req.id).status == "rejected"  # type: ignore[union-attr]
    assert application.status == "rejected"
    assert g.status == "released"
    assert balances(s, guarantor)["deposits"] == (50_000 * KES, 0)
    [told] = sms(s, borrower, "loan_rejected")
    assert "was not approved: income too irregular." in told
    assert len(sms(s, guarantor, "guarantee_released")) == 1
    assert verify_ledger(s).ok


def test_a_guarantor_may_withdraw_before_approval_and_the_loan_waits_again(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    product = make_product(s, deps)
    borrower = funded_member(s, deps, deposits_cents=10_000 * KES)
    guarantor = funded_member(s, deps, deposits_cents=50_000 * KES)
    application = book.apply_for_loan(
        s, deps, borrower.id, product.code, 30_000 * KES, 6, "sms", "withdraw-001"
    )
    g = guarantees.request_guarantee(
        s, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=guarantor.msisdn, amount_cents=20_000 * KES,
    )  # fmt: skip
    guarantees.accept_guarantee(s, deps, guarantee_id=g.id, guarantor_id=guarantor.id)
    assert application.status == "pending_approval"
    officer = staff(s, "loan_officer", "officer.wd")
    manager = staff(s, "manager", "manager.wd")
    first = approval_actions.recommend(s, deps, officer, application.id, large_threshold_cents=1)
    guarantees.withdraw_guarantee(s, deps, guarantee_id=g.id, guarantor_id=guarantor.id)
    assert (g.status, application.status) == ("withdrawn", "awaiting_guarantors")
    assert balances(s, guarantor)["deposits"] == (50_000 * KES, 0)
    assert first.status == "failed"  # the recommendation can no longer succeed
    with pytest.raises(approvals.AlreadyDecided):
        approvals.decide(s, deps, manager, first.id, approve=True)
    with pytest.raises(LoanStateError) as refused:
        approval_actions.recommend(s, deps, officer, application.id, large_threshold_cents=1)
    assert refused.value.reason == "not_pending_approval"
    # Another guarantor completes the cover: a new recommendation, approved and paid.
    other = funded_member(s, deps, deposits_cents=50_000 * KES)
    g2 = guarantees.request_guarantee(
        s, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=other.member_number or "", amount_cents=20_000 * KES,
    )  # fmt: skip
    guarantees.accept_guarantee(s, deps, guarantee_id=g2.id, guarantor_id=other.id)
    second = approval_actions.recommend(s, deps, officer, application.id, large_threshold_cents=1)
    assert approvals.decide(s, deps, manager, second.id, approve=True).status == "approved"
    assert application.status == "disbursed"
    assert verify_ledger(s).ok


# ------------------------------------------------------------------ refusals


def footprint(s: Session) -> tuple[int, ...]:
    """Rows a refused use case must not have written."""
    return tuple(
        s.scalar(select(func.count()).select_from(model)) or 0
        for model in (LoanApplication, LoanGuarantee, Hold, JournalEntry, OutboxMessage, Loan)
    )


def refuses(s: Session, call: Callable[[], object], error: type[Exception]) -> Exception:
    before = footprint(s)
    with pytest.raises(error) as refused:
        call()
    assert footprint(s) == before, "a refusal wrote something"
    return refused.value


@pytest.mark.parametrize(
    ("amount_cents", "term", "error", "reason"),
    [
        (40_000 * KES, 12, LoanRefused, "above_limit"),  # limit 3 x 10,000
        (500 * KES, 12, LoanRefused, "below_minimum"),
        (10**9 * KES, 12, LoanRefused, "above_maximum"),  # KES 1e9
        (1e9, 12, InvalidInput, "format"),  # a float is never money
        (0, 12, InvalidInput, "range"),
        (10**13, 12, InvalidInput, "too_large"),
        (20_000 * KES, 49, InvalidInput, "range"),  # term 1-48
        (20_000 * KES, 0, InvalidInput, "range"),
        (20_000 * KES, "12", InvalidInput, "format"),
    ],
)
def test_an_application_out_of_bounds_is_refused_and_writes_nothing(
    db_session: Session,
    deps: CoreDeps,
    amount_cents: object,
    term: object,
    error: type[Exception],
    reason: str,
) -> None:
    s = db_session
    product = make_product(s, deps)
    member = funded_member(s, deps, deposits_cents=10_000 * KES)
    apply: Callable[..., object] = book.apply_for_loan  # deliberately ill-typed input
    refused = refuses(
        s,
        lambda: apply(s, deps, member.id, product.code, amount_cents, term, "ussd", "bounds-001"),
        error,
    )
    assert getattr(refused, "reason", None) == reason
    if isinstance(refused, LoanRefused):
        assert refused.limit_cents == 30_000 * KES


def test_1e9_typed_on_a_phone_never_reaches_the_book() -> None:
    with pytest.raises(InvalidInput):
        parse_amount("1e9")


def test_a_suspended_member_an_open_application_and_a_closed_channel_are_refused(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    product = make_product(s, deps, channels="staff")
    member = funded_member(s, deps, deposits_cents=10_000 * KES, status="suspended")
    refused = refuses(
        s,
        lambda: book.apply_for_loan(
            s, deps, member.id, product.code, 5_000 * KES, 6, "staff", "suspended-1"
        ),
        LoanRefused,
    )
    assert refused.reason == "not_active"  # type: ignore[attr-defined]
    refuses(
        s,
        lambda: book.apply_for_loan(
            s, deps, member.id, product.code, 5_000 * KES, 6, "ussd", "channel-001"
        ),
        ProductUnavailable,
    )
    set_status(s, member.id, "active")
    book.apply_for_loan(s, deps, member.id, product.code, 5_000 * KES, 6, "staff", "first-00001")
    second = refuses(
        s,
        lambda: book.apply_for_loan(
            s, deps, member.id, product.code, 5_000 * KES, 6, "staff", "second-0001"
        ),
        LoanStateError,
    )
    assert second.reason == "application_open"  # type: ignore[attr-defined]


@pytest.fixture
def waiting(db_session: Session, deps: CoreDeps) -> tuple[LoanApplication, Member]:
    """An application waiting for KES 20,000 of pledges (max one guarantee each)."""
    product = make_product(db_session, deps, max_guarantees_per_guarantor=1)
    borrower = funded_member(db_session, deps, deposits_cents=10_000 * KES)
    application = book.apply_for_loan(
        db_session, deps, borrower.id, product.code, 30_000 * KES, 6, "ussd", "waiting-001"
    )
    assert application.status == "awaiting_guarantors"
    return application, borrower


def test_guarantors_who_may_not_pledge_are_refused_and_nothing_is_written(
    db_session: Session, deps: CoreDeps, waiting: tuple[LoanApplication, Member]
) -> None:
    s = db_session
    application, borrower = waiting

    def ask(who: str, cents: int = 10_000 * KES) -> Callable[[], object]:
        return lambda: guarantees.request_guarantee(
            s, deps, application_id=application.id, borrower_id=borrower.id, guarantor=who,
            amount_cents=cents,
        )  # fmt: skip

    def reason_of(call: Callable[[], object]) -> str:
        return refuses(s, call, GuaranteeRefused).reason  # type: ignore[attr-defined,no-any-return]

    assert reason_of(ask(borrower.member_number or "")) == "self_guarantee"
    suspended = funded_member(s, deps, deposits_cents=50_000 * KES, status="suspended")
    assert reason_of(ask(suspended.msisdn)) == "guarantor_not_active"
    poor = funded_member(s, deps, deposits_cents=5_000 * KES, savings_cents=90_000 * KES)
    assert reason_of(ask(poor.member_number or "")) == "lacks_deposits"  # savings never count
    rich = funded_member(s, deps, deposits_cents=90_000 * KES)
    assert reason_of(ask(rich.msisdn, 20_001 * KES)) == "more_than_needed"
    # Already guaranteeing the product's maximum (one) of loans.
    busy = funded_member(s, deps, deposits_cents=90_000 * KES)
    other_product = make_product(s, deps)
    other = funded_member(s, deps, deposits_cents=1_000 * KES)
    elsewhere = book.apply_for_loan(
        s, deps, other.id, other_product.code, 3_000 * KES, 6, "ussd", "elsewhere-1"
    )
    g = guarantees.request_guarantee(
        s, deps, application_id=elsewhere.id, borrower_id=other.id,
        guarantor=busy.member_number or "", amount_cents=2_000 * KES,
    )  # fmt: skip
    guarantees.accept_guarantee(s, deps, guarantee_id=g.id, guarantor_id=busy.id)
    assert reason_of(ask(busy.msisdn)) == "max_guarantees"
    with pytest.raises(NotFound, match="no member with that number or phone"):
        ask("not a phone")()
    # Asked once, a member is not asked again for the same application.
    guarantees.request_guarantee(
        s, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=rich.msisdn, amount_cents=10_000 * KES,
    )  # fmt: skip
    assert reason_of(ask(rich.member_number or "")) == "already_asked"


def test_arrears_and_a_defaulted_guarantee_stop_a_new_loan(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    instant = make_product(
        s, deps, guarantor_policy="none", guarantor_cover_percent=None,
        auto_approve_ceiling_cents=100_000 * KES, fees=[],
    )  # fmt: skip
    months_ago = dataclasses.replace(deps, now=lambda: datetime(2026, 1, 10, 9, tzinfo=UTC))
    late = funded_member(s, deps, deposits_cents=10_000 * KES)
    old = book.apply_for_loan(
        s, months_ago, late.id, instant.code, 5_000 * KES, 3, "ussd", "old-loan-01"
    )
    assert old.status == "disbursed"
    refused = refuses(
        s,
        lambda: book.apply_for_loan(
            s, deps, late.id, instant.code, 1_000 * KES, 3, "ussd", "new-loan-01"
        ),
        LoanRefused,
    )
    assert "in_arrears" in refused.reasons  # type: ignore[attr-defined]

    # A guarantor of a loan written off may not borrow.
    product = make_product(s, deps)
    borrower = funded_member(s, deps, deposits_cents=1_000 * KES)
    guarantor = funded_member(s, deps, deposits_cents=50_000 * KES)
    application = book.apply_for_loan(
        s, deps, borrower.id, product.code, 3_000 * KES, 6, "ussd", "default-001"
    )
    g = guarantees.request_guarantee(
        s, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=guarantor.msisdn, amount_cents=2_000 * KES,
    )  # fmt: skip
    guarantees.accept_guarantee(s, deps, guarantee_id=g.id, guarantor_id=guarantor.id)
    manager = staff(s, "manager", "manager.def")
    officer = staff(s, "loan_officer", "officer.def")
    req = approval_actions.recommend(s, deps, officer, application.id, large_threshold_cents=1)
    approvals.decide(s, deps, manager, req.id, approve=True)
    loan = s.scalars(select(Loan).where(Loan.application_id == application.id)).one()
    loan.status = "written_off"  # the write-off use case comes later in issue 12
    s.flush()
    refused = refuses(
        s,
        lambda: book.apply_for_loan(
            s, deps, guarantor.id, instant.code, 1_000 * KES, 3, "ussd", "guarantor-1"
        ),
        LoanRefused,
    )
    assert refused.reasons[0] == "guaranteed_default"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- concurrency


def test_concurrent_accepts_of_one_guarantee_place_one_hold(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        product = make_product(s, deps)
        borrower = funded_member(s, deps, deposits_cents=10_000 * KES)
        guarantor = funded_member(s, deps, deposits_cents=50_000 * KES)
        application = book.apply_for_loan(
            s, deps, borrower.id, product.code, 30_000 * KES, 6, "ussd", "race-000001"
        )
        g = guarantees.request_guarantee(
            s, deps, application_id=application.id, borrower_id=borrower.id,
            guarantor=guarantor.msisdn, amount_cents=20_000 * KES,
        )  # fmt: skip
        guarantee_id, guarantor_id, code = g.id, guarantor.id, g.code
        msisdn = guarantor.msisdn
    threads_n = 6
    start = threading.Barrier(threads_n)
    statuses: list[str] = []
    errors: list[BaseException] = []

    def accept(n: int) -> None:
        try:
            start.wait()
            with unit_of_work(factory) as s:
                if n % 2:
                    done = guarantees.accept_guarantee(
                        s, deps, guarantee_id=guarantee_id, guarantor_id=guarantor_id
                    )
                else:
                    done = guarantees.accept_by_code(s, deps, msisdn=msisdn, code=code)
                statuses.append(done.status)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=accept, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert statuses == ["accepted"] * threads_n
    with unit_of_work(factory) as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(Hold)
                .where(Hold.idempotency_key == f"guarantee:{guarantee_id}")
            )
            == 1
        )
        assert free_deposits_cents(s, guarantor_id) == 30_000 * KES
        assert s.get(LoanApplication, application.id).status == "pending_approval"  # type: ignore[union-attr]
        assert len(sms(s, borrower, "guarantee_accepted")) == 1
        assert verify_ledger(s).ok


# ------------------------------------------------------------------- property


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    own_kes=st.integers(min_value=1_000, max_value=200_000),
    share=st.floats(min_value=0.1, max_value=3.0),
    splits=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=4),
    cover_percent=st.sampled_from([Decimal("100.00"), Decimal("120.00")]),
)
def test_pledges_and_own_free_deposits_always_cover_an_approved_loan(
    db_session: Session,
    deps: CoreDeps,
    own_kes: int,
    share: float,
    splits: list[int],
    cover_percent: Decimal,
) -> None:
    s = db_session
    product = make_product(s, deps, guarantor_cover_percent=cover_percent, fees=[])
    borrower = funded_member(s, deps, deposits_cents=own_kes * KES)
    amount = max(1_000 * KES, min(int(own_kes * KES * share) // KES * KES, 3 * own_kes * KES))
    application = book.apply_for_loan(
        s, deps, borrower.id, product.code, amount, 12, "ussd", f"prop-{borrower.id:07d}"
    )
    missing = application.guarantor_cover_cents
    total = sum(splits)
    pledges = [missing * part // total for part in splits]
    pledges[-1] += missing - sum(pledges)
    for pledge in (p for p in pledges if p > 0):
        guarantor = funded_member(s, deps, deposits_cents=pledge + 1_000 * KES)
        g = guarantees.request_guarantee(
            s, deps, application_id=application.id, borrower_id=borrower.id,
            guarantor=guarantor.msisdn, amount_cents=pledge,
        )  # fmt: skip
        guarantees.accept_guarantee(s, deps, guarantee_id=g.id, guarantor_id=guarantor.id)
    assert application.status == "pending_approval"
    officer = staff(s, "loan_officer", f"officer.{borrower.id}")
    manager = staff(s, "manager", f"manager.{borrower.id}")
    req = approval_actions.recommend(
        s, deps, officer, application.id, large_threshold_cents=THRESHOLD
    )
    assert approvals.decide(s, deps, manager, req.id, approve=True).status == "approved"
    assert application.status == "disbursed"
    own_free = free_deposits_cents(s, borrower.id)
    pledged = pledged_cents(s, application.id)
    assert own_free + pledged >= amount
    assert own_free + pledged >= application.required_cover_cents
    held = ledger.get_balance(s, member_account_ids(s, borrower.id)[Purpose.DEPOSITS]).held_cents
    assert held == 0  # the borrower's own deposits are counted, never held for their loan


def test_the_member_may_withdraw_an_application_before_approval(
    db_session: Session, deps: CoreDeps, waiting: tuple[LoanApplication, Member]
) -> None:
    s = db_session
    application, borrower = waiting
    guarantor = funded_member(s, deps, deposits_cents=50_000 * KES)
    g = guarantees.request_guarantee(
        s, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=guarantor.msisdn, amount_cents=20_000 * KES,
    )  # fmt: skip
    guarantees.accept_guarantee(s, deps, guarantee_id=g.id, guarantor_id=guarantor.id)
    stranger = funded_member(s, deps)
    with pytest.raises(NotFound):
        book.withdraw_application(s, deps, member_id=stranger.id, application_id=application.id)
    book.withdraw_application(s, deps, member_id=borrower.id, application_id=application.id)
    assert (application.status, g.status) == ("withdrawn", "released")
    assert balances(s, guarantor)["deposits"] == (50_000 * KES, 0)
    assert len(sms(s, guarantor, "guarantee_released")) == 1
    assert book.open_application(s, borrower.id) is None  # the member may apply again
