"""Writing a loan off against its provision (issue 13, part 8;
docs/loans/write-off-and-rescheduling.md).

Maker-checker (``loan.write_off``): a holder of ``loans:write_off`` proposes
(``propose_write_off``), another person holding ``approvals:decide_large`` (a manager)
decides. Only a loan in the **loss** category at its last close of day may be written off
(``check_write_off``; refused ``loan_state`` ``not_loss`` otherwise). On approval, in the
approval's transaction, with the loan's row and then its day-state row locked (the order a
repayment and close of day take them):

* **one entry** (``loan.write_off``): Dr loan-loss provision (1300) with the loan's own
  provision, Cr the loan's account with the principal outstanding (it falls to zero), and
  the difference to provisions expense (5100: Cr when the provision was larger, Dr when it
  fell short); Dr loan interest income (4000) / Cr interest receivable (1200) with the
  interest accrued and not paid (income never received is taken back, not charged to the
  provision, which covers principal only). Penalties are not accrued to a receivable yet
  (close of day, part 4), so there is no penalty leg;
* the loan's day state: provision, exposure 0, recognised interest = interest paid (so
  interest receivable is still Σ recognised − paid, and the provision account Σ per-loan
  provision); the nightly run then skips the loan (it is not active);
* the loan becomes ``written_off``; its guarantors' pledges are released (recovery from
  guarantors is its own action, default recovery), each guarantor told;
* a ``loan_write_offs`` row keeps the figures; later payments are recoveries
  (``core.loans.repayments``: recoveries income, 4300).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.approvals import engine
from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.permissions import Principal, can_access_branch
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans import close_of_day, pledges
from core.loans.errors import LoanStateError
from core.loans.vocabulary import GuaranteeStatus, LoanStatus
from core.members.registration import get_member
from core.risk.vocabulary import LoanCategory
from core.staff import accounts as staff
from db.models import ApprovalRequest
from db.models_close_day import LoanDayState
from db.models_loans import Loan, LoanApplication, LoanInstalment, LoanWriteOff

ACTION = "loan.write_off"
MAKER_PERMISSION = "loans:write_off"
CHECKER_PERMISSION = "approvals:decide_large"  # a manager: the loss is the SACCO's
WRITABLE_CATEGORY = LoanCategory.LOSS


def loan_id_of(p: dict[str, Any]) -> int:
    loan_id = p.get("loan_id")
    if isinstance(loan_id, bool) or not isinstance(loan_id, int):
        raise InvalidInput("loan_id is required", field="loan_id")
    return loan_id


def lock_loan(session: Session, loan_id: int, member_id: int | None = None) -> Loan:
    loan = session.scalar(
        select(Loan).where(Loan.id == loan_id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    if loan is None or (member_id is not None and loan.member_id != member_id):
        raise NotFound("no such loan")
    return loan


def lock_state(session: Session, loan_id: int) -> LoanDayState | None:
    return session.scalars(
        select(LoanDayState).where(LoanDayState.loan_id == loan_id).with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()  # fmt: skip


def principal_outstanding(session: Session, loan: Loan) -> int:
    return ledger.get_balance(session, loan.account_id).balance_cents


def check_write_off(session: Session, loan: Loan, state: LoanDayState | None) -> None:
    """``LoanStateError``: ``not_active`` (closed or written off), ``not_loss`` (not in
    the loss category at its last close of day, or never classified)."""
    if loan.status != LoanStatus.ACTIVE:
        raise LoanStateError(f"this loan is {loan.status}", reason="not_active")
    if state is None or state.category != WRITABLE_CATEGORY:
        category = state.category if state is not None and state.category else "unclassified"
        raise LoanStateError(
            f"only a loan in the loss category may be written off (this one: {category})",
            reason="not_loss",
        )


def _check(session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]) -> int:
    loan = session.get(Loan, loan_id_of(p))
    if loan is None or (member_id is not None and loan.member_id != member_id):
        raise NotFound("no such loan")
    state = session.get(LoanDayState, loan.id)
    check_write_off(session, loan, state)
    return principal_outstanding(session, loan)


def propose_write_off(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    loan_id: int,
    *,
    note: str,
    large_threshold_cents: int,
) -> ApprovalRequest:
    """Ask for ``loan_id`` to be written off: a ``loan.write_off`` request (refusals as
    ``check_write_off``; ``NotFound`` outside the actor's branch)."""
    return ask_about_loan(
        session, deps, actor, ACTION, loan_id, {}, note=note, what="write off",
        large_threshold_cents=large_threshold_cents,
    )  # fmt: skip


def ask_about_loan(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    action: str,
    loan_id: int,
    payload: dict[str, Any],
    *,
    note: str,
    what: str,
    large_threshold_cents: int,
) -> ApprovalRequest:
    """A request for ``action`` on a loan the actor may see (``NotFound`` otherwise), its
    payload the loan's id and ``payload``; the note by default "<what> loan <reference>"."""
    loan = session.get(Loan, loan_id)
    if loan is None or not can_access_branch(actor, get_member(session, loan.member_id).branch):
        raise NotFound("no such loan")
    return engine.request_approval(
        session, deps, actor, action, payload={"loan_id": loan.id, **payload},
        member_id=loan.member_id, note=note or f"{what} loan {loan.reference}",
        large_threshold_cents=large_threshold_cents,
    )  # fmt: skip


def _execute(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    checker = staff.checker_of(session, req)
    loan = lock_loan(session, loan_id_of(p), req.member_id)
    state = lock_state(session, loan.id)
    check_write_off(session, loan, state)
    assert state is not None
    now = deps.now()
    today = business_date(now)
    principal = principal_outstanding(session, loan)
    paid_interest = int(
        session.scalar(
            select(func.coalesce(func.sum(LoanInstalment.paid_interest_cents), 0)).where(
                LoanInstalment.loan_id == loan.id
            )
        )
    )
    interest = max(state.accrued_interest_cents - paid_interest, 0)
    # Penalties charged and not paid leave the books with the loan: penalty income back,
    # penalty receivable cleared, the loan's penalty waived (a recovery pays principal and
    # interest; docs/loans/write-off-and-rescheduling.md).
    penalty = max(close_of_day.penalty_owed_cents(session, loan.id), 0)
    provision = state.provision_cents
    account = ledger.account_id_by_code
    legs = [ledger.Leg(loan.account_id, -principal)]
    if provision:
        legs.append(ledger.Leg(account(session, SystemAccount.LOAN_LOSS_PROVISION), provision))
    if provision != principal:  # the provision's excess back, or its shortfall expensed
        legs.append(ledger.Leg(account(session, SystemAccount.PROVISIONS_EXPENSE),
                               principal - provision))  # fmt: skip
    if interest:
        legs += [
            ledger.Leg(account(session, SystemAccount.LOAN_INTEREST_INCOME), interest),
            ledger.Leg(account(session, SystemAccount.INTEREST_RECEIVABLE), -interest),
        ]
    if penalty:
        legs += [
            ledger.Leg(account(session, SystemAccount.PENALTY_INCOME), penalty),
            ledger.Leg(account(session, SystemAccount.PENALTY_RECEIVABLE), -penalty),
        ]
    legs = [leg for leg in legs if leg.amount_cents]
    if not legs:
        raise LoanStateError("nothing is outstanding on this loan", reason="nothing_owed")
    posted = ledger.post_entry(
        session, kind=EntryKind.LOAN_WRITE_OFF, legs=legs,
        idempotency_key=f"loan:{loan.id}:write_off", now=now, value_date=today,
        memo=f"Loan {loan.reference} written off (approval {req.id})",
    )  # fmt: skip
    state.provision_cents = 0
    state.exposure_cents = 0
    state.accrued_interest_cents = paid_interest
    state.penalty_waived_cents += penalty
    loan.status = LoanStatus.WRITTEN_OFF
    loan.closed_at = now
    row = LoanWriteOff(
        loan_id=loan.id, approval_id=req.id, principal_cents=principal, interest_cents=interest,
        provision_cents=provision, category=state.category or "", entry_id=posted.entry_id,
        written_off_on=today, recovered_cents=0, created_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    released = _release_pledges(session, deps, loan)
    result = {
        "loan": loan.reference, "principal_cents": principal, "interest_cents": interest,
        "provision_cents": provision, "penalty_cents": penalty, "entry": posted.reference,
        "pledges_released": released,
    }  # fmt: skip
    audit.record(
        session, checker, "loan.write_off", target_type="loan", target_id=loan.id,
        before={"status": LoanStatus.ACTIVE}, after={"status": loan.status, **result}, now=now,
    )  # fmt: skip
    return result


def _release_pledges(session: Session, deps: CoreDeps, loan: Loan) -> int:
    """Every accepted pledge on the loan given back, each guarantor told; how many."""
    guarantees = pledges.loan_guarantees(session, loan.id)
    if not guarantees:
        return 0
    application = session.get_one(LoanApplication, loan.application_id)
    for guarantee in guarantees:
        pledges.release(session, guarantee, status=GuaranteeStatus.RELEASED, now=deps.now())
        session.flush()
        pledges.tell_pledge_released(session, deps, guarantee, application)
    session.flush()
    return len(guarantees)


def write_off_of(session: Session, loan_id: int) -> LoanWriteOff | None:
    return session.scalar(select(LoanWriteOff).where(LoanWriteOff.loan_id == loan_id))


def register_actions() -> None:
    engine.register(
        ACTION,
        engine.ActionSpec(
            MAKER_PERMISSION,
            "write off a loan",
            True,
            _check,
            _execute,
            checker_permission=CHECKER_PERMISSION,
        ),
    )
