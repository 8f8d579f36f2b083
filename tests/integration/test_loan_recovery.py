"""Default recovery on real PostgreSQL (core.loans.recovery; docs/loans/recovery.md): the
borrower's free deposits first, then the guarantors' pledges pro rata to what each pledged
(cents exact, never more than a pledge), the loan closed and the pledges left released when
it is all recovered, maker ≠ checker, refusals that write nothing, approving twice or by two
checkers at once recovers once, and a guarantor of a defaulted loan may not borrow."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from uuid import uuid4

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.statements import StatementLabel, recent_movements
from core.ledger.verify import verify_ledger
from core.ledger.vocabulary import EntryKind
from core.loans import book, recovery
from core.loans.errors import LoanRefused, LoanStateError
from core.loans.repayments import Repayment, repay_loan
from core.loans.vocabulary import RepaymentSource
from core.members.registration import member_account_ids
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import (
    ApprovalRequest,
    AuditEvent,
    JournalEntry,
    Member,
    OutboxMessage,
    StaffUser,
    WebhookEndpoint,
)
from db.models_loans import Loan, LoanGuarantee, LoanInstalment, LoanRepayment
from db.models_recovery import LoanRecovery, LoanRecoveryShare
from db.session import make_session_factory, unit_of_work
from tests.loanutil import make_product
from tests.recoveryutil import KES, Defaulted, defaulted_loan

START = date(2026, 1, 10)
THRESHOLD = 1_000_000 * KES  # the manager threshold
PLEDGES = [10_000 * KES, 20_000 * KES, 30_000 * KES]  # cover 60,000 of a 100,000 loan


def staff(s: Session, role: str) -> Principal:
    name = f"{role}.{uuid4().hex[:6]}"
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def deposits(s: Session, member: Member) -> tuple[int, int]:
    """(balance, held) of the member's deposits account."""
    b = ledger.get_balance(s, member_account_ids(s, member.id)[Purpose.DEPOSITS])
    return b.balance_cents, b.held_cents


def savings(s: Session, member: Member) -> int:
    return ledger.get_balance(s, member_account_ids(s, member.id)[Purpose.SAVINGS]).balance_cents


def system(s: Session, code: SystemAccount) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def sms(s: Session, member: Member, template: str) -> list[str]:
    return list(
        s.scalars(
            select(OutboxMessage.body).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == template
            )
        )
    )


def add_deposits(s: Session, deps: CoreDeps, member: Member, cents: int) -> None:
    key = f"extra:{member.id}:{uuid4().hex[:8]}"
    credit_member(s, deps, Credit(member.id, "deposits", cents, CreditSource.CASH, key, key))


def book_a_default(
    s: Session, factory: sessionmaker[Session], deps: CoreDeps, **kw: object
) -> Defaulted:
    args: dict[str, object] = {
        "start": START, "amount_cents": 100_000 * KES, "deposits_cents": 40_000 * KES,
        "pledges": PLEDGES, **kw,
    }  # fmt: skip
    return defaulted_loan(s, factory, deps, **args)  # type: ignore[arg-type]


def approve(s: Session, d: Defaulted) -> tuple[ApprovalRequest, Principal, Principal]:
    officer, manager = staff(s, "loan_officer"), staff(s, "manager")
    req = recovery.propose(s, d.deps, officer, d.loan.id, large_threshold_cents=THRESHOLD)
    done = approvals.decide(s, d.deps, manager, req.id, approve=True, note="recover")
    assert done.status == "approved", done.result
    s.expire_all()
    return done, officer, manager


def footprint(s: Session) -> tuple[int, ...]:
    return tuple(
        s.scalar(select(func.count()).select_from(m)) or 0
        for m in (JournalEntry, LoanRepayment, LoanRecovery, OutboxMessage, ApprovalRequest)
    )


# ------------------------------------------------------------------ the steps


def test_deposits_first_then_every_pledge_when_they_do_not_cover_the_loan(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps)
    loan, borrower = d.loan, d.borrower
    state = recovery.defaulted(s, loan)
    assert (state.category, state.days_past_due) == ("doubtful", 191)
    before = {g.id: deposits(s, g) for g in d.guarantors}
    savings_before = savings(s, borrower)
    preview = recovery.plan(s, d.deps, loan.id)
    payoff = 101_000 * KES  # one instalment: the principal and a month's interest at 1 %
    assert preview.payoff_cents == payoff
    assert (preview.from_deposits_cents, preview.from_guarantors_cents) == (
        40_000 * KES, 60_000 * KES,
    )  # fmt: skip
    assert preview.balance_after_cents == 1_000 * KES and not preview.closes
    assert [g.share_cents for g in preview.guarantors] == PLEDGES  # each pledge in full

    done, _, manager = approve(s, d)
    # Deposits first: all the borrower's free deposits; savings are never touched.
    assert deposits(s, borrower) == (0, 0)
    assert savings(s, borrower) == savings_before
    for g, pledge in zip(d.guarantors, PLEDGES, strict=True):
        assert deposits(s, g) == (before[g.id][0] - pledge, 0)  # the pledge taken, no hold left
        assert sms(s, g, "loan_recovered_guarantor")
    statuses = s.scalars(select(LoanGuarantee.status).where(LoanGuarantee.loan_id == loan.id))
    assert set(statuses) == {"called"}
    loan = s.get_one(Loan, loan.id)
    assert loan.status == "active"  # 1,000 still owed: written off later, or repaid
    # Interest first (the allocation order): what is left is 1,000 of principal.
    assert ledger.get_balance(s, loan.account_id).balance_cents == 1_000 * KES
    # The ledger shows each step: one entry from deposits, one from each pledge.
    kinds = s.execute(
        select(JournalEntry.kind, func.count())
        .where(JournalEntry.idempotency_key.like(f"loan.recovery:{done.id}:%"))
        .group_by(JournalEntry.kind)
    ).all()  # fmt: skip
    assert sorted(tuple(r) for r in kinds) == [
        ("loan.recovery_deposits", 1), ("loan.recovery_pledge", 3),
    ]  # fmt: skip
    rows = s.scalars(select(LoanRepayment).where(LoanRepayment.loan_id == loan.id)
                     .order_by(LoanRepayment.id)).all()  # fmt: skip
    assert [(r.source, r.amount_cents) for r in rows] == [
        ("recovery", 40_000 * KES),
        *[("recovery", p) for p in PLEDGES],
    ]
    assert rows[0].interest_cents == 1_000 * KES  # accrued interest settled first
    assert rows[-1].balance_after_cents == 1_000 * KES
    [told] = sms(s, borrower, "loan_recovered")
    assert "40,000" in told and "60,000" in told and "1,000" in told
    assert StatementLabel.RECOVERY in {m.label for m in recent_movements(s, borrower.id)}
    [audited] = s.scalars(select(AuditEvent).where(AuditEvent.action == "loan.recovery"))
    assert audited.actor_id == manager.id
    assert verify_ledger(s).ok


def test_all_recovered_closes_the_loan_pro_rata_to_the_cent(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    pledges = [10_000 * KES + 1, 20_000 * KES, 30_000 * KES - 1]
    d = book_a_default(s, session_factory, deps, pledges=pledges)
    add_deposits(s, d.deps, d.borrower, 10_000 * KES + 1)  # the borrower saved a little since
    s.add(
        WebhookEndpoint(
            name="Partner", url="https://partner.example/hook", secret="whsec_test_partner",
            events="loan.repaid", active=True, created_at=d.deps.now(),
        )
    )  # fmt: skip
    before = {g.id: deposits(s, g) for g in d.guarantors}
    receivable = system(s, SystemAccount.INTEREST_RECEIVABLE)
    assert receivable == 1_000 * KES  # close of day accrued the month's interest
    done, _, _ = approve(s, d)
    rest = 101_000 * KES - (50_000 * KES + 1)
    [record] = s.scalars(select(LoanRecovery).where(LoanRecovery.approval_id == done.id))
    assert (record.from_deposits_cents, record.from_guarantors_cents) == (50_000 * KES + 1, rest)
    assert record.closed_loan and record.balance_after_cents == 0
    shares = {r.guarantee_id: r for r in s.scalars(select(LoanRecoveryShare))}
    taken = [before[g.id][0] - deposits(s, g)[0] for g in d.guarantors]
    assert sum(taken) == rest  # every cent, no more
    assert taken == recovery.split_pro_rata(rest, pledges, pledges)
    for cents, pledge in zip(taken, pledges, strict=True):
        assert 0 < cents <= pledge
        assert abs(Decimal(cents) - Decimal(rest) * pledge / sum(pledges)) < 1
    assert sorted(r.share_cents for r in shares.values()) == sorted(taken)
    assert all(deposits(s, g)[1] == 0 for g in d.guarantors)  # the rest of each hold released
    loan = s.get_one(Loan, d.loan.id)
    assert loan.status == "closed"
    instalments = s.scalars(select(LoanInstalment).where(LoanInstalment.loan_id == loan.id))
    assert all(i.paid_cents == i.due_cents for i in instalments)
    assert system(s, SystemAccount.INTEREST_RECEIVABLE) == 0
    events = s.scalars(select(OutboxMessage.body).where(OutboxMessage.channel == "webhook")).all()
    assert len(events) == 4 and all('"source":"recovery"' in e for e in events)
    assert sum('"closed":true' in e for e in events) == 1  # the last step closed the loan
    assert verify_ledger(s).ok


def test_own_deposits_enough_close_the_loan_and_release_every_pledge(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps, amount_cents=30_000 * KES,
                       deposits_cents=20_000 * KES, pledges=[10_000 * KES])  # fmt: skip
    add_deposits(s, d.deps, d.borrower, 20_000 * KES)
    [g] = d.guarantors
    before = deposits(s, g)
    assert before[1] == 10_000 * KES
    done, _, _ = approve(s, d)
    assert deposits(s, d.borrower) == (40_000 * KES - 30_300 * KES, 0)
    assert deposits(s, g) == (before[0], 0)  # nothing taken, the pledge free again
    assert s.scalar(select(LoanGuarantee.status).where(LoanGuarantee.guarantor_id == g.id)) == (
        "released"
    )
    assert sms(s, g, "guarantee_released") and not sms(s, g, "loan_recovered_guarantor")
    assert s.get_one(Loan, d.loan.id).status == "closed"
    assert verify_ledger(s).ok


def test_a_pledge_partly_released_gives_no_more_than_it_still_holds(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """Half the principal repaid releases half of each pledge (pro_rata): recovery takes at
    most what is still held, never the pledge as first made."""
    s = db_session
    d = book_a_default(s, session_factory, deps, days=200)
    repay_loan(
        s, d.deps,
        Repayment(amount_cents=51_000 * KES, source=RepaymentSource.CASH,
                  idempotency_key=f"half-{uuid4().hex[:8]}", business_key=f"half-{uuid4().hex[:8]}",
                  loan_id=d.loan.id),
    )  # fmt: skip
    held = [deposits(s, g)[1] for g in d.guarantors]
    assert held == [p // 2 for p in PLEDGES]
    preview = recovery.plan(s, d.deps, d.loan.id)
    assert [g.held_cents for g in preview.guarantors] == held
    approve(s, d)
    taken = s.scalars(select(LoanRecoveryShare.share_cents).order_by(LoanRecoveryShare.id)).all()
    assert sum(taken) == 50_000 * KES - 40_000 * KES
    assert all(t <= h for t, h in zip(taken, held, strict=True))
    assert s.get_one(Loan, d.loan.id).status == "closed"
    assert verify_ledger(s).ok


def test_a_guarantors_share_as_a_recovery_loan_leaves_their_deposits(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps)
    product = make_product(
        s, d.deps, code=f"R{uuid4().hex[:5].upper()}", guarantor_policy="none",
        guarantor_cover_percent=None, auto_approve_ceiling_cents=0, fees=[], channels="staff",
        rounding="cent",
    )  # fmt: skip
    gids = s.scalars(select(LoanGuarantee.id).where(LoanGuarantee.loan_id == d.loan.id)
                     .order_by(LoanGuarantee.id)).all()  # fmt: skip
    officer, manager = staff(s, "loan_officer"), staff(s, "manager")
    before = {g.id: (deposits(s, g), savings(s, g)) for g in d.guarantors}
    for bad, field in (
        ({"as_loan": [gids[2]], "recovery_product": product.code, "recovery_term": 99}, "term"),
        ({"as_loan": [10**9], "recovery_product": product.code, "recovery_term": 6}, "as_loan"),
        ({"as_loan": [gids[2]], "recovery_term": 6}, "recovery_product"),
        ({"recovery_product": product.code}, "as_loan"),
    ):
        with pytest.raises(InvalidInput) as refused:
            recovery.propose(s, d.deps, officer, d.loan.id, large_threshold_cents=THRESHOLD,
                             **bad)  # fmt: skip
        assert refused.value.field == field
    req = recovery.propose(
        s, d.deps, officer, d.loan.id, large_threshold_cents=THRESHOLD, as_loan=[gids[2]],
        recovery_product=product.code, recovery_term=6,
    )  # fmt: skip
    done = approvals.decide(s, d.deps, manager, req.id, approve=True)
    assert done.status == "approved", done.result
    s.expire_all()
    third = d.guarantors[2]
    # Their deposits are untouched and free; their savings got the loan and passed it on.
    assert deposits(s, third) == (before[third.id][0][0], 0)
    assert savings(s, third) == before[third.id][1]
    [share] = s.scalars(select(LoanRecoveryShare).where(LoanRecoveryShare.guarantee_id == gids[2]))
    assert share.share_cents == PLEDGES[2] and share.recovery_loan_id is not None
    new = s.get_one(Loan, share.recovery_loan_id)
    assert (new.member_id, new.principal_cents, new.term, new.status) == (
        third.id, PLEDGES[2], 6, "active",
    )  # fmt: skip
    assert ledger.get_balance(s, new.account_id).balance_cents == PLEDGES[2]
    kinds = s.scalars(select(JournalEntry.kind).where(JournalEntry.id == share.entry_id)).all()
    assert kinds == ["loan.recovery_loan"]
    [told] = sms(s, third, "loan_recovered_as_loan")
    assert new.reference in told and not sms(s, third, "loan_recovered_guarantor")
    assert not sms(s, third, "loan_disbursed")
    # The other two paid from their deposits, as before.
    for g, pledge in zip(d.guarantors[:2], PLEDGES[:2], strict=True):
        assert deposits(s, g) == (before[g.id][0][0] - pledge, 0)
    assert ledger.get_balance(s, d.loan.account_id).balance_cents == 1_000 * KES
    assert verify_ledger(s).ok


def test_a_recovery_product_that_deducts_fees_is_refused(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps)
    product = make_product(s, d.deps, guarantor_policy="none", guarantor_cover_percent=None)
    gid = s.scalars(select(LoanGuarantee.id).where(LoanGuarantee.loan_id == d.loan.id)).first() or 0
    seen = footprint(s)
    with pytest.raises(LoanStateError) as refused:
        recovery.propose(
            s, d.deps, staff(s, "loan_officer"), d.loan.id, large_threshold_cents=THRESHOLD,
            as_loan=[gid], recovery_product=product.code, recovery_term=6,
        )  # fmt: skip
    assert refused.value.reason == "recovery_product_fees"
    assert footprint(s) == seen


# ------------------------------------------------------------------ the rule of issue 12


def test_a_guarantor_may_not_borrow_while_the_loan_is_defaulted_and_may_once_called(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps)
    instant = make_product(
        s, d.deps, guarantor_policy="none", guarantor_cover_percent=None,
        auto_approve_ceiling_cents=100_000 * KES, fees=[],
    )  # fmt: skip
    g = d.guarantors[2]
    with pytest.raises(LoanRefused) as refused:
        book.apply_for_loan(s, d.deps, g.id, instant.code, 1_000 * KES, 3, "ussd", "g-borrow-1")
    assert refused.value.reasons[0] == "guaranteed_default"
    approve(s, d)
    application = book.apply_for_loan(
        s, d.deps, g.id, instant.code, 1_000 * KES, 3, "ussd", "g-borrow-2"
    )
    assert application.status == "disbursed"


# ------------------------------------------------------------------ who may, and bad input


def test_maker_is_not_checker_and_refusals_write_nothing(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps)
    healthy = book_a_default(s, session_factory, deps, days=30)  # watch, not defaulted
    officer, teller = staff(s, "loan_officer"), staff(s, "teller")
    seen = footprint(s)
    with pytest.raises(approvals.NotAChecker):
        recovery.propose(s, d.deps, teller, d.loan.id, large_threshold_cents=THRESHOLD)
    with pytest.raises(LoanStateError) as state:
        recovery.propose(s, d.deps, officer, healthy.loan.id, large_threshold_cents=THRESHOLD)
    assert state.value.reason == "not_defaulted"
    with pytest.raises(NotFound):
        recovery.propose(s, d.deps, officer, 10**9, large_threshold_cents=THRESHOLD)
    for bad in (None, "1", True, 1.5):
        with pytest.raises(InvalidInput):
            recovery.plan(s, d.deps, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        approvals.request_approval(
            s, d.deps, officer, recovery.ACTION, payload={"loan_id": d.loan.id, "as_loan": 1},
            member_id=d.borrower.id, large_threshold_cents=THRESHOLD,
        )  # fmt: skip
    assert footprint(s) == seen
    req = recovery.propose(s, d.deps, officer, d.loan.id, large_threshold_cents=THRESHOLD)
    assert req.payload and '"from_deposits_cents":4000000' in req.payload  # the preview
    with pytest.raises(DomainError) as twice:
        recovery.propose(s, d.deps, officer, d.loan.id, large_threshold_cents=THRESHOLD)
    assert twice.value.context["reason"] == "duplicate"
    with pytest.raises(approvals.SelfApproval):
        approvals.decide(s, d.deps, officer, req.id, approve=True)
    with pytest.raises(approvals.NotAChecker):
        approvals.decide(s, d.deps, teller, req.id, approve=True)
    assert s.get_one(Loan, d.loan.id).status == "active" and deposits(s, d.borrower)[0] > 0


def test_a_loan_no_longer_defaulted_when_approved_fails_the_request_and_moves_nothing(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps)
    officer, manager = staff(s, "loan_officer"), staff(s, "manager")
    req = recovery.propose(s, d.deps, officer, d.loan.id, large_threshold_cents=THRESHOLD)
    repay_loan(
        s, d.deps,
        Repayment(amount_cents=101_000 * KES, source=RepaymentSource.CASH,
                  idempotency_key="paid-in-time", business_key="paid-in-time", loan_id=d.loan.id),
    )  # fmt: skip
    seen = footprint(s)
    done = approvals.decide(s, d.deps, manager, req.id, approve=True)
    assert done.status == "failed" and "loan_state" in (done.result or "")
    assert footprint(s) == seen


def test_approving_twice_recovers_once(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    d = book_a_default(s, session_factory, deps)
    done, _, manager = approve(s, d)
    seen = footprint(s)
    with pytest.raises(approvals.AlreadyDecided):
        approvals.decide(s, d.deps, staff(s, "manager"), done.id, approve=True)
    again = recovery.recover(s, d.deps, manager, d.loan.id, approval_id=done.id)
    assert not again.created and again.from_guarantors_cents == 60_000 * KES
    assert footprint(s) == seen


def test_two_checkers_at_once_recover_once(committed_pg: Engine, deps: CoreDeps) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        d = book_a_default(s, factory, deps, commit=True)
        officer = staff(s, "loan_officer")
        checkers = [staff(s, "manager"), staff(s, "manager"), staff(s, "loan_officer")]
        req = recovery.propose(s, d.deps, officer, d.loan.id, large_threshold_cents=THRESHOLD)
        request_id, loan_id, when = req.id, d.loan.id, d.deps
    barrier = threading.Barrier(len(checkers))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def decide(checker: Principal) -> None:
        try:
            barrier.wait()
            with unit_of_work(factory) as s:
                outcomes.append(approvals.decide(s, when, checker, request_id, approve=True).status)
        except approvals.AlreadyDecided:
            outcomes.append("already")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(c,)) for c in checkers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(outcomes) == ["already", "already", "approved"]
    with unit_of_work(factory) as s:
        assert s.scalar(select(func.count()).select_from(LoanRecovery)) == 1
        entries = s.scalar(
            select(func.count()).select_from(JournalEntry).where(
                JournalEntry.kind.in_([EntryKind.LOAN_RECOVERY_DEPOSITS,
                                       EntryKind.LOAN_RECOVERY_PLEDGE])
            )
        )  # fmt: skip
        assert entries == 4
        assert s.get_one(Loan, loan_id).status == "active"
        assert verify_ledger(s).ok
