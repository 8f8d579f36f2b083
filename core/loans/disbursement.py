"""Approval and disbursement to the member's savings (issue 12, parts 6 and 7).

``approve_application`` appraises the application again (the member's facts may have
changed since they applied) and checks its security is still complete, then marks it
approved. ``disburse_to_savings`` makes the loan, in the same transaction:

* the loan's own ledger account (``core.ledger.chart.loan_account_code``, purpose ``loan``,
  an asset that never goes below zero);
* one balanced entry (``EntryKind.LOAN_DISBURSEMENT``, keyed ``loan.disbursement:<id>``):
  the loan account debited with the principal, the member's savings credited with the
  principal less the fees deducted at disbursement, fee income credited with those fees;
* the schedule, fixed from the disbursement's business date (``loan_instalments``);
* the accepted guarantees attached to the loan (their holds stay), requests never
  answered closed;
* an SMS: amount, what reached savings, the first instalment and its date.

Disbursement to the member's savings is a loan's own entry, not a deposit: the member
reads "Loan" on the statement and ``loan_disbursed``, not a deposit receipt, so it does not
go through ``core.savings.accounts.credit_member`` (the one path for money coming *in*).

``disburse`` pays an approved application out where it asked (``disburse_to``): to
savings as above, or by M-Pesa: the same loan entry to savings, then, in the same
transaction, a B2C payout of what reached savings (whole shillings) through a
``LoanPayout`` the edge passes in (``core.payments.mpesa.loan_payouts``: a hold on savings,
the payout row, the send job deferred on the unit of work, the SIM-swap guard). The
payout's checks run before anything is written; without a payout port (M-Pesa not
configured at that edge) an M-Pesa application is refused (``mpesa_unavailable``).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import (
    AccountType,
    Purpose,
    SystemAccount,
    loan_account_code,
    loan_account_name,
)
from core.ledger.vocabulary import EntryKind
from core.loans import top_ups
from core.loans.errors import LoanRefused, LoanStateError
from core.loans.facts import member_facts
from core.loans.pledges import cover, lock_guarantees, release
from core.loans.references import REFERENCE_ALPHABET
from core.loans.schedule import Schedule, build_schedule
from core.loans.terms import version_terms
from core.loans.vocabulary import ApplicationStatus, DisburseTo, GuaranteeStatus, LoanStatus
from core.members.registration import get_member, member_account_ids
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from core.scoring.scores import appraise_member
from db.models import Member
from db.models_loans import Loan, LoanApplication, LoanInstalment


def new_application_reference() -> str:
    """``L`` + 7 base32 characters: short enough to read out on a phone."""
    return "L" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(7))


def lock_application(
    session: Session, application_id: int, *, locked: bool = False
) -> LoanApplication:
    """The application's row, locked for this unit of work. ``locked``: the caller already
    holds it (locked, or inserted, earlier in this unit of work, so no other transaction
    can change it): the session's copy is current and no statement is sent."""
    if locked:
        return session.get_one(LoanApplication, application_id)
    application = session.scalar(
        select(LoanApplication)
        .where(LoanApplication.id == application_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if application is None:
        raise NotFound("no such loan application")
    return application


def check_approvable(session: Session, deps: CoreDeps, application: LoanApplication) -> None:
    """Refuse (``LoanRefused`` with the reasons, ``LoanStateError`` ``cover_incomplete``)
    unless the application may be approved now; records the reasons found."""
    if application.status != ApplicationStatus.PENDING_APPROVAL:
        raise LoanStateError(
            f"the application is {application.status}", reason="not_pending_approval"
        )
    terms = version_terms(session, application.product_version_id)
    member = get_member(session, application.member_id)
    old = _loan_to_clear(session, application)
    gathered = member_facts(session, member, business_date(deps.now()))
    facts = top_ups.facts_without(session, gathered, old)
    found = appraise_member(session, deps, terms, member.id, facts, application.amount_cents)
    if not found.ok:
        raise LoanRefused.of(found, terms.min_score)
    if not cover(session, application, free_cents=gathered.free_deposits_cents).complete:
        raise LoanStateError(
            "own free deposits and pledges no longer cover the loan", reason="cover_incomplete"
        )
    if old is not None and old.status != LoanStatus.CLOSED:  # closed meanwhile: nothing to clear
        top_ups.check_may_top_up(session, terms, old)
        top_ups.check_receives(
            application.amount_cents,
            terms.fee_cents(application.amount_cents, application.term)[0],
            top_ups.clearing(session, deps, terms, old, application.term),
        )


def _loan_to_clear(session: Session, application: LoanApplication) -> Loan | None:
    if application.top_up_of_loan_id is None:
        return None
    return session.get_one(Loan, application.top_up_of_loan_id)


def approve_application(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    application_id: int,
    *,
    approval_id: int | None = None,
    note: str = "",
    checked: bool = False,
    locked: bool = False,
) -> LoanApplication:
    """Approve a covered application whose appraisal still passes (see the module).
    ``checked``: the caller has just run ``check_approvable`` on it in this unit of work,
    under the member's lock (the auto-approval), so it is not run twice. ``locked``: the
    caller holds the application's row (``lock_application``)."""
    application = lock_application(session, application_id, locked=locked)
    if not checked:
        check_approvable(session, deps, application)
    now = deps.now()
    application.status = ApplicationStatus.APPROVED
    application.approval_id = approval_id or application.approval_id
    application.decision_note = " ".join(note.split())[:200]
    application.decided_at = application.updated_at = now
    session.flush()
    audit.record(
        session, actor, "loan.approve", target_type="loan_application",
        target_id=application.id,
        after={"reference": application.reference, "amount_cents": application.amount_cents,
               "approval_id": approval_id},
        now=now,
    )  # fmt: skip
    return application


class LoanPayout(Protocol):
    """Sends a disbursed loan's money on from the member's savings to their phone. The
    loans domain may not import payments, so an edge that has M-Pesa passes one in
    (``core.payments.mpesa.loan_payouts.prepare_loan_payout``), made for one member."""

    @property
    def member_id(self) -> int: ...

    def check(self, session: Session, deps: CoreDeps, net_cents: int) -> int:
        """Refuse (a ``DomainError``) before anything is written, or return the amount to
        send for ``net_cents`` reaching savings."""
        ...

    def pay(self, session: Session, deps: CoreDeps, loan: Loan, amount_cents: int) -> str:
        """Hold ``amount_cents`` on savings and record the payout; its reference."""
        ...


def check_payout(
    session: Session, deps: CoreDeps, application: LoanApplication, payout: LoanPayout | None
) -> int:
    """What an M-Pesa disbursement of ``application`` would send now, or the refusal:
    ``LoanStateError`` ``mpesa_unavailable`` without a payout port for its member, and
    whatever the port refuses (limits, the SIM-swap guard). Writes nothing."""
    if payout is None or payout.member_id != application.member_id:
        raise LoanStateError(
            "M-Pesa payouts are not available here: disburse to savings or approve where "
            "M-Pesa is configured",
            reason="mpesa_unavailable",
        )
    terms = version_terms(session, application.product_version_id)
    schedule = build_schedule(
        terms.schedule_terms(application.amount_cents, application.term, business_date(deps.now()))
    )
    return payout.check(session, deps, schedule.disbursed_cents)


def disburse(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    application_id: int,
    *,
    payout: LoanPayout | None = None,
    locked: bool = False,
) -> Loan:
    """Pay an approved application out where it asked (``disburse_to``; see the module). A
    second call for a disbursed application returns its loan and writes nothing.
    ``locked``: the caller holds the application's row (``lock_application``)."""
    application = lock_application(session, application_id, locked=locked)
    if (
        application.disburse_to != DisburseTo.MPESA
        or application.status != ApplicationStatus.APPROVED
    ):
        return disburse_to_savings(session, deps, actor, application.id, locked=True)
    amount = check_payout(session, deps, application, payout)
    assert payout is not None
    loan = disburse_to_savings(
        session, deps, actor, application.id, mpesa_cents=amount, locked=True
    )
    payout.pay(session, deps, loan, amount)
    return loan


def disburse_to_savings(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    application_id: int,
    *,
    mpesa_cents: int | None = None,
    tell: bool = True,
    locked: bool = False,
) -> Loan:
    """Pay an approved application out to the member's savings (see the module). A second
    call for a disbursed application returns its loan and writes nothing. ``mpesa_cents``:
    the caller sends that much on by M-Pesa (``disburse``), which the SMS says. ``tell``
    False: the caller texts the member itself (a recovery loan, ``core.loans.recovery``,
    whose money goes straight on to the loan it recovers). ``locked``: the caller holds
    the application's row (``lock_application``)."""
    application = lock_application(session, application_id, locked=locked)
    if application.status == ApplicationStatus.DISBURSED:
        return session.scalars(select(Loan).where(Loan.application_id == application.id)).one()
    if application.status != ApplicationStatus.APPROVED:
        raise LoanStateError(f"the application is {application.status}", reason="not_approved")
    member = get_member(session, application.member_id)
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    assert member.member_number is not None
    now = deps.now()
    disbursed_on = business_date(now)
    terms = version_terms(session, application.product_version_id)
    schedule = build_schedule(
        terms.schedule_terms(application.amount_cents, application.term, disbursed_on)
    )
    settlement = None  # a top-up: the loan it clears, split as a repayment (before any write)
    if application.top_up_of_loan_id is not None:
        settlement = top_ups.settle(
            session, deps, application, terms, schedule.terms.deducted_fee_cents
        )
    account = ledger.create_account(
        session,
        code=loan_account_code(member.member_number, application.reference),
        name=loan_account_name(member.member_number, application.reference),
        type_=AccountType.ASSET,
        purpose=Purpose.LOAN,
        no_overdraft=True,
        member_id=member.id,
        now=now,
    )
    posted = _post_disbursement(
        session, application, schedule, account.id, now=now, settlement=settlement
    )
    cleared = settlement.clearing if settlement else None
    loan = Loan(
        reference=application.reference,
        application_id=application.id,
        member_id=member.id,
        product_version_id=application.product_version_id,
        principal_cents=application.amount_cents,
        term=application.term,
        account_id=account.id,
        disbursement_entry_id=posted.entry_id,
        deducted_fee_cents=schedule.terms.deducted_fee_cents,
        disbursed_on=disbursed_on,
        status=LoanStatus.ACTIVE,
        created_at=now,
        top_up_of_loan_id=cleared.loan_id if cleared else None,
        top_up_payoff_cents=cleared.payoff_cents if cleared else 0,
        top_up_commission_cents=cleared.commission_cents if cleared else 0,
    )
    session.add(loan)
    session.flush()
    session.add_all(
        LoanInstalment(
            loan_id=loan.id,
            number=row.number,
            due_on=row.due_on,
            principal_cents=row.principal_cents,
            interest_cents=row.interest_cents,
            fee_cents=row.fee_cents,
            paid_principal_cents=0,
            paid_interest_cents=0,
            paid_fee_cents=0,
        )
        for row in schedule.instalments
    )
    for guarantee in lock_guarantees(session, application.id):
        if guarantee.status == GuaranteeStatus.ACCEPTED:
            guarantee.loan_id = loan.id
        elif guarantee.status == GuaranteeStatus.REQUESTED:
            release(session, guarantee, status=GuaranteeStatus.WITHDRAWN, now=now)
    application.status = ApplicationStatus.DISBURSED
    application.updated_at = now
    session.flush()
    if settlement is not None:
        top_ups.record(session, deps, settlement, application, entry_id=posted.entry_id)
    if tell:
        _tell_disbursed(session, deps, member, application, schedule, mpesa_cents, cleared)
    audit.record(
        session, actor, "loan.disburse", target_type="loan", target_id=loan.id,
        after={"reference": loan.reference, "principal_cents": loan.principal_cents,
               "fees_deducted_cents": loan.deducted_fee_cents, "entry": posted.reference,
               "to": DisburseTo.SAVINGS if mpesa_cents is None else DisburseTo.MPESA,
               **({"top_up_of": cleared.reference, "payoff_cents": cleared.payoff_cents,
                   "commission_cents": cleared.commission_cents} if cleared else {})},
        now=now,
    )  # fmt: skip
    return loan


def _post_disbursement(
    session: Session,
    application: LoanApplication,
    schedule: Schedule,
    loan_account_id: int,
    *,
    now: datetime,
    settlement: top_ups.Settlement | None = None,
) -> ledger.PostedEntry:
    """The loan's one entry. A top-up's (``settlement``) also credits the old loan's
    account and the income its payoff pays, as a repayment would, and fee income with the
    commission; savings get what is left (legs on one account are added together)."""
    principal = application.amount_cents
    fees = schedule.terms.deducted_fee_cents
    savings_id = member_account_ids(session, application.member_id)[Purpose.SAVINGS]
    cleared = settlement.clearing if settlement else None
    payoff, commission = (cleared.payoff_cents, cleared.commission_cents) if cleared else (0, 0)
    fee_income = ledger.account_id_by_code(session, SystemAccount.FEE_INCOME)
    cents: dict[int, int] = {loan_account_id: principal, savings_id: 0, fee_income: 0}
    cents[savings_id] -= top_ups.received_cents(principal, fees, payoff, commission)
    cents[fee_income] -= fees + commission
    for leg in top_ups.settlement_legs(session, settlement) if settlement else []:
        cents[leg.account_id] = cents.get(leg.account_id, 0) + leg.amount_cents
    legs = [ledger.Leg(account_id, amount) for account_id, amount in cents.items() if amount]
    return ledger.post_entry(
        session,
        kind=EntryKind.LOAN_DISBURSEMENT,
        legs=legs,
        idempotency_key=f"loan.disbursement:{application.id}",
        now=now,
        value_date=schedule.terms.disbursed_on,
        memo=f"Loan {application.reference}"
        + (f" top-up, clears loan {cleared.reference}" if cleared else ""),
    )


def _tell_disbursed(
    session: Session,
    deps: CoreDeps,
    member: Member,
    application: LoanApplication,
    schedule: Schedule,
    mpesa_cents: int | None = None,
    cleared: top_ups.Clearing | None = None,
) -> None:
    """``loan_disbursed``; for a top-up ``loan_topped_up``: the loan it paid off and what
    reached savings after the payoff, the commission and the fees."""
    first = schedule.instalments[0]
    received = schedule.disbursed_cents
    if cleared is not None:
        received -= cleared.payoff_cents + cleared.commission_cents
    data = {
        "sacco": deps.sacco_name,
        "reference": application.reference,
        "amount": format_cents(application.amount_cents),
        "received": format_cents(received),
        "instalment": format_cents(first.total_cents),
        "due_on": first.due_on.strftime("%d/%m/%Y"),
    }
    template = "loan_disbursed"
    if cleared is not None:  # a top-up is paid to savings only (book.apply_for_loan)
        data["loan"], template = cleared.reference, "loan_topped_up"
    elif mpesa_cents is not None:  # where the money went: on its way to M-Pesa
        data |= {"sent": format_cents(mpesa_cents), "msisdn": member.msisdn}
        template = "loan_disbursed_mpesa"
    notify(
        session,
        template=template,
        business_key=f"loan_disbursed:{application.id}",
        now=deps.now(),
        member=member,
        data=data,
    )
