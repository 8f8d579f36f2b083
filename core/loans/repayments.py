"""Loan repayments (issue 12, part 8; docs/loans/repayment.md): the ONE use case every
source of a repayment calls.

``repay_loan(session, deps, Repayment(...))`` is called by the M-Pesa paybill (a loan
reference as the account), the STK push started from the USSD Loans menu and staff moving
a parked payment out of suspense (``core.payments.mpesa.flows``, source ``mpesa``; from
suspense, ``from_suspense``), the USSD "repay from savings" screen
(source ``savings``) and the teller (``POST /api/v1/loans/{id}/repayments``, source
``cash``). It:

1. splits the amount (``allocate``, pure) in the order of the loan's product version
   (``allocation_order``; by default penalties -> fees -> interest -> principal, part by
   part over the instalments due on or before today, oldest first); then, as a
   prepayment, what the instalments not yet due owe, in the same order. Of their
   interest, only what the product's ``early_payoff_interest`` rule charges is taken
   (by default none: it is waived when the loan is paid off). Whatever is beyond what
   would pay the loan off goes to the member's savings;
2. posts one balanced entry (``EntryKind.LOAN_REPAYMENT``, keyed by the repayment's
   idempotency key): the source (M-Pesa collections float, bank for teller cash, the
   member's savings) debited; the loan's account credited with the principal, interest
   receivable or income (``settlement_legs``), fee income and penalty receivable with
   theirs. First the loan's interest and penalties are brought up to yesterday
   (``close_of_day.catch_up_loan``), so the penalty it owes is paid first;
3. updates the instalments; credits an overpayment to savings through
   ``core.savings.accounts.credit_member`` (same unit of work); closes the loan at zero;
   gives back guarantors' pledges by the product's ``pledge_release``
   (``core.loans.pledges``);
4. tells the member (``loan_repayment`` with the new balance, or ``loan_repaid`` when it
   closes), partners (``loan.repaid`` webhook event) and, when a person took the money,
   the audit log (``loan.repayment``).

The same idempotency key again returns the first repayment and writes nothing. A
repayment to a closed loan goes to savings (``credit_member``) with an SMS saying so
(``loan_closed_to_savings``); from savings it is refused. Every refusal is raised before
the first write (but the catch-up's, bookkeeping that holds whatever the repayment; a
refusal rolls it back with the rest). Never commits (``core.kernel.uow``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import IdempotencyConflict, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans import close_of_day, pledges
from core.loans.errors import LoanStateError
from core.loans.facts import free_deposits_cents
from core.loans.pledges import tell_pledge_released
from core.loans.references import normalize_loan_reference
from core.loans.terms import version_terms
from core.loans.vocabulary import (
    PAYING_SOURCES,
    AllocationOrder,
    EarlyPayoffInterest,
    GuaranteeStatus,
    LoanPart,
    LoanStatus,
    RepaymentSource,
)
from core.members.registration import get_member, member_account_ids
from core.members.status import may_deposit
from core.messaging.notifications import notify
from core.messaging.webhooks import publish_event
from core.savings.accounts import Credit, CreditSource, credit_member
from core.savings.rules import check_keeps_minimum
from db.models import JournalEntry, Member
from db.models_loans import (
    Loan,
    LoanApplication,
    LoanInstalment,
    LoanRepayment,
    LoanWriteOff,
)

# Each allocation order (docs/loans/repayment.md): instalment by instalment (True) or part
# by part across the instalments (False), and the parts in the order they are paid.
ORDERS: dict[AllocationOrder, tuple[bool, tuple[LoanPart, ...]]] = {
    AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL: (
        False,
        (LoanPart.PENALTY, LoanPart.FEE, LoanPart.INTEREST, LoanPart.PRINCIPAL),
    ),
    AllocationOrder.OLDEST_INSTALMENT_FIRST: (
        True,
        (LoanPart.PENALTY, LoanPart.FEE, LoanPart.INTEREST, LoanPart.PRINCIPAL),
    ),
    AllocationOrder.INTEREST_PRINCIPAL_PENALTIES_FEES: (
        True,
        (LoanPart.INTEREST, LoanPart.PRINCIPAL, LoanPart.PENALTY, LoanPart.FEE),
    ),
}
DEFAULT_ORDER = AllocationOrder.PENALTIES_FEES_INTEREST_PRINCIPAL
DEFAULT_PAYOFF = EarlyPayoffInterest.WAIVE
KEY_RE = re.compile(r"[A-Za-z0-9._:-]{8,110}")  # room for ":savings" (the ledger takes 120)

_SOURCE_ACCOUNT = {
    RepaymentSource.MPESA: SystemAccount.MPESA_COLLECTIONS_FLOAT,
    RepaymentSource.CASH: SystemAccount.BANK,
    RepaymentSource.CHECKOFF: SystemAccount.CHECKOFF_CLEARING,
}
_CREDIT_SOURCE = {
    RepaymentSource.MPESA: CreditSource.MPESA,
    RepaymentSource.CASH: CreditSource.CASH,
    RepaymentSource.CHECKOFF: CreditSource.CHECKOFF,
}


# ------------------------------------------------------------------ the pure allocation


@dataclass(frozen=True)
class Owed:
    """What is still unpaid of one instalment; ``due``: on or before the repayment's day."""

    number: int
    due: bool
    penalty_cents: int
    fee_cents: int
    interest_cents: int
    principal_cents: int

    def part(self, part: LoanPart) -> int:
        return {
            LoanPart.PENALTY: self.penalty_cents,
            LoanPart.FEE: self.fee_cents,
            LoanPart.INTEREST: self.interest_cents,
            LoanPart.PRINCIPAL: self.principal_cents,
        }[part]


@dataclass(frozen=True)
class InstalmentPaid:
    number: int
    penalty_cents: int = 0
    fee_cents: int = 0
    interest_cents: int = 0
    principal_cents: int = 0
    waived_interest_cents: int = 0


@dataclass(frozen=True)
class Allocation:
    """How one repayment splits. ``loan_cents + to_savings_cents`` is the amount."""

    penalty_cents: int
    fee_cents: int
    interest_cents: int
    principal_cents: int
    waived_interest_cents: int
    to_savings_cents: int
    closes: bool  # nothing is left to pay: the loan closes
    instalments: tuple[InstalmentPaid, ...] = field(default=())

    @property
    def loan_cents(self) -> int:
        return self.penalty_cents + self.fee_cents + self.interest_cents + self.principal_cents

    def cents(self, part: LoanPart) -> int:
        return {
            LoanPart.PENALTY: self.penalty_cents,
            LoanPart.FEE: self.fee_cents,
            LoanPart.INTEREST: self.interest_cents,
            LoanPart.PRINCIPAL: self.principal_cents,
        }[part]


def _charged(o: Owed, part: LoanPart, rule: EarlyPayoffInterest, current: int | None) -> bool:
    """Whether paying the loan off today pays this part of this instalment: all of what
    is due; of an instalment not yet due, all but its interest, which ``rule`` charges
    for none, the instalment in progress (``current``: the first not yet due) or all."""
    if o.due or part != LoanPart.INTEREST:
        return True
    if rule == EarlyPayoffInterest.CHARGE_ALL:
        return True
    return rule == EarlyPayoffInterest.CHARGE_CURRENT_PERIOD and o.number == current


def _in_progress(rows: Sequence[Owed]) -> int | None:
    """The instalment in progress: the first not yet due (None once all are due)."""
    return min((o.number for o in rows if not o.due), default=None)


def slots(
    owed: Sequence[Owed],
    order: AllocationOrder = DEFAULT_ORDER,
    early_payoff: EarlyPayoffInterest = DEFAULT_PAYOFF,
) -> list[tuple[int, LoanPart]]:
    """(instalment, part) in the order a repayment pays them: first the instalments due,
    then those not yet due (a prepayment), each group in ``order``; a part an early
    payoff does not charge (``early_payoff``) is never a slot."""
    by_instalment, parts = ORDERS[order]
    rows = sorted(owed, key=lambda o: o.number)
    current = _in_progress(rows)
    out: list[tuple[int, LoanPart]] = []
    for group in ([o for o in rows if o.due], [o for o in rows if not o.due]):
        if by_instalment:
            pairs = [(o, p) for o in group for p in parts]
        else:
            pairs = [(o, p) for p in parts for o in group]
        out += [(o.number, p) for o, p in pairs if _charged(o, p, early_payoff, current)]
    return out


def payoff_cents(owed: Sequence[Owed], early_payoff: EarlyPayoffInterest = DEFAULT_PAYOFF) -> int:
    """What pays the loan off today: everything due, and what the instalments not yet due
    owe but the interest ``early_payoff`` does not charge (by default, all of it)."""
    current = _in_progress(owed)
    return sum(o.part(p) for o in owed for p in LoanPart if _charged(o, p, early_payoff, current))


def allocate(
    owed: Sequence[Owed],
    amount_cents: int,
    order: AllocationOrder = DEFAULT_ORDER,
    early_payoff: EarlyPayoffInterest = DEFAULT_PAYOFF,
) -> Allocation:
    """Split ``amount_cents`` over the unpaid instalments (see the module): slot by slot
    (``slots``), each taking what it owes while money is left; the rest to savings. When
    every slot is paid the loan is paid off, and the interest of instalments not yet due
    that ``early_payoff`` does not charge is waived."""
    if amount_cents < 0:
        raise ValueError("amount must not be negative")
    rows = sorted(owed, key=lambda o: o.number)
    by_number = {o.number: o for o in rows}
    order_slots = slots(rows, order, early_payoff)
    taken: dict[int, dict[LoanPart, int]] = {o.number: {} for o in rows}
    remaining = amount_cents
    closes = True
    for number, part in order_slots:
        owes = by_number[number].part(part)
        take = min(remaining, owes)
        if take:
            taken[number][part] = take
            remaining -= take
        if take < owes:
            closes = False
    paid = []
    for o in rows:
        t = taken[o.number]
        waived = o.interest_cents - t.get(LoanPart.INTEREST, 0) if closes and not o.due else 0
        if t or waived:
            paid.append(
                InstalmentPaid(
                    o.number,
                    penalty_cents=t.get(LoanPart.PENALTY, 0),
                    fee_cents=t.get(LoanPart.FEE, 0),
                    interest_cents=t.get(LoanPart.INTEREST, 0),
                    principal_cents=t.get(LoanPart.PRINCIPAL, 0),
                    waived_interest_cents=waived,
                )
            )
    return Allocation(
        penalty_cents=sum(p.penalty_cents for p in paid),
        fee_cents=sum(p.fee_cents for p in paid),
        interest_cents=sum(p.interest_cents for p in paid),
        principal_cents=sum(p.principal_cents for p in paid),
        waived_interest_cents=sum(p.waived_interest_cents for p in paid),
        to_savings_cents=remaining,
        closes=closes,
        instalments=tuple(paid),
    )


# ------------------------------------------------------------------ reading a loan


def owed_rows(
    instalments: Sequence[LoanInstalment], today: date, penalty_cents: int = 0
) -> list[Owed]:
    """The unpaid parts of a loan's instalments on ``today``. The loan's penalties
    (``penalty_cents``: charged by close of day, per loan, on its arrears) are owed with
    the oldest instalment due and not fully paid (the arrears they were charged on; the
    last one due when all are paid), so every allocation order takes them where it names
    penalties."""
    rows = [
        Owed(
            number=i.number,
            due=i.due_on <= today,
            penalty_cents=0,
            fee_cents=i.fee_cents - i.paid_fee_cents,
            interest_cents=i.interest_cents - i.paid_interest_cents - i.waived_interest_cents,
            principal_cents=i.principal_cents - i.paid_principal_cents,
        )
        for i in instalments
    ]
    if penalty_cents and rows:
        due = [o for o in rows if o.due] or rows[:1]
        home = next((o for o in due if _total(o)), due[-1])
        rows[rows.index(home)] = dataclasses.replace(home, penalty_cents=penalty_cents)
    return rows


def owed_of(
    session: Session, loan: Loan, rows: Sequence[LoanInstalment], today: date
) -> list[Owed]:
    """``owed_rows`` with the loan's penalties owed (``close_of_day.penalty_owed_cents``)."""
    return owed_rows(rows, today, close_of_day.penalty_owed_cents(session, loan.id))


def instalments_of(session: Session, loan_id: int, *, lock: bool = False) -> list[LoanInstalment]:
    query = (
        select(LoanInstalment)
        .where(LoanInstalment.loan_id == loan_id)
        .order_by(LoanInstalment.number)
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Position:
    """Where a loan stands today, for a member's screen or staff."""

    loan_id: int
    reference: str
    status: str
    principal_cents: int
    principal_outstanding_cents: int  # the loan account's balance
    arrears_cents: int  # due before today and unpaid
    due_now_cents: int  # due on or before today and unpaid (arrears included)
    payoff_cents: int  # what would close the loan today
    next_due_on: date | None  # the first instalment not fully paid
    next_due_cents: int


def position(session: Session, deps: CoreDeps, loan_id: int) -> Position:
    """The loan's balance, arrears, payoff and next instalment today (``NotFound``)."""
    loan = session.get(Loan, loan_id)
    if loan is None:
        raise NotFound("no such loan")
    today = business_date(deps.now())
    rows = instalments_of(session, loan.id)
    owed = owed_of(session, loan, rows, today)
    _, early_payoff = rules_of(session, loan)
    unpaid = [
        (i, o)
        for i, o in zip(rows, owed, strict=True)
        if o.fee_cents + o.interest_cents + o.principal_cents + o.penalty_cents
    ]
    nxt = unpaid[0] if unpaid else None
    return Position(
        loan_id=loan.id,
        reference=loan.reference,
        status=loan.status,
        principal_cents=loan.principal_cents,
        principal_outstanding_cents=ledger.get_balance(session, loan.account_id).balance_cents,
        arrears_cents=sum(_total(o) for i, o in unpaid if i.due_on < today),
        due_now_cents=sum(_total(o) for o in owed if o.due),
        payoff_cents=payoff_cents(owed, early_payoff) if loan.status == LoanStatus.ACTIVE else 0,
        next_due_on=nxt[0].due_on if nxt else None,
        next_due_cents=_total(nxt[1]) if nxt else 0,
    )


def rules_of(session: Session, loan: Loan) -> tuple[AllocationOrder, EarlyPayoffInterest]:
    """The allocation order and early-payoff rule of the product version the loan was
    made under (a later version of the product never changes them)."""
    terms = version_terms(session, loan.product_version_id)
    return terms.allocation_order, terms.early_payoff_interest


def _total(o: Owed) -> int:
    return o.penalty_cents + o.fee_cents + o.interest_cents + o.principal_cents


# ------------------------------------------------------------------ the use case


@dataclass(frozen=True)
class Repayment:
    """One repayment, from any source. Give ``loan_id`` or ``reference``.

    ``idempotency_key`` (8-110 of letters, digits, ``. _ : -``) keys the ledger entry:
    M-Pesa passes ``mpesa:receipt:<receipt>``, the teller ``cash:<Idempotency-Key>``, USSD
    its session. ``business_key`` keys the SMS and the webhook event. ``member_id``, when
    given, must be the loan's borrower (a member repaying from their own phone).
    ``actor``: the member of staff who took the money (audited); None for M-Pesa and the
    member's own channels."""

    amount_cents: int
    source: RepaymentSource
    idempotency_key: str
    business_key: str
    loan_id: int | None = None
    reference: str | None = None
    receipt: str | None = None
    actor: Principal | None = None
    member_id: int | None = None
    # M-Pesa money that was parked in suspense (2200) and that staff assign to the loan
    # (``core.payments.mpesa.flows.assign_suspense``): the entry debits suspense, not the
    # float, and an overpayment reaches savings from suspense. Only with source ``mpesa``.
    from_suspense: bool = False


@dataclass(frozen=True)
class Repaid:
    repayment_id: int
    loan_id: int
    loan_reference: str
    amount_cents: int
    penalty_cents: int
    fee_cents: int
    interest_cents: int
    principal_cents: int
    waived_interest_cents: int
    to_savings_cents: int
    balance_after_cents: int  # what would pay the loan off after this repayment
    closed: bool  # the loan is closed (by this repayment, or was already)
    entry_reference: str | None  # the repayment's entry (None: all of it went to savings)
    savings_entry_reference: str | None
    created: bool  # False: this key was seen before and nothing was written
    entry_id: int | None = None
    savings_entry_id: int | None = None
    recovery_cents: int = 0  # paid on a written-off loan, to recoveries income


def _check(r: Repayment) -> None:
    amount = r.amount_cents
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidInput("amount must be a whole number of cents", field="amount_cents",
                           reason="format")  # fmt: skip
    if amount <= 0:
        raise InvalidInput("amount must be more than zero", field="amount_cents", reason="range")
    if amount > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("amount too large", field="amount_cents", reason="too_large")
    if r.source not in PAYING_SOURCES:  # a top-up settles its old loan itself (top_ups)
        raise InvalidInput("source must be mpesa, savings, cash or checkoff", field="source")
    for name, key in (("idempotency_key", r.idempotency_key), ("business_key", r.business_key)):
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise InvalidInput(f"{name}: 8-110 of letters, digits, . _ : -", field=name,
                               reason="required")  # fmt: skip
    if r.loan_id is None and r.reference is None:
        raise InvalidInput("a loan id or reference is needed", field="loan")
    if r.from_suspense and r.source != RepaymentSource.MPESA:
        raise InvalidInput("only M-Pesa money waits in suspense", field="source")


def _credit_source(r: Repayment) -> CreditSource:
    """Where money beyond the loan comes from, as ``credit_member`` names it."""
    return CreditSource.SUSPENSE if r.from_suspense else _CREDIT_SOURCE[r.source]


def _lock_loan(session: Session, r: Repayment) -> Loan:
    query = select(Loan)
    if r.loan_id is not None:
        if isinstance(r.loan_id, bool) or not isinstance(r.loan_id, int):
            raise NotFound("no such loan")
        query = query.where(Loan.id == r.loan_id)
    else:
        reference = normalize_loan_reference(r.reference)
        if reference is None:
            raise NotFound("no such loan")
        query = query.where(Loan.reference == reference)
    # FOR NO KEY UPDATE: repayments of one loan still queue on its row, but close of day's
    # foreign-key checks on the loan (FOR KEY SHARE, when it writes the loan's state row)
    # never wait for a repayment that waits for that state row (a deadlock otherwise).
    loan = session.scalar(
        query.with_for_update(key_share=True).execution_options(populate_existing=True)
    )
    if loan is None or (r.member_id is not None and loan.member_id != r.member_id):
        raise NotFound("no such loan")
    return loan


def find_loan(session: Session, reference: str) -> Loan | None:
    """The loan with this reference as a member types it (any case, ``-`` or spaces)."""
    normalized = normalize_loan_reference(reference)
    if normalized is None:
        return None
    return session.scalar(select(Loan).where(Loan.reference == normalized))


def _earlier(session: Session, loan: Loan, r: Repayment) -> Repaid | None:
    row = session.scalar(
        select(LoanRepayment).where(LoanRepayment.idempotency_key == r.idempotency_key)
    )
    if row is None:
        return None
    if (row.loan_id, row.amount_cents, row.source) != (loan.id, r.amount_cents, r.source):
        raise IdempotencyConflict(
            "this idempotency key was already used for another repayment",
            idempotency_key=r.idempotency_key,
        )
    return _repaid(session, loan, row, created=False)


def _repaid(session: Session, loan: Loan, row: LoanRepayment, *, created: bool) -> Repaid:
    def ref(entry_id: int | None) -> str | None:
        if entry_id is None:
            return None
        return session.scalar(select(JournalEntry.reference).where(JournalEntry.id == entry_id))

    return Repaid(
        repayment_id=row.id,
        loan_id=loan.id,
        loan_reference=loan.reference,
        amount_cents=row.amount_cents,
        penalty_cents=row.penalty_cents,
        fee_cents=row.fee_cents,
        interest_cents=row.interest_cents,
        principal_cents=row.principal_cents,
        waived_interest_cents=row.waived_interest_cents,
        to_savings_cents=row.to_savings_cents,
        balance_after_cents=row.balance_after_cents,
        closed=loan.status == LoanStatus.CLOSED,
        entry_reference=ref(row.entry_id),
        savings_entry_reference=ref(row.savings_entry_id),
        created=created,
        entry_id=row.entry_id,
        savings_entry_id=row.savings_entry_id,
        recovery_cents=row.recovery_cents,
    )


def repay_loan(session: Session, deps: CoreDeps, repayment: Repayment) -> Repaid:
    """Repay a loan from any source (see the module). Refusals, before any write:
    ``InvalidInput`` (amount 0, negative, not an int, above the ledger's maximum; source;
    keys), ``NotFound`` (loan, or not this member's), ``InsufficientFunds`` (savings),
    ``LoanStateError`` (``closed`` or ``more_than_owed`` from savings; a written-off loan
    takes a recovery: ``_recover``),
    ``MemberNotAllowed`` (money for the savings of a member who may not deposit),
    ``IdempotencyConflict``."""
    _check(repayment)
    loan = _lock_loan(session, repayment)
    earlier = _earlier(session, loan, repayment)
    if earlier is not None:
        return earlier
    member = get_member(session, loan.member_id)
    if loan.status == LoanStatus.WRITTEN_OFF:
        return _recover(session, deps, loan, member, repayment)
    if loan.status == LoanStatus.CLOSED:
        return _to_savings_of_closed_loan(session, deps, loan, member, repayment)
    now = deps.now()
    today = business_date(now)
    close_of_day.catch_up_loan(session, deps, loan.id)  # before the instalments: lock order
    rows = instalments_of(session, loan.id, lock=True)
    order, early_payoff = rules_of(session, loan)
    owed = owed_of(session, loan, rows, today)
    split = allocate(owed, repayment.amount_cents, order, early_payoff)
    if split.to_savings_cents:
        _check_beyond(
            member, repayment, f"the {format_cents(split.loan_cents)} that pays this loan off"
        )
    posted = _post(session, deps, loan, split, repayment, today)
    mark_paid(rows, split)
    savings_entry_id = None
    if split.to_savings_cents:
        credited = credit_member(
            session, deps,
            Credit(
                member_id=member.id, target="savings", amount_cents=split.to_savings_cents,
                source=_credit_source(repayment),
                idempotency_key=f"{repayment.idempotency_key}:savings",
                business_key=f"{repayment.business_key}:savings",
                memo=f"Loan {loan.reference} overpaid", receipt=repayment.receipt,
                actor=repayment.actor, template="loan_overpaid_to_savings",
                notice={"loan": loan.reference},
            ),
        )  # fmt: skip
        savings_entry_id = credited.posted.entry_id
    if split.closes:
        loan.status = LoanStatus.CLOSED
        loan.closed_at = now
    session.flush()
    balance = (
        payoff_cents(owed_of(session, loan, rows, today), early_payoff) if not split.closes else 0
    )
    record = LoanRepayment(
        loan_id=loan.id,
        idempotency_key=repayment.idempotency_key,
        business_key=repayment.business_key,
        source=repayment.source,
        amount_cents=repayment.amount_cents,
        penalty_cents=split.penalty_cents,
        fee_cents=split.fee_cents,
        interest_cents=split.interest_cents,
        principal_cents=split.principal_cents,
        waived_interest_cents=split.waived_interest_cents,
        to_savings_cents=split.to_savings_cents,
        balance_after_cents=balance,
        entry_id=posted.entry_id if posted is not None else None,
        savings_entry_id=savings_entry_id,
        receipt=repayment.receipt,
        closed_loan=split.closes,
        value_date=today,
        created_at=now,
    )
    session.add(record)
    session.flush()
    release_pledges(session, deps, loan)
    repaid = _repaid(session, loan, record, created=True)
    _tell(session, deps, loan, member, repayment, repaid)
    return repaid


def _check_beyond(member: Member, r: Repayment, owed: str) -> None:
    """Money beyond what the loan takes goes to savings: refused from savings
    (``more_than_owed``) and for a member who may not deposit."""
    if r.source == RepaymentSource.SAVINGS:
        raise LoanStateError(f"more than {owed}", reason="more_than_owed")
    if not may_deposit(member.status):
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)


def _source_id(session: Session, loan: Loan, r: Repayment, amount_cents: int) -> int:
    """The account the repayment's money comes from. From savings, the savings product's
    minimum balance stays (``core.savings.rules.check_keeps_minimum``)."""
    if r.source == RepaymentSource.SAVINGS:
        savings = member_account_ids(session, loan.member_id)[Purpose.SAVINGS]
        check_keeps_minimum(session, savings, amount_cents)
        return savings
    if r.from_suspense:
        return ledger.account_id_by_code(session, SystemAccount.SUSPENSE)
    return ledger.account_id_by_code(session, _SOURCE_ACCOUNT[r.source])


def _post(
    session: Session, deps: CoreDeps, loan: Loan, split: Allocation, r: Repayment, today: date
) -> ledger.PostedEntry | None:
    """The repayment's one balanced entry (none when all of it goes to savings)."""
    if split.loan_cents == 0:
        return None
    legs = [
        ledger.Leg(_source_id(session, loan, r, split.loan_cents), split.loan_cents),
        *settlement_legs(session, loan, split),
    ]
    return ledger.post_entry(
        session,
        kind=EntryKind.LOAN_REPAYMENT,
        legs=legs,
        idempotency_key=r.idempotency_key,
        now=deps.now(),
        value_date=today,
        memo=(
            f"Loan {loan.reference} repayment"
            + (" from suspense" if r.from_suspense else "")
            + (f" M-Pesa {r.receipt}" if r.receipt else "")
        ),
    )


def mark_paid(rows: Sequence[LoanInstalment], split: Allocation) -> None:
    """What ``split`` paid (and waived) of each instalment, added to its row. After
    ``settlement_legs``, which reads the rows as they were."""
    by_number = {i.number: i for i in rows}
    for paid in split.instalments:
        row = by_number[paid.number]
        row.paid_fee_cents += paid.fee_cents
        row.paid_interest_cents += paid.interest_cents
        row.paid_principal_cents += paid.principal_cents
        row.waived_interest_cents += paid.waived_interest_cents


def settlement_legs(session: Session, loan: Loan, split: Allocation) -> list[ledger.Leg]:
    """The credit legs of what ``split`` pays of ``loan``: the loan's account with the
    principal, penalty receivable with the penalties (close of day charged them; the
    loan's figure is lowered: ``close_of_day.pay_penalty``), fee income with the fees, and the interest split by what close of
    day has accrued: accrued interest settles interest receivable, interest not accrued yet
    is income now, and accrued interest an early payoff waives leaves income again
    (``close_of_day.recognise_repayment``; docs/loans/close-of-day.md). A repayment's entry
    (``_post``) and a top-up's disbursement entry (``core.loans.top_ups``) both use them.
    Call it before the instalments' ``paid_*`` change."""
    legs = []
    if split.principal_cents:
        legs.append(ledger.Leg(loan.account_id, -split.principal_cents))
    interest_income = close_of_day.recognise_repayment(
        session, loan.id, loan.disbursed_on,
        {p.number: (p.interest_cents, p.waived_interest_cents) for p in split.instalments},
    )  # fmt: skip
    close_of_day.pay_penalty(session, loan.id, split.penalty_cents)
    credits = {
        SystemAccount.PENALTY_RECEIVABLE: split.penalty_cents,
        SystemAccount.FEE_INCOME: split.fee_cents,
        SystemAccount.LOAN_INTEREST_INCOME: interest_income,
        SystemAccount.INTEREST_RECEIVABLE: split.interest_cents - interest_income,
    }
    for code, cents in credits.items():
        if cents:
            legs.append(ledger.Leg(ledger.account_id_by_code(session, code), -cents))
    return legs


def _to_savings_of_closed_loan(
    session: Session, deps: CoreDeps, loan: Loan, member: Member, r: Repayment
) -> Repaid:
    """Money for a loan already repaid: all of it to the member's savings, with an SMS
    that says so (``loan_closed_to_savings``, in place of the deposit receipt)."""
    if r.source == RepaymentSource.SAVINGS:
        raise LoanStateError("this loan is already repaid", reason="closed")
    if not may_deposit(member.status):
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    now = deps.now()
    credited = credit_member(
        session, deps,
        Credit(
            member_id=member.id, target="savings", amount_cents=r.amount_cents,
            source=_credit_source(r), idempotency_key=r.idempotency_key,
            business_key=r.business_key, memo=f"Loan {loan.reference} already repaid",
            receipt=r.receipt, actor=r.actor, template="loan_closed_to_savings",
            notice={"loan": loan.reference},
        ),
    )  # fmt: skip
    record = LoanRepayment(
        loan_id=loan.id,
        idempotency_key=r.idempotency_key,
        business_key=r.business_key,
        source=r.source,
        amount_cents=r.amount_cents,
        penalty_cents=0,
        fee_cents=0,
        interest_cents=0,
        principal_cents=0,
        waived_interest_cents=0,
        to_savings_cents=r.amount_cents,
        balance_after_cents=0,
        entry_id=None,
        savings_entry_id=credited.posted.entry_id,
        receipt=r.receipt,
        closed_loan=False,
        value_date=business_date(now),
        created_at=now,
    )
    session.add(record)
    session.flush()
    repaid = _repaid(session, loan, record, created=True)
    _publish(session, deps, loan, member, r, repaid)
    return repaid


def _recover(session: Session, deps: CoreDeps, loan: Loan, member: Member, r: Repayment) -> Repaid:
    """Money for a written-off loan (docs/loans/write-off-and-rescheduling.md): up to what
    is still to recover of what was written off goes to recoveries income (4300) in one
    ``loan.recovery`` entry, the loan's ``recovered_cents`` grows; anything beyond goes to
    savings as an overpayment (refused from savings: ``more_than_owed``). Receipt SMS
    ``loan_recovery``; audited when a person took the money."""
    written_off = session.scalars(
        select(LoanWriteOff).where(LoanWriteOff.loan_id == loan.id).with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()  # fmt: skip
    if written_off is None:  # marked written off before write-offs were recorded (0024)
        raise LoanStateError("this loan was written off: see the office", reason="written_off")
    recovery = min(r.amount_cents, written_off.recoverable_cents)
    beyond = r.amount_cents - recovery
    if beyond:
        _check_beyond(member, r, f"the {format_cents(recovery)} still owed on this loan")
    now = deps.now()
    today = business_date(now)
    posted = None
    if recovery:
        recoveries = ledger.account_id_by_code(session, SystemAccount.RECOVERIES_INCOME)
        posted = ledger.post_entry(
            session, kind=EntryKind.LOAN_RECOVERY,
            legs=[ledger.Leg(_source_id(session, loan, r, recovery), recovery),
                  ledger.Leg(recoveries, -recovery)],
            idempotency_key=r.idempotency_key, now=now, value_date=today,
            memo=f"Loan {loan.reference} recovery after write-off"
            + (f" M-Pesa {r.receipt}" if r.receipt else ""),
        )  # fmt: skip
        written_off.recovered_cents += recovery
    savings_entry_id = None
    if beyond:
        credited = credit_member(
            session, deps,
            Credit(
                member_id=member.id, target="savings", amount_cents=beyond,
                source=_credit_source(r), idempotency_key=f"{r.idempotency_key}:savings",
                business_key=f"{r.business_key}:savings", memo=f"Loan {loan.reference} overpaid",
                receipt=r.receipt, actor=r.actor, template="loan_overpaid_to_savings",
                notice={"loan": loan.reference},
            ),
        )  # fmt: skip
        savings_entry_id = credited.posted.entry_id
    record = LoanRepayment(
        loan_id=loan.id, idempotency_key=r.idempotency_key, business_key=r.business_key,
        source=r.source, amount_cents=r.amount_cents, penalty_cents=0, fee_cents=0,
        interest_cents=0, principal_cents=0, waived_interest_cents=0, recovery_cents=recovery,
        to_savings_cents=beyond, balance_after_cents=written_off.recoverable_cents,
        entry_id=posted.entry_id if posted is not None else None,
        savings_entry_id=savings_entry_id, receipt=r.receipt, closed_loan=False,
        value_date=today, created_at=now,
    )  # fmt: skip
    session.add(record)
    session.flush()
    repaid = _repaid(session, loan, record, created=True)
    if recovery:
        notify(
            session, template="loan_recovery", business_key=r.business_key, now=now,
            member=member,
            data={"sacco": deps.sacco_name, "amount": format_cents(recovery),
                  "loan": loan.reference, "reference": repaid.entry_reference or "-",
                  "balance": format_cents(written_off.recoverable_cents)},
        )  # fmt: skip
    _publish(session, deps, loan, member, r, repaid)
    if r.actor is not None:
        audit.record(
            session, r.actor, "loan.recovery", target_type="loan", target_id=loan.id,
            after={"reference": loan.reference, "amount_cents": r.amount_cents,
                   "source": str(r.source), "recovery_cents": recovery,
                   "to_savings_cents": beyond, "entry": repaid.entry_reference},
            now=now,
        )  # fmt: skip
    return repaid


def release_pledges(session: Session, deps: CoreDeps, loan: Loan) -> None:
    """Give back what the product's ``pledge_release`` frees now (core.loans.pledges): all
    of every pledge once the loan is closed; each guarantor whose pledge is released in
    full is told (``guarantee_released``)."""
    guarantees = pledges.loan_guarantees(session, loan.id)
    if not guarantees:
        return
    now = deps.now()
    outstanding = (
        0
        if loan.status == LoanStatus.CLOSED
        else ledger.get_balance(session, loan.account_id).balance_cents
    )
    rule = version_terms(session, loan.product_version_id).pledge_release
    own = free_deposits_cents(session, loan.member_id)
    application = session.get_one(LoanApplication, loan.application_id)
    for guarantee in guarantees:
        keep = pledges.held_pledge_cents(
            guarantee.amount_cents, loan.principal_cents, outstanding,
            release_rule=rule, own_free_deposits_cents=own,
        )  # fmt: skip
        if keep == 0:
            pledges.release(session, guarantee, status=GuaranteeStatus.RELEASED, now=now)
            session.flush()
            tell_pledge_released(session, deps, guarantee, application)
        else:
            pledges.reduce(session, guarantee, keep, now=now)
    session.flush()


def _tell(
    session: Session, deps: CoreDeps, loan: Loan, member: Member, r: Repayment, repaid: Repaid
) -> None:
    notify(
        session,
        template="loan_repaid" if repaid.closed else "loan_repayment",
        business_key=r.business_key,
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "amount": format_cents(repaid.amount_cents - repaid.to_savings_cents),
            "loan": loan.reference,
            "receipt": r.receipt or "-",
            "reference": repaid.entry_reference or "-",
            "balance": format_cents(repaid.balance_after_cents),
        },
    )
    _publish(session, deps, loan, member, r, repaid)
    if r.actor is not None:
        audit.record(
            session, r.actor, "loan.repayment", target_type="loan", target_id=loan.id,
            after={"reference": loan.reference, "amount_cents": repaid.amount_cents,
                   "source": str(r.source), "principal_cents": repaid.principal_cents,
                   "interest_cents": repaid.interest_cents, "fee_cents": repaid.fee_cents,
                   "to_savings_cents": repaid.to_savings_cents,
                   "entry": repaid.entry_reference, "closed": repaid.closed},
            now=deps.now(),
        )  # fmt: skip


def _publish(
    session: Session, deps: CoreDeps, loan: Loan, member: Member, r: Repayment, repaid: Repaid
) -> None:
    publish_event(
        session,
        event_type="loan.repaid",
        event_id=r.business_key,
        now=deps.now(),
        data={
            "member_number": member.member_number,
            "loan": loan.reference,
            "amount_cents": repaid.amount_cents,
            "source": str(r.source),
            "mpesa_receipt": r.receipt,
            "reference": repaid.entry_reference,
            "penalty_cents": repaid.penalty_cents,
            "fee_cents": repaid.fee_cents,
            "interest_cents": repaid.interest_cents,
            "principal_cents": repaid.principal_cents,
            "waived_interest_cents": repaid.waived_interest_cents,
            "to_savings_cents": repaid.to_savings_cents,
            "balance_cents": repaid.balance_after_cents,
            "closed": repaid.closed,
        },
    )
