"""The loan book: applying, routing an application, withdrawing and rejecting it
(docs/loans/book.md).

``apply_for_loan`` checks the input, the product and its channel, appraises the member
(``core.loans.appraisal`` over ``core.loans.facts``), previews the schedule, works out the
security the principal needs and routes the application: waiting for guarantors, or
pending approval; within the product's auto-approval ceiling, approved and disbursed at
once. Every refusal is raised before the first write, so a refused application leaves
nothing behind. The same idempotency key again returns the first application.

Use cases take the caller's session and never commit (``core.kernel.uow``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.audit import log as audit
from core.kernel import uow
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, IdempotencyConflict, InvalidInput, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import SYSTEM, Principal
from core.ledger.entries import MAX_POSTING_CENTS
from core.loans import disbursement, top_ups
from core.loans.errors import LoanRefused, LoanStateError, ProductUnavailable, TopUpRefused
from core.loans.facts import member_facts
from core.loans.pledges import cover, lock_guarantees, release, tell_pledge_released
from core.loans.schedule import build_schedule
from core.loans.terms import ProductTerms, current_terms, version_terms
from core.loans.vocabulary import (
    BEFORE_APPROVAL,
    OPEN_APPLICATION_STATUSES,
    ApplicationStatus,
    Channel,
    DisburseTo,
    GuaranteeStatus,
)
from core.members.registration import get_member
from core.messaging.notifications import notify
from core.scoring.scores import appraise_member
from db.models import Member
from db.models_loans import LoanApplication, LoanGuarantee

KEY_RE = re.compile(r"[A-Za-z0-9._:-]{8,80}")
REASON_LENGTH = (3, 60)  # a staff reason the member reads in one SMS


@dataclass(frozen=True)
class Quote:
    """What a member is shown before the PIN: from the schedule dated today."""

    instalment_cents: int
    total_repayable_cents: int
    deducted_fee_cents: int
    scheduled_fee_cents: int
    received_cents: int
    apr: Decimal  # a fraction: 0.1268 is 12.68 %


def _check_input(amount_cents: object, term: object, channel: object, key: object) -> None:
    if type(amount_cents) is not int:
        raise InvalidInput("amount must be a whole number of cents", field="amount_cents",
                           reason="format")  # fmt: skip
    if amount_cents <= 0:
        raise InvalidInput("amount must be more than zero", field="amount_cents", reason="range")
    if amount_cents > MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field="amount_cents", reason="too_large")
    if type(term) is not int:
        raise InvalidInput("term must be a whole number of instalments", field="term",
                           reason="format")  # fmt: skip
    if channel not in tuple(Channel):
        raise InvalidInput("channel must be ussd, sms or staff", field="channel")
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise InvalidInput("idempotency key: 8-80 of letters, digits, . _ : -",
                           field="idempotency_key", reason="required")  # fmt: skip


def check_product_open(terms: ProductTerms, channel: str, term: int) -> None:
    if not terms.active:
        raise ProductUnavailable("this loan product is not offered now", reason="inactive")
    if channel not in terms.channels:
        raise ProductUnavailable(f"this loan product is not offered by {channel}", reason="channel")
    if not terms.min_term <= term <= terms.max_term:
        raise InvalidInput(
            f"term must be {terms.min_term}-{terms.max_term} instalments",
            field="term",
            reason="range",
        )


def quote(terms: ProductTerms, amount_cents: int, term: int, deps: CoreDeps) -> Quote:
    schedule = build_schedule(terms.schedule_terms(amount_cents, term, business_date(deps.now())))
    return Quote(
        instalment_cents=schedule.instalment_cents,
        total_repayable_cents=schedule.total_repayable_cents,
        deducted_fee_cents=schedule.terms.deducted_fee_cents,
        scheduled_fee_cents=schedule.scheduled_fee_cents,
        received_cents=schedule.disbursed_cents,
        apr=schedule.apr,
    )


def _lock_member(session: Session, member_id: int) -> Member:
    member = session.scalar(
        select(Member)
        .where(Member.id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if member is None:
        raise NotFound("no such member")
    return member


def _earlier(
    session: Session, member_id: int, key: str, wanted: tuple[int, int, int, str, int | None]
) -> LoanApplication | None:
    earlier = session.scalar(
        select(LoanApplication).where(
            LoanApplication.member_id == member_id, LoanApplication.idempotency_key == key
        )
    )
    if earlier is None:
        return None
    product_id = version_terms(session, earlier.product_version_id).product_id
    had = (product_id, earlier.amount_cents, earlier.term, earlier.channel,
           earlier.top_up_of_loan_id)  # fmt: skip
    if had != wanted:
        raise IdempotencyConflict(
            "this idempotency key was already used for another application",
            idempotency_key=key,
        )
    return earlier


def open_application(session: Session, member_id: int) -> LoanApplication | None:
    return session.scalar(
        select(LoanApplication).where(
            LoanApplication.member_id == member_id,
            LoanApplication.status.in_(list(OPEN_APPLICATION_STATUSES)),
        )
    )


def apply_for_loan(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    product_code: str,
    amount_cents: int,
    term: int,
    channel: str,
    idempotency_key: str,
    *,
    disburse_to: str = DisburseTo.SAVINGS,
    payout: disbursement.LoanPayout | None = None,
    top_up_of: int | str | None = None,
) -> LoanApplication:
    """Apply for ``amount_cents`` over ``term`` instalments of the product ``product_code``
    (see the module), to be paid to savings or by M-Pesa (``disburse_to``; ``payout``: the
    edge's M-Pesa payout port, for an auto-approved M-Pesa application); with ``top_up_of``
    (a loan's id or reference), a top-up that clears that loan of the member's first
    (``core.loans.top_ups``). Refusals: ``InvalidInput`` (amount, term, channel, key,
    disburse_to), ``NotFound`` (member, product, the loan to top up), ``ProductUnavailable``,
    ``TopUpRefused``, ``LoanRefused`` (the appraisal's reasons and the limit),
    ``LoanStateError`` ``application_open`` (one open application per member),
    ``IdempotencyConflict``."""
    _check_input(amount_cents, term, channel, idempotency_key)
    if disburse_to not in tuple(DisburseTo):
        raise InvalidInput("disburse_to must be savings or mpesa", field="disburse_to")
    if top_up_of is not None and disburse_to != DisburseTo.SAVINGS:
        # What a top-up leaves is known only at disbursement (the old loan's payoff that
        # day), after the M-Pesa payout's checks would have to run: it goes to savings.
        raise InvalidInput("a top-up is paid to savings", field="disburse_to")
    member = _lock_member(session, member_id)  # one application at a time per member
    terms = current_terms(session, product_code)
    old = None if top_up_of is None else top_ups.loan_to_clear(session, member.id, top_up_of)
    earlier = _earlier(
        session, member.id, idempotency_key,
        (terms.product_id, amount_cents, term, channel, old.id if old else None),
    )  # fmt: skip
    if earlier is not None:
        return earlier
    check_product_open(terms, channel, term)
    if old is not None:
        top_ups.check_may_top_up(session, terms, old)
    now = deps.now()
    facts = top_ups.facts_without(session, member_facts(session, member, business_date(now)), old)
    found = appraise_member(session, deps, terms, member.id, facts, amount_cents)
    if not found.ok:
        refused = LoanRefused.of(found, terms.min_score)
        # A score is kept even when it refuses (every score is kept: docs/loans/scoring.md);
        # nothing else is written before this point.
        raise uow.keep(refused) if found.score is not None else refused
    waiting = open_application(session, member.id)
    if waiting is not None:
        raise LoanStateError(
            f"application {waiting.reference} is still {waiting.status}",
            reason="application_open",
        )
    preview = quote(terms, amount_cents, term, deps)
    cleared = None
    if old is not None:
        cleared = top_ups.clearing(session, deps, terms, old, term)
        top_ups.check_receives(amount_cents, preview.deducted_fee_cents, cleared)
    required = terms.required_cover_cents(amount_cents)
    own = min(required, facts.free_deposits_cents)
    application = LoanApplication(
        reference=disbursement.new_application_reference(),
        member_id=member.id,
        product_version_id=terms.version_id,
        amount_cents=amount_cents,
        term=term,
        status=ApplicationStatus.SUBMITTED,
        channel=channel,
        disburse_to=disburse_to,
        idempotency_key=idempotency_key,
        limit_cents=found.limit_cents,
        reasons="",
        required_cover_cents=required,
        own_cover_cents=own,
        guarantor_cover_cents=required - own,
        instalment_cents=preview.instalment_cents,
        total_repayable_cents=preview.total_repayable_cents,
        deducted_fee_cents=preview.deducted_fee_cents,
        scheduled_fee_cents=preview.scheduled_fee_cents,
        apr=preview.apr,
        decision_note="",
        created_at=now,
        updated_at=now,
        top_up_of_loan_id=cleared.loan_id if cleared else None,
        top_up_payoff_cents=cleared.payoff_cents if cleared else 0,
        top_up_commission_cents=cleared.commission_cents if cleared else 0,
    )
    while session.scalar(
        select(LoanApplication.id).where(LoanApplication.reference == application.reference)
    ):  # taken (1 in 34 billion): draw again
        application.reference = disbursement.new_application_reference()
    session.add(application)
    session.flush()
    route(
        session, deps, application, payout=payout, free_cents=facts.free_deposits_cents,
        new=True,
    )  # fmt: skip
    return application


@dataclass(frozen=True)
class Applied:
    application: LoanApplication
    created: bool  # False: the key was seen before and nothing was written


def apply_by_staff(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    product_code: str,
    amount_cents: int,
    term: int,
    idempotency_key: str,
    top_up_of: int | str | None = None,
) -> Applied:
    """A member of staff applies on a member's behalf (channel ``staff``), possibly for a
    top-up: ``apply_for_loan``, audited ``loan.apply`` the first time (the same refusals).
    The caller checks the member is within the actor's branch."""
    seen = session.scalar(
        select(LoanApplication.id).where(
            LoanApplication.member_id == member_id,
            LoanApplication.idempotency_key == idempotency_key,
        )
    )
    application = apply_for_loan(
        session, deps, member_id, product_code, amount_cents, term, Channel.STAFF,
        idempotency_key, top_up_of=top_up_of,
    )  # fmt: skip
    if seen is None:
        audit.record(
            session, actor, "loan.apply", target_type="loan_application",
            target_id=application.id,
            after={"reference": application.reference, "amount_cents": amount_cents,
                   "term": term, "product": product_code, "status": application.status,
                   "top_up_of_loan_id": application.top_up_of_loan_id,
                   "top_up_payoff_cents": application.top_up_payoff_cents,
                   "top_up_commission_cents": application.top_up_commission_cents},
            now=deps.now(),
        )  # fmt: skip
    return Applied(application, created=seen is None)


def route(
    session: Session,
    deps: CoreDeps,
    application: LoanApplication,
    *,
    payout: disbursement.LoanPayout | None = None,
    free_cents: int | None = None,
    new: bool = False,
) -> None:
    """Move a not-yet-approved application to where its security puts it: waiting for
    guarantors while the cover is short, pending approval once it is complete, and, within
    the product's auto-approval ceiling with every rule passing, approved and disbursed
    by the system with no request. The caller holds the application's row (locked, or
    inserted, in this unit of work). ``free_cents``: the borrower's free deposits, when the
    caller read them in this unit of work (``pledges.cover``). ``new``: the application
    was inserted just now by ``apply_for_loan``, under the member's lock, after its
    appraisal passed on the facts read under that lock: it has no pledges yet, and
    ``disbursement.check_approvable`` would read the same facts to the same answer, so
    neither is read again."""
    if application.status not in BEFORE_APPROVAL:
        return
    now = deps.now()
    pledged = 0 if new else None
    complete = cover(session, application, free_cents=free_cents, pledged=pledged).complete
    status = (
        ApplicationStatus.PENDING_APPROVAL if complete else ApplicationStatus.AWAITING_GUARANTORS
    )
    if status != application.status:
        if application.approval_id is not None and not complete:
            # Back to waiting: the recommendation pending on it can no longer succeed.
            approvals.lapse(
                session, deps, application.approval_id,
                LoanStateError("a pledge was withdrawn", reason="cover_incomplete"),
            )  # fmt: skip
        application.status = status
        application.updated_at = now
        session.flush()
    if complete:
        _auto_approve(session, deps, application, payout, checked=new)


def _auto_approve(
    session: Session,
    deps: CoreDeps,
    application: LoanApplication,
    payout: disbursement.LoanPayout | None = None,
    *,
    checked: bool = False,
) -> None:
    """Approve and disburse within the product's ceiling; ``checked``: the caller has
    just appraised it under the member's lock (``route``'s ``new``)."""
    terms = version_terms(session, application.product_version_id)
    if application.amount_cents > terms.auto_approve_ceiling_cents:
        return
    try:
        if not checked:
            disbursement.check_approvable(session, deps, application)
    except LoanRefused as refused:  # rules changed since applying: staff decide
        application.reasons = " ".join(refused.reasons)[:200]
        session.flush()
        return
    except TopUpRefused as refused:  # e.g. the payoff grew since applying: staff decide
        application.reasons = f"top_up_{refused.reason}"[:200]
        session.flush()
        return
    except LoanStateError:
        return
    if application.disburse_to == DisburseTo.MPESA:
        try:  # no M-Pesa at this edge, above the payout maximum, a SIM swap: staff decide
            with uow.savepoint(session):
                disbursement.approve_application(
                    session, deps, SYSTEM, application.id,
                    note="auto-approved within the product ceiling", checked=True, locked=True,
                )  # fmt: skip
                disbursement.disburse(
                    session, deps, SYSTEM, application.id, payout=payout, locked=True
                )
        except DomainError as refused:
            application.reasons = str(refused.context.get("reason") or refused.code)[:200]
            session.flush()
        return
    disbursement.approve_application(
        session, deps, SYSTEM, application.id, note="auto-approved within the product ceiling",
        checked=True, locked=True,
    )  # fmt: skip
    disbursement.disburse(session, deps, SYSTEM, application.id, payout=payout, locked=True)


def _close(
    session: Session,
    deps: CoreDeps,
    application: LoanApplication,
    status: ApplicationStatus,
    *,
    note: str = "",
) -> list[LoanGuarantee]:
    """End an application before approval: every pledge released (SMS to its guarantor),
    requests never answered closed; the guarantees that had pledged."""
    now = deps.now()
    released = []
    for guarantee in lock_guarantees(session, application.id):
        if guarantee.status == GuaranteeStatus.ACCEPTED:
            release(session, guarantee, status=GuaranteeStatus.RELEASED, now=now)
            released.append(guarantee)
        elif guarantee.status == GuaranteeStatus.REQUESTED:
            release(session, guarantee, status=GuaranteeStatus.WITHDRAWN, now=now)
    application.status = status
    application.decision_note = note
    application.decided_at = application.updated_at = now
    session.flush()
    for guarantee in released:
        tell_pledge_released(session, deps, guarantee, application)
    return released


def withdraw_application(
    session: Session, deps: CoreDeps, *, member_id: int, application_id: int
) -> LoanApplication:
    """The member withdraws their application before approval; pledges are released."""
    application = disbursement.lock_application(session, application_id)
    if application.member_id != member_id:
        raise NotFound("no such loan application")
    if application.status == ApplicationStatus.WITHDRAWN:
        return application
    if application.status not in BEFORE_APPROVAL:
        raise LoanStateError(f"the application is {application.status}", reason="decided")
    _close(session, deps, application, ApplicationStatus.WITHDRAWN, note="withdrawn by member")
    return application


def check_reason(reason: object) -> str:
    text = " ".join(str(reason or "").split())
    low, high = REASON_LENGTH
    if not low <= len(text) <= high:
        raise InvalidInput(f"reason: {low}-{high} characters", field="reason", reason="length")
    return text


def reject(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    application_id: int,
    *,
    reason: str,
    approval_id: int | None = None,
) -> LoanApplication:
    """Reject an application before approval: pledges released, the member told by SMS
    with the reason, audited. (Through ``core.loans.approval_actions.reject_application``
    when a recommendation is pending, so the engine's checker rules apply.)"""
    text = check_reason(reason)
    application = disbursement.lock_application(session, application_id)
    if application.status == ApplicationStatus.REJECTED:
        return application
    if application.status not in BEFORE_APPROVAL:
        raise LoanStateError(f"the application is {application.status}", reason="decided")
    if approval_id is not None:
        application.approval_id = approval_id
    _close(session, deps, application, ApplicationStatus.REJECTED, note=text)
    member = get_member(session, application.member_id)
    notify(
        session,
        template="loan_rejected",
        business_key=f"loan_rejected:{application.id}",
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "reference": application.reference,
            "amount": format_cents(application.amount_cents),
            "reason": text,
        },
    )
    audit.record(
        session, actor, "loan.reject", target_type="loan_application", target_id=application.id,
        after={"reference": application.reference, "reason": text, "approval_id": approval_id},
        now=deps.now(),
    )  # fmt: skip
    return application
