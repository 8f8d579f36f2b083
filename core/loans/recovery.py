"""Default recovery (issue 13, part 7; docs/loans/recovery.md): a defaulted loan repaid
from the borrower's own free deposits first, then from the guarantors' pledges pro rata to
what each pledged, on a maker-checker approval (``loan.recover``).

* **Defaulted** (``defaulted``): an active loan whose category at the last close of day
  (``loan_day_states.category``, the SASRA bands as data: core/risk/classification.py) is
  doubtful or loss (``DEFAULTED_CATEGORIES``): with the bands of version 1, more than 180
  days past due or more than 6 instalments missed. The same rule keeps the loan's
  guarantors from borrowing (``core.loans.facts.guarantees_defaulted_loan``).
* ``plan`` (pure over what it reads, writes nothing): what would close the loan today (the
  repayments' payoff), what the borrower's free deposits pay of it, and each guarantor's
  share of the rest (``split_pro_rata``: largest remainder, never more than what their
  pledge still holds). The preview shown to the maker and stored in the request.
* ``propose``: a holder of ``loans:recover`` asks (``core.approvals``); another person
  decides, by the amount (``approvals:decide``; above the manager threshold
  ``approvals:decide_large``).
* ``recover`` (the approved action, in the approval's transaction): the plan again as of
  the moment of approval, then, each its own ledger entry through the repayments'
  allocation (``core.loans.repayments.allocate`` and ``settlement_legs``, so interest,
  fees and principal settle as any repayment's): the borrower's deposits
  (``loan.recovery_deposits``), then each guarantor's share posted from the hold of their
  pledge (``loan.recovery_pledge``; ``core.ledger.entries.post_hold``: what the share does
  not take of the hold is released in the same update). Each step is a ``loan_repayments``
  row (source ``recovery``); the guarantee becomes ``called``. When the loan is paid off it
  closes and any pledge not called is released (``guarantee_released``). SMS to the
  borrower (``loan_recovered``) and each guarantor called (``loan_recovered_guarantor``);
  audited (``loan.recovery``); partners get ``loan.repaid`` per step (source ``recovery``).
* A **recovery loan** (``as_loan`` on the proposal, ``_recovery_loan``): a guarantor's
  share made a new loan to them under a recovery product, paid out by the book's own
  disbursement and straight on to the defaulted loan (``loan.recovery_loan``), their
  pledge released and their deposits untouched.

One recovery per approval (``loan_recoveries.approval_id`` unique; entry keys
``loan.recovery:<approval id>:…``): the engine decides a request once under its row lock,
and an execution that finds its recovery written returns it. Never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine
from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal, can_access_branch
from core.ledger import entries as ledger
from core.ledger.chart import Purpose
from core.ledger.vocabulary import EntryKind
from core.loans import pledges, repayments
from core.loans.book import check_product_open, quote
from core.loans.disbursement import disburse_to_savings, new_application_reference
from core.loans.errors import LoanStateError
from core.loans.facts import DEFAULTED_CATEGORIES, deposits_account, free_deposits_cents
from core.loans.terms import current_terms
from core.loans.vocabulary import (
    ApplicationStatus,
    Channel,
    DisburseTo,
    FeeTiming,
    GuaranteeStatus,
    LoanStatus,
    RepaymentSource,
)
from core.members.registration import get_member, member_account_ids
from core.messaging.notifications import first_name, notify
from db.models import ApprovalRequest, Member
from db.models_close_day import LoanDayState
from db.models_loans import (
    Loan,
    LoanApplication,
    LoanGuarantee,
    LoanInstalment,
    LoanRepayment,
)
from db.models_recovery import LoanRecovery, LoanRecoveryShare

ACTION = "loan.recover"
MAKER_PERMISSION = "loans:recover"


# ------------------------------------------------------------------ the pure split


def split_pro_rata(total_cents: int, weights: Sequence[int], caps: Sequence[int]) -> list[int]:
    """``total_cents`` split in proportion to ``weights`` (what each pledged), each share
    never above its cap (what the pledge still holds): floors first, then the cents left
    one each to the largest remainders (earlier first on a tie); a share that would pass
    its cap is fixed at the cap and the rest split again among the others. When the caps
    add up to less than ``total_cents`` each share is its cap. Shares add up to
    ``min(total_cents, sum(caps))`` exactly."""
    if total_cents < 0 or len(weights) != len(caps):
        raise ValueError("a non-negative total and one cap per weight")
    if any(w <= 0 for w in weights) or any(c < 0 for c in caps):
        raise ValueError("weights must be positive and caps not negative")
    shares = [0] * len(weights)
    if total_cents >= sum(caps):
        return list(caps)
    open_ = [i for i in range(len(weights)) if caps[i] > 0]
    left = total_cents
    while left > 0:
        weight = sum(weights[i] for i in open_)
        floors = {i: left * weights[i] // weight for i in open_}
        rest = left - sum(floors.values())
        by_remainder = sorted(open_, key=lambda i: (-(left * weights[i] % weight), i))
        for i in by_remainder[:rest]:
            floors[i] += 1
        over = [i for i in open_ if floors[i] > caps[i]]
        if not over:
            for i in open_:
                shares[i] = floors[i]
            return shares
        for i in over:  # fixed at the cap; what they cannot take goes round again
            shares[i] = caps[i]
            left -= caps[i]
            open_.remove(i)
    return shares


# ------------------------------------------------------------------ reading a loan


@dataclass(frozen=True)
class GuarantorShare:
    guarantee_id: int
    guarantor_id: int
    member_number: str | None
    name: str
    pledge_cents: int  # what they pledged
    held_cents: int  # what the pledge still holds on their deposits
    share_cents: int  # what the recovery takes of it


@dataclass(frozen=True)
class Plan:
    """Who pays what if the loan is recovered now."""

    loan_id: int
    reference: str
    member_id: int
    category: str
    days_past_due: int
    payoff_cents: int  # what would close the loan today
    free_deposits_cents: int  # the borrower's deposits not pledged for others
    from_deposits_cents: int
    from_guarantors_cents: int
    balance_after_cents: int  # the payoff left when deposits and pledges are spent
    guarantors: tuple[GuarantorShare, ...]

    @property
    def closes(self) -> bool:
        return self.balance_after_cents == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "closes": self.closes}


def defaulted(session: Session, loan: Loan) -> LoanDayState:
    """The loan's close-of-day figures when it is defaulted (see the module), else
    ``LoanStateError``: ``not_active`` (closed, written off) or ``not_defaulted``."""
    if loan.status != LoanStatus.ACTIVE:
        raise LoanStateError(f"loan {loan.reference} is {loan.status}", reason="not_active")
    state = session.get(LoanDayState, loan.id)
    if state is None or state.category not in DEFAULTED_CATEGORIES:
        category = state.category if state is not None and state.category else "not classified"
        raise LoanStateError(
            f"loan {loan.reference} is {category}: only a doubtful or loss loan is recovered",
            reason="not_defaulted",
        )
    return state


def _visible_loan(session: Session, actor: Principal | None, loan_id: object) -> Loan:
    if isinstance(loan_id, bool) or not isinstance(loan_id, int):
        raise InvalidInput("loan_id is required", field="loan_id")
    loan = session.get(Loan, loan_id)
    if loan is None:
        raise NotFound("no such loan")
    if actor is not None and not can_access_branch(
        actor, get_member(session, loan.member_id).branch
    ):
        raise NotFound("no such loan")
    return loan


def _payoff(session: Session, loan: Loan, rows: Sequence[LoanInstalment], today: date) -> int:
    _, early_payoff = repayments.rules_of(session, loan)
    return repayments.payoff_cents(repayments.owed_rows(rows, today), early_payoff)


def _plan(
    session: Session, loan: Loan, state: LoanDayState, rows: Sequence[LoanInstalment],
    guarantees: Sequence[LoanGuarantee], today: date,
) -> Plan:  # fmt: skip
    payoff = _payoff(session, loan, rows, today)
    free = free_deposits_cents(session, loan.member_id)
    own = min(free, payoff)
    held = [pledges.hold_cents(session, g) for g in guarantees]
    shares = (
        split_pro_rata(payoff - own, [g.amount_cents for g in guarantees], held)
        if guarantees
        else []
    )
    members = {g.guarantor_id: session.get_one(Member, g.guarantor_id) for g in guarantees}
    people = tuple(
        GuarantorShare(
            guarantee_id=g.id,
            guarantor_id=g.guarantor_id,
            member_number=members[g.guarantor_id].member_number,
            name=members[g.guarantor_id].full_name,
            pledge_cents=g.amount_cents,
            held_cents=h,
            share_cents=share,
        )  # fmt: skip
        for g, h, share in zip(guarantees, held, shares, strict=True)
    )
    from_guarantors = sum(shares)
    return Plan(
        loan_id=loan.id, reference=loan.reference, member_id=loan.member_id,
        category=state.category or "", days_past_due=state.days_past_due, payoff_cents=payoff,
        free_deposits_cents=free, from_deposits_cents=own, from_guarantors_cents=from_guarantors,
        balance_after_cents=payoff - own - from_guarantors, guarantors=people,
    )  # fmt: skip


def _accepted(session: Session, loan_id: int) -> list[LoanGuarantee]:
    return list(
        session.scalars(
            select(LoanGuarantee)
            .where(
                LoanGuarantee.loan_id == loan_id, LoanGuarantee.status == GuaranteeStatus.ACCEPTED
            )
            .order_by(LoanGuarantee.id)
        )  # fmt: skip
    )


def plan(session: Session, deps: CoreDeps, loan_id: int, actor: Principal | None = None) -> Plan:
    """The preview: who would pay what if ``loan_id`` were recovered now (writes nothing).
    ``NotFound`` (also for a loan of another branch than ``actor``'s), ``LoanStateError``
    when it is not defaulted."""
    loan = _visible_loan(session, actor, loan_id)
    state = defaulted(session, loan)
    rows = repayments.instalments_of(session, loan.id)
    return _plan(session, loan, state, rows, _accepted(session, loan.id),
                 business_date(deps.now()))  # fmt: skip


# ------------------------------------------------------------------ asking


@dataclass(frozen=True)
class AsLoan:
    """Guarantees whose share becomes a recovery loan to the guarantor (their deposits
    untouched), under ``product_code`` (its current version) over ``term`` instalments."""

    guarantee_ids: frozenset[int]
    product_code: str
    term: int


AS_LOAN_FIELDS = ("as_loan", "recovery_product", "recovery_term")


def as_loan_of(session: Session, loan: Loan, p: dict[str, Any]) -> AsLoan | None:
    """The proposal's recovery-loan option, checked (``InvalidInput`` for the fields;
    ``ProductUnavailable`` for a product not offered to staff or a term out of its range;
    ``LoanStateError`` ``recovery_product_fees`` for a product that deducts fees: the loan
    must pay its whole share on)."""
    ids = p.get("as_loan") or []
    if not ids:
        if p.get("recovery_product") is not None or p.get("recovery_term") is not None:
            raise InvalidInput("recovery_product and recovery_term go with as_loan",
                               field="as_loan")  # fmt: skip
        return None
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        raise InvalidInput("as_loan: a list of guarantee ids", field="as_loan")
    accepted = {g.id for g in _accepted(session, loan.id)}
    if not set(ids) <= accepted:
        raise InvalidInput("as_loan: guarantees of this loan still pledged", field="as_loan")
    code, term = p.get("recovery_product"), p.get("recovery_term")
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput("recovery_product: the recovery loans' product code",
                           field="recovery_product")  # fmt: skip
    if type(term) is not int or term < 1:
        raise InvalidInput("recovery_term: a number of instalments", field="recovery_term")
    terms = current_terms(session, code.strip())
    check_product_open(terms, Channel.STAFF, term)
    if any(f.timing == FeeTiming.DEDUCTED and f.applies(term) for f in terms.fees):
        raise LoanStateError(
            f"{terms.name} deducts fees at disbursement: a recovery loan pays its whole share",
            reason="recovery_product_fees",
        )
    return AsLoan(frozenset(ids), code.strip(), term)


def propose(
    session: Session, deps: CoreDeps, actor: Principal, loan_id: int, *, note: str = "",
    large_threshold_cents: int, as_loan: list[int] | None = None,
    recovery_product: str | None = None, recovery_term: int | None = None,
) -> ApprovalRequest:  # fmt: skip
    """Ask for ``loan_id`` to be recovered (maker ``loans:recover``): a ``loan.recover``
    request with the preview in its payload, for another person to decide. ``as_loan``:
    guarantee ids whose share becomes a loan to the guarantor under ``recovery_product``
    over ``recovery_term`` instalments (``as_loan_of``)."""
    loan = _visible_loan(session, actor, loan_id)
    payload: dict[str, Any] = {"loan_id": loan.id}
    asked = {"as_loan": as_loan, "recovery_product": recovery_product,
             "recovery_term": recovery_term}  # fmt: skip
    payload |= {k: v for k, v in asked.items() if v is not None}
    return engine.request_approval(
        session, deps, actor, ACTION, payload=payload, member_id=loan.member_id,
        note=note or f"recover loan {loan.reference}",
        large_threshold_cents=large_threshold_cents,
    )  # fmt: skip


def check_proposal(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    """The engine's check when the request is made: the loan the borrower's and defaulted;
    the preview goes into the payload (what the checker reads), the payoff is the amount
    that decides who may approve."""
    unknown = set(p) - {"loan_id", *AS_LOAN_FIELDS}
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]}", field=sorted(unknown)[0])
    loan = _visible_loan(session, None, p.get("loan_id"))
    if member_id is not None and loan.member_id != member_id:
        raise NotFound("no such loan")
    preview = plan(session, deps, loan.id)
    as_loan_of(session, loan, p)
    p["preview"] = {
        "payoff_cents": preview.payoff_cents,
        "from_deposits_cents": preview.from_deposits_cents,
        "from_guarantors_cents": preview.from_guarantors_cents,
        "balance_after_cents": preview.balance_after_cents,
        "guarantors": [
            {"guarantee_id": g.guarantee_id, "guarantor_id": g.guarantor_id,
             "share_cents": g.share_cents,
             "as_loan": g.guarantee_id in (p.get("as_loan") or [])}
            for g in preview.guarantors
        ],
    }  # fmt: skip
    return preview.payoff_cents


# ------------------------------------------------------------------ doing


@dataclass(frozen=True)
class Recovered:
    recovery_id: int
    loan_id: int
    reference: str
    from_deposits_cents: int
    from_guarantors_cents: int
    balance_after_cents: int
    closed: bool
    shares: tuple[tuple[int, int, int | None], ...]  # (guarantee id, cents, recovery loan id)
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "recovery_id": self.recovery_id, "loan": self.reference,
            "from_deposits_cents": self.from_deposits_cents,
            "from_guarantors_cents": self.from_guarantors_cents,
            "balance_after_cents": self.balance_after_cents, "closed": self.closed,
            "guarantors": [{"guarantee_id": g, "share_cents": c, "recovery_loan_id": n}
                           for g, c, n in self.shares],
        }  # fmt: skip


def _recovered(session: Session, row: LoanRecovery, loan: Loan, *, created: bool) -> Recovered:
    shares = session.scalars(
        select(LoanRecoveryShare)
        .where(LoanRecoveryShare.recovery_id == row.id)
        .order_by(LoanRecoveryShare.guarantee_id)
    )
    return Recovered(
        recovery_id=row.id, loan_id=loan.id, reference=loan.reference,
        from_deposits_cents=row.from_deposits_cents,
        from_guarantors_cents=row.from_guarantors_cents,
        balance_after_cents=row.balance_after_cents, closed=row.closed_loan,
        shares=tuple((s.guarantee_id, s.share_cents, s.recovery_loan_id) for s in shares),
        created=created,
    )  # fmt: skip


def _step(
    session: Session, deps: CoreDeps, loan: Loan, rows: list[LoanInstalment], *,
    source: ledger.Leg, key: str, kind: EntryKind, memo: str, hold_id: int | None = None,
) -> ledger.PostedEntry:  # fmt: skip
    """One step: ``source.amount_cents`` split as a repayment (the product's order and
    payoff rule), posted with the settlement legs (from the hold ``hold_id`` when given),
    the instalments paid and a ``loan_repayments`` row (source ``recovery``)."""
    now = deps.now()
    today = business_date(now)
    amount = source.amount_cents
    order, early_payoff = repayments.rules_of(session, loan)
    split = repayments.allocate(repayments.owed_rows(rows, today), amount, order, early_payoff)
    assert split.to_savings_cents == 0, "a recovery never takes more than the payoff"
    legs = [source, *repayments.settlement_legs(session, loan, split)]
    if hold_id is None:
        posted = ledger.post_entry(
            session, kind=kind, legs=legs, idempotency_key=key, now=now, memo=memo
        )
    else:
        posted = ledger.post_hold(
            session, hold_id=hold_id, legs=legs, idempotency_key=key, kind=kind, now=now,
            memo=memo,
        )  # fmt: skip
    repayments.mark_paid(rows, split)
    if split.closes:
        loan.status = LoanStatus.CLOSED
        loan.closed_at = now
    session.flush()
    row = LoanRepayment(
        loan_id=loan.id, idempotency_key=key, business_key=key, source=RepaymentSource.RECOVERY,
        amount_cents=amount, penalty_cents=split.penalty_cents, fee_cents=split.fee_cents,
        interest_cents=split.interest_cents, principal_cents=split.principal_cents,
        waived_interest_cents=split.waived_interest_cents, to_savings_cents=0,
        balance_after_cents=0 if split.closes else _payoff(session, loan, rows, today),
        entry_id=posted.entry_id, savings_entry_id=None, receipt=None,
        closed_loan=split.closes, value_date=today, created_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    told = repayments.Repayment(
        amount_cents=amount, source=RepaymentSource.RECOVERY, idempotency_key=key,
        business_key=key, loan_id=loan.id,
    )  # fmt: skip
    repayments._publish(  # partners hear of each step as of any repayment, source recovery
        session, deps, loan, get_member(session, loan.member_id), told,
        repayments._repaid(session, loan, row, created=True),
    )  # fmt: skip
    return posted


def _recovery_loan(
    session: Session, deps: CoreDeps, actor: Principal, loan: Loan,
    rows: list[LoanInstalment], guarantee: LoanGuarantee, cents: int, as_loan: AsLoan, *,
    key: str, approval_id: int,
) -> tuple[Loan, ledger.PostedEntry]:  # fmt: skip
    """A guarantor's share as a new loan to them: an application approved by this
    recovery's approval, paid out by the book's own disbursement (the loan account, the
    schedule, ``loan.disbursement`` to their savings, audited ``loan.disburse``; no SMS of
    its own), then straight on from their savings to the defaulted loan
    (``loan.recovery_loan``, the repayments' allocation). Their pledge's hold is released:
    their deposits stay theirs. Told by ``loan_recovered_as_loan``."""
    now = deps.now()
    terms = current_terms(session, as_loan.product_code)
    check_product_open(terms, Channel.STAFF, as_loan.term)
    shown = quote(terms, cents, as_loan.term, deps)
    if shown.deducted_fee_cents:
        raise LoanStateError(f"{terms.name} deducts fees at disbursement",
                             reason="recovery_product_fees")  # fmt: skip
    application = LoanApplication(
        reference=new_application_reference(), member_id=guarantee.guarantor_id,
        product_version_id=terms.version_id, amount_cents=cents, term=as_loan.term,
        status=ApplicationStatus.APPROVED, channel=Channel.STAFF, disburse_to=DisburseTo.SAVINGS,
        idempotency_key=f"recovery:{approval_id}:{guarantee.id}", limit_cents=0, reasons="",
        required_cover_cents=0, own_cover_cents=0, guarantor_cover_cents=0,
        instalment_cents=shown.instalment_cents,
        total_repayable_cents=shown.total_repayable_cents, deducted_fee_cents=0,
        scheduled_fee_cents=shown.scheduled_fee_cents, apr=shown.apr,
        approval_id=approval_id, decision_note=f"recovery of loan {loan.reference}",
        created_at=now, decided_at=now, updated_at=now,
    )  # fmt: skip
    while session.scalar(
        select(LoanApplication.id).where(LoanApplication.reference == application.reference)
    ):  # taken (1 in 34 billion): draw again
        application.reference = new_application_reference()
    session.add(application)
    session.flush()
    new = disburse_to_savings(session, deps, actor, application.id, tell=False)
    savings = member_account_ids(session, guarantee.guarantor_id)[Purpose.SAVINGS]
    posted = _step(
        session, deps, loan, rows, source=ledger.Leg(savings, cents), key=key,
        kind=EntryKind.LOAN_RECOVERY_LOAN,
        memo=f"Loan {loan.reference} recovered by a guarantor's loan {new.reference}",
    )  # fmt: skip
    pledges.release(session, guarantee, status=GuaranteeStatus.CALLED, now=now)
    first = session.scalars(
        select(LoanInstalment).where(LoanInstalment.loan_id == new.id)
        .order_by(LoanInstalment.number).limit(1)
    ).one()  # fmt: skip
    notify(
        session, template="loan_recovered_as_loan", business_key=f"loan_recovered_as_loan:{new.id}",
        now=now, member=get_member(session, guarantee.guarantor_id),
        data={"sacco": deps.sacco_name, "loan": loan.reference, "amount": format_cents(cents),
              "reference": new.reference, "instalment": format_cents(first.due_cents),
              "due_on": first.due_on.strftime("%d/%m/%Y")},
    )  # fmt: skip
    return new, posted


def recover(
    session: Session, deps: CoreDeps, actor: Principal, loan_id: int, *, approval_id: int,
    as_loan: AsLoan | None = None,
) -> Recovered:  # fmt: skip
    """Recover a defaulted loan (see the module), as ``approval_id`` approved it. The
    figures are the plan at this moment. ``LoanStateError`` (``not_defaulted``,
    ``not_active``) before any write. ``as_loan``: the guarantees whose share becomes a
    recovery loan to the guarantor (``_recovery_loan``) instead of leaving their deposits."""
    earlier = session.scalar(select(LoanRecovery).where(LoanRecovery.approval_id == approval_id))
    if earlier is not None:
        return _recovered(session, earlier, session.get_one(Loan, earlier.loan_id), created=False)
    loan = session.scalar(
        select(Loan).where(Loan.id == loan_id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    if loan is None:
        raise NotFound("no such loan")
    state = defaulted(session, loan)
    rows = repayments.instalments_of(session, loan.id, lock=True)
    guarantees = pledges.loan_guarantees(session, loan.id)  # locked, id order
    now = deps.now()
    the = _plan(session, loan, state, rows, guarantees, business_date(now))
    if the.payoff_cents == 0:  # never: an active loan owes something
        raise LoanStateError(f"loan {loan.reference} owes nothing", reason="nothing_owed")
    prefix = f"loan.recovery:{approval_id}"
    deposits_entry = None
    if the.from_deposits_cents:
        account = deposits_account(session, loan.member_id)
        deposits_entry = _step(
            session, deps, loan, rows, source=ledger.Leg(account.id, the.from_deposits_cents),
            key=f"{prefix}:deposits", kind=EntryKind.LOAN_RECOVERY_DEPOSITS,
            memo=f"Loan {loan.reference} recovered from own deposits",
        ).entry_id  # fmt: skip
    record = LoanRecovery(
        loan_id=loan.id, approval_id=approval_id, payoff_cents=the.payoff_cents,
        from_deposits_cents=the.from_deposits_cents,
        from_guarantors_cents=the.from_guarantors_cents,
        balance_after_cents=the.balance_after_cents, closed_loan=the.closes,
        deposits_entry_id=deposits_entry, created_at=now,
    )  # fmt: skip
    session.add(record)
    session.flush()
    by_id = {g.id: g for g in guarantees}
    for share in the.guarantors:
        if not share.share_cents:
            continue
        guarantee = by_id[share.guarantee_id]
        new_loan = None
        if as_loan is not None and guarantee.id in as_loan.guarantee_ids:
            new_loan, posted = _recovery_loan(
                session, deps, actor, loan, rows, guarantee, share.share_cents, as_loan,
                key=f"{prefix}:loan:{guarantee.id}", approval_id=approval_id,
            )  # fmt: skip
        else:
            account = deposits_account(session, guarantee.guarantor_id)
            posted = _step(
                session, deps, loan, rows, source=ledger.Leg(account.id, share.share_cents),
                key=f"{prefix}:pledge:{guarantee.id}", kind=EntryKind.LOAN_RECOVERY_PLEDGE,
                hold_id=guarantee.hold_id,
                memo=f"Loan {loan.reference} recovered from a guarantor's pledge",
            )  # fmt: skip
        guarantee.status = GuaranteeStatus.CALLED
        guarantee.released_at = now
        session.add(
            LoanRecoveryShare(
                recovery_id=record.id, guarantee_id=guarantee.id,
                guarantor_id=guarantee.guarantor_id, pledge_cents=guarantee.amount_cents,
                held_cents=share.held_cents, share_cents=share.share_cents,
                entry_id=posted.entry_id, recovery_loan_id=new_loan.id if new_loan else None,
            )
        )  # fmt: skip
        session.flush()
    if loan.status == LoanStatus.CLOSED:
        repayments.release_pledges(session, deps, loan)  # pledges not called go back
    done = _recovered(session, record, loan, created=True)
    _tell(session, deps, loan, the, approval_id, as_loan)
    audit.record(
        session, actor, "loan.recovery", target_type="loan", target_id=loan.id,
        after={**done.as_dict(), "approval_id": approval_id, "payoff_cents": the.payoff_cents},
        now=now,
    )  # fmt: skip
    return done


def _tell(
    session: Session, deps: CoreDeps, loan: Loan, the: Plan, approval_id: int,
    as_loan: AsLoan | None,
) -> None:  # fmt: skip
    now = deps.now()
    borrower = get_member(session, loan.member_id)
    notify(
        session, template="loan_recovered", business_key=f"loan_recovered:{approval_id}",
        now=now, member=borrower,
        data={"sacco": deps.sacco_name, "loan": loan.reference,
              "deposits": format_cents(the.from_deposits_cents),
              "amount": format_cents(the.from_guarantors_cents),
              "balance": format_cents(the.balance_after_cents)},
    )  # fmt: skip
    for share in the.guarantors:
        if not share.share_cents or (as_loan and share.guarantee_id in as_loan.guarantee_ids):
            continue  # nothing taken, or told of their recovery loan (``_recovery_loan``)
        notify(
            session, template="loan_recovered_guarantor",
            business_key=f"loan_recovered_guarantor:{share.guarantee_id}", now=now,
            member=get_member(session, share.guarantor_id),
            data={"sacco": deps.sacco_name, "first_name": first_name(borrower.full_name),
                  "loan": loan.reference,
                  "amount": format_cents(share.share_cents),
                  "pledge": format_cents(share.pledge_cents)},
        )  # fmt: skip
