"""M-Pesa money flows: deposits (STK push, paybill), withdrawals (B2C), suspense,
the SIM-swap guard and reconciliation. No Flask, no HTTP: the Daraja and SIM-swap
clients live in ``integrations/`` and are called by ``workers/`` or passed in.

Exactly-once, whatever Safaricom does (late, twice, out of order, never):

* every callback is stored raw first (``store_callback``), in its own transaction;
* an STK request row exists before the push is sent; its callback is matched on
  ``CheckoutRequestID`` under a row lock; a paybill payment's row (unique ``trans_id``)
  is inserted first, so a repeated confirmation stops there;
* one receipt, one credit: whichever path brings an M-Pesa receipt first (STK callback
  or paybill confirmation) inserts it into ``mpesa_receipts`` (primary key: the receipt)
  before crediting, and the other path waits on that insert and credits nothing; the
  entry is keyed ``mpesa:receipt:<receipt>`` on both paths. A push settled by the status
  query has no receipt (key ``mpesa:stk:<CheckoutRequestID>``): a paybill payment that
  may be the same one (member, amount, ``twin_window``) is parked for staff, not
  credited, whichever of the two comes second;
* a withdrawal holds amount + fee on savings and stores the payout row with OUR
  ``OriginatorConversationID`` before Daraja is called. The result posts the hold
  (savings -> disbursement float + fee income) or releases it; a queue timeout or
  an unknown outcome keeps the hold until a result or a status query says.
* a payout is sent again by itself only when its request provably never left (no
  connection, our own credentials refused). Daraja is not known for certain to refuse
  a repeated OriginatorConversationID, and paying twice for one debit is worse than
  paying late: a payout that may have reached Daraja (a worker that died during the
  call, a "not found" status answer) waits for its result or a status answer, and
  otherwise for staff (``review``; maker-checker ``payout.resolve``: resend, release,
  or record it paid).

Each verb takes the caller's session as its unit of work (``core.kernel.uow``).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session

from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.identity import mask_msisdn
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.kernel.uow import keep
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans.errors import LoanStateError
from core.loans.repayments import Repayment, find_loan, position, repay_loan
from core.loans.vocabulary import LoanStatus, RepaymentSource
from core.members import death
from core.members import exit as member_exit
from core.members.registration import get_member, member_account_ids
from core.members.status import MemberStatus, check_may_deposit, may_deposit
from core.messaging.notifications import notify
from core.messaging.webhooks import publish_event
from core.payments.mpesa.jobs import SendB2C, SendStkPush
from core.payments.mpesa.rules import (
    CENTS,
    LimitExceeded,
    MpesaPolicy,
    SimSwapBlocked,
    SimSwapDailyCapReached,
    WithdrawalQuote,
    account_reference,
    check_deposit_amount,
    parse_bill_ref,
    parse_loan_ref,
    quote,
    sim_swap_decision,
)
from core.payments.mpesa.vocabulary import (
    C2BStatus,
    CallbackStatus,
    PayoutStatus,
    StkStatus,
    SuspenseStatus,
)
from core.risk.sim_swap import SimSwapAssessment, SimSwapChecker, SimSwapResultLike
from core.risk.sim_swap import assess as assess_sim_swap
from core.risk.vocabulary import SimSwapDecision, SimSwapOutcome
from core.savings import rules as savings_rules
from core.savings.accounts import ACCOUNT_LABELS, Credit, CreditSource, credit_member
from core.savings.dormancy import check_not_dormant
from core.savings.member_accounts import account_for_target, holds_target, is_product_target
from core.staff import alerts as staff_alerts
from db.base import UTCDateTime
from db.models import Account, JournalEntry, Member
from db.models_exit import EstatePayable
from db.models_loans import Loan
from db.models_mpesa import (
    B2CPayout,
    C2BPayment,
    MpesaCallback,
    MpesaReceipt,
    SimSwapEvent,
    StkRequest,
    SuspenseItem,
)

log = logging.getLogger(__name__)

NAIROBI = ZoneInfo("Africa/Nairobi")
FLOAT_IN = SystemAccount.MPESA_COLLECTIONS_FLOAT
FLOAT_OUT = SystemAccount.MPESA_DISBURSEMENT_FLOAT
SUSPENSE = SystemAccount.SUSPENSE
FEE_INCOME = SystemAccount.FEE_INCOME
B2C_FINAL = (PayoutStatus.SUCCEEDED, PayoutStatus.FAILED)
EXIT_PURPOSE = "exit"  # a payout of an exit refund (``core.payments.mpesa.exit_refunds``)
ESTATE_PURPOSE = "estate"  # a deceased member's payee (``core.payments.mpesa.estate_payouts``)
ADOPT_WINDOW = timedelta(hours=2)
TWIN_WINDOW = MpesaPolicy().twin_window
RECEIPT_PATTERN = re.compile(r"[A-Z0-9]{8,20}")

__all__ = [
    "LimitExceeded",
    "SimSwapBlocked",
    "SimSwapChecker",
    "SimSwapDailyCapReached",
    "SimSwapResultLike",
    "WithdrawalQuote",
]


def _serialise_on(session: Session, key: str) -> None:
    """A transaction-scoped lock on a name (PostgreSQL advisory lock; SQLite already runs
    one writer at a time). Closes the window between a callback that finds no request
    and the worker that records the request's CheckoutRequestID a moment later."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def _balance_text(session: Session, account_id: int) -> str:
    return format_cents(ledger.get_balance(session, account_id).balance_cents)


# ------------------------------------------------------------------ raw callbacks


def store_callback(
    session: Session,
    deps: CoreDeps,
    *,
    kind: str,
    headers: Mapping[str, str],
    body: bytes,
) -> int:
    """Keep a callback exactly as received, before any parsing."""
    return keep_callback(session, deps, kind=kind, headers=headers, body=body).id


def keep_callback(
    session: Session,
    deps: CoreDeps,
    *,
    kind: str,
    headers: Mapping[str, str],
    body: bytes,
) -> MpesaCallback:
    """``store_callback``, returning the row: a caller applying the callback in the same
    unit of work holds it, so marking it later needs no read (the session's identity map
    holds rows only while someone does)."""
    row = MpesaCallback(
        kind=kind[:24],
        headers=json.dumps(dict(headers), default=str)[:8000],
        body=body,
        status=CallbackStatus.RECEIVED,
        received_at=deps.now(),
    )
    session.add(row)
    session.flush()
    return row


def mark_callback(
    session: Session,
    deps: CoreDeps,
    callback_id: int,
    *,
    status: str,
    detail: str | None = None,
    ref: str | None = None,
) -> None:
    """Record what processing made of a stored callback."""
    row = session.get(MpesaCallback, callback_id)
    if row is None:
        raise NotFound(f"no callback {callback_id}")
    row.status = status
    row.detail = (detail or None) and detail[:300]
    if ref:
        row.ref = ref[:100]
    row.processed_at = deps.now()
    session.flush()


def _done(
    session: Session, deps: CoreDeps, outcome: str, callback_id: int | None, ref: str | None
) -> str:
    """Record a callback's effect together with the callback's own status, then answer."""
    if callback_id is not None:
        row = session.get(MpesaCallback, callback_id)
        if row is not None:
            row.status = (
                CallbackStatus.UNMATCHED if outcome == "unmatched" else CallbackStatus.PROCESSED
            )
            row.detail, row.processed_at = outcome, deps.now()
            if ref:
                row.ref = ref[:100]
    session.flush()
    return outcome


def callbacks_to_replay(session: Session, *, before: datetime, limit: int = 200) -> list[int]:
    """Stored callbacks not (yet) applied: never processed, unmatched or failed."""
    return list(
        session.scalars(
            select(MpesaCallback.id)
            .where(
                MpesaCallback.status.in_(
                    (CallbackStatus.RECEIVED, CallbackStatus.UNMATCHED, CallbackStatus.ERROR)
                ),
                MpesaCallback.received_at < before,
                MpesaCallback.kind.in_(("stk", "c2b_confirmation", "b2c_result", "status_result")),
            )
            .order_by(MpesaCallback.id)
            .limit(limit)
        )
    )


# ------------------------------------------------------------------ crediting


@dataclass(frozen=True, slots=True)
class _Park:
    """What a suspense item records about money that could not (yet) go to a member."""

    source: str  # stk | c2b
    source_ref: str  # receipt, or the CheckoutRequestID of a push settled without one
    bill_ref: str = ""
    payer_name: str = ""
    msisdn: str = ""
    paid_at: datetime | None = None
    reason: str | None = None  # None: from the member (unknown account, member not allowed)
    stk_request_id: int | None = None
    c2b_payment_id: int | None = None


def _credit(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int | None,
    target: str | None,
    amount_cents: int,
    key: str,
    memo: str,
    park: _Park,
    receipt: str | None,
    business_key: str,
) -> tuple[ledger.PostedEntry, Member | None, int | None]:
    """Float -> member account (``core.savings.accounts.credit_member``: the receipt SMS and
    the webhook event with it), or float -> suspense (with an item) when the member cannot
    take it or ``park.reason`` says it must wait for staff. Returns (entry, member
    credited or None, member account id)."""
    member = session.get(Member, member_id) if member_id is not None else None
    float_in = ledger.account_id_by_code(session, FLOAT_IN)
    if (
        park.reason is None
        and member is not None
        and target is not None
        and may_deposit(member.status)
    ):
        credited = credit_member(
            session,
            deps,
            Credit(
                member_id=member.id, target=target, amount_cents=amount_cents,
                source=CreditSource.MPESA, idempotency_key=key, business_key=business_key,
                memo=memo, receipt=receipt,
            ),
        )  # fmt: skip
        return credited.posted, member, credited.account_id
    reason = park.reason or ("unknown_account" if member is None else f"member_{member.status}")
    posted = ledger.post_entry(
        session,
        kind=EntryKind.MPESA_SUSPENSE,
        legs=[
            ledger.Leg(float_in, amount_cents),
            ledger.Leg(ledger.account_id_by_code(session, SUSPENSE), -amount_cents),
        ],
        idempotency_key=key,
        now=deps.now(),
        memo=(
            f"{'Possible duplicate' if park.reason == 'possible_duplicate' else 'Unmatched'} "
            f"M-Pesa {park.source_ref}"
        )[:160],
    )
    if posted.created:
        session.add(
            SuspenseItem(
                source=park.source,
                source_ref=park.source_ref[:100],
                amount_cents=amount_cents,
                bill_ref=park.bill_ref[:40],
                payer_name=park.payer_name[:120],
                msisdn_masked=park.msisdn[:80],
                paid_at=park.paid_at or deps.now(),
                reason=reason,
                status=SuspenseStatus.OPEN,
                entry_id=posted.entry_id,
                created_at=deps.now(),
                stk_request_id=park.stk_request_id,
                c2b_payment_id=park.c2b_payment_id,
            )
        )
        session.flush()
    return posted, None, None


def _credit_or_repay(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int | None,
    target: str | None,
    amount_cents: int,
    key: str,
    memo: str,
    park: _Park,
    receipt: str | None,
    business_key: str,
) -> tuple[ledger.PostedEntry, Member | None, int | None]:
    """Money for a loan (``target`` is a loan's reference: a paybill payment with the loan
    reference as the account, or an STK push started to repay a loan) repays it through
    ``core.loans.repayments.repay_loan``, keyed like any M-Pesa credit; a repayment the
    loan book refuses (no such loan, not the payer's, written off, the member may not take
    money in savings) is parked in suspense for staff with the reason. Anything else is
    ``_credit``."""
    loan_reference = parse_loan_ref(target or "")
    if loan_reference is None or park.reason is not None:
        return _credit(
            session, deps, member_id=member_id, target=target, amount_cents=amount_cents,
            key=key, memo=memo, park=park, receipt=receipt, business_key=business_key,
        )  # fmt: skip
    try:
        with uow.savepoint(session):
            repaid = repay_loan(
                session,
                deps,
                Repayment(
                    amount_cents=amount_cents, source=RepaymentSource.MPESA,
                    idempotency_key=key, business_key=business_key, reference=loan_reference,
                    receipt=receipt, member_id=member_id,
                ),
            )  # fmt: skip
    except DomainError as exc:
        reason = "unknown_account" if isinstance(exc, NotFound) else f"loan_{exc.code}"
        log.warning("M-Pesa %s for loan %s parked: %s", park.source_ref, loan_reference, exc)
        return _credit(
            session, deps, member_id=member_id, target=target, amount_cents=amount_cents,
            key=key, memo=memo, park=replace(park, reason=reason[:40]), receipt=receipt,
            business_key=business_key,
        )  # fmt: skip
    entry_id = repaid.entry_id if repaid.entry_id is not None else repaid.savings_entry_id
    reference = repaid.entry_reference or repaid.savings_entry_reference
    assert entry_id is not None and reference is not None
    member = session.get_one(Member, session.get_one(Loan, repaid.loan_id).member_id)
    return ledger.PostedEntry(entry_id, reference, repaid.created), member, None


# One receipt, one credit. The receipt is the key of the money it brought in, whatever
# path brings it: a row in ``mpesa_receipts`` (primary key: the receipt) is inserted
# before anything is credited. PostgreSQL makes a second inserter of the same key wait
# for the first transaction and then see the row (INSERT .. ON CONFLICT DO NOTHING), so
# an STK callback and a paybill confirmation of one payment arriving at the same moment
# credit once: the lock and the constraint decide, not a look-up of the other's row
# (which, uncommitted, is invisible). Ledger entries that carry a receipt are keyed
# ``mpesa:receipt:<receipt>`` on both paths as a second lock.


# The two inserts every paybill confirmation makes, in plain SQL that PostgreSQL and
# SQLite (3.35+) both accept, built once per process like the ledger's hot path: a
# dialect ``insert(...).on_conflict_do_nothing()`` is not cacheable in SQLAlchemy, so it
# was compiled again on every call (docs/benchmarks.md, "M-Pesa").
_CLAIM_RECEIPT = text(
    "INSERT INTO mpesa_receipts (receipt, source, stk_request_id, c2b_payment_id, entry_id, "
    "created_at) VALUES (:receipt, :source, :stk_request_id, :c2b_payment_id, :entry_id, "
    ":created_at) ON CONFLICT (receipt) DO NOTHING RETURNING receipt"
).bindparams(bindparam("created_at", type_=UTCDateTime()))
_INSERT_C2B = text(
    "INSERT INTO mpesa_c2b_payments (trans_id, trans_time, amount_cents, bill_ref, shortcode, "
    "msisdn_masked, payer_name, status, created_at) VALUES (:trans_id, :trans_time, "
    ":amount_cents, :bill_ref, :shortcode, :msisdn_masked, :payer_name, :status, :created_at) "
    "ON CONFLICT (trans_id) DO NOTHING RETURNING id"
).bindparams(
    bindparam("trans_time", type_=UTCDateTime()), bindparam("created_at", type_=UTCDateTime())
)


def _receipt_key(receipt: str) -> str:
    return f"mpesa:receipt:{receipt}"


def _claim_receipt(
    session: Session,
    deps: CoreDeps,
    receipt: str,
    *,
    stk_request_id: int | None = None,
    c2b_payment_id: int | None = None,
    entry_id: int | None = None,
) -> bool:
    """Take ``receipt`` for this path (True), or learn another path took it (False)."""
    taken = session.execute(
        _CLAIM_RECEIPT,
        {
            "receipt": receipt,
            "source": "stk" if stk_request_id is not None else "c2b",
            "stk_request_id": stk_request_id,
            "c2b_payment_id": c2b_payment_id,
            "entry_id": entry_id,
            "created_at": deps.now(),
        },
    ).scalar_one_or_none()
    return taken is not None


def _receipt_holder(session: Session, receipt: str) -> MpesaReceipt:
    return session.execute(
        select(MpesaReceipt)
        .where(MpesaReceipt.receipt == receipt)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _record_receipt_entry(session: Session, receipt: str, entry_id: int) -> None:
    session.execute(
        update(MpesaReceipt).where(MpesaReceipt.receipt == receipt).values(entry_id=entry_id)
    )


# Twins. An STK push settled by the status query carries no receipt, so nothing proves
# that a paybill confirmation of the same member and amount, paid around the same time,
# is not the same payment reaching us twice (Daraja can send both). Whichever of the two
# arrives second is parked in suspense (``possible_duplicate``) with both linked, never
# credited, and the member is not told twice. A later STK callback with the push's
# receipt settles the doubt either way (``_learn_stk_receipt``); otherwise staff decide.
# Both sides look for their twin under one lock per member, so neither misses the other
# while it is being written.


def _lock_member_deposits(session: Session, member_id: int) -> None:
    _serialise_on(session, f"mpesa:twins:{member_id}")


def _push_time(row: StkRequest) -> datetime:
    return row.sent_at or row.created_at


def _push_twin(
    session: Session, *, member_id: int, amount_cents: int, paid_at: datetime, window: timedelta
) -> StkRequest | None:
    """A push of this member and amount, credited without a receipt around ``paid_at``,
    that is not yet linked to a possible twin."""
    push_time = func.coalesce(StkRequest.sent_at, StkRequest.created_at)
    linked = select(SuspenseItem.id).where(SuspenseItem.stk_request_id == StkRequest.id)
    return session.scalar(
        select(StkRequest)
        .where(
            StkRequest.member_id == member_id,
            StkRequest.status == StkStatus.SUCCEEDED,
            StkRequest.receipt.is_(None),
            StkRequest.entry_id.is_not(None),
            func.coalesce(StkRequest.paid_cents, StkRequest.amount_cents) == amount_cents,
            push_time.between(paid_at - window, paid_at + window),
            ~linked.exists(),
        )
        .order_by(StkRequest.id)
        .limit(1)
    )


def _paybill_twin(
    session: Session, row: StkRequest, amount_cents: int, window: timedelta
) -> C2BPayment | None:
    """A paybill payment credited to this push's member, of its amount, paid around the
    push, whose receipt no push claims and that is not yet linked to a possible twin."""
    at = _push_time(row)
    linked = select(SuspenseItem.id).where(SuspenseItem.c2b_payment_id == C2BPayment.id)
    return session.scalar(
        select(C2BPayment)
        .join(MpesaReceipt, MpesaReceipt.receipt == C2BPayment.trans_id)
        .where(
            MpesaReceipt.source == "c2b",
            C2BPayment.member_id == row.member_id,
            C2BPayment.status == C2BStatus.CREDITED,
            C2BPayment.amount_cents == amount_cents,
            C2BPayment.trans_time.between(at - window, at + window),
            ~linked.exists(),
        )
        .order_by(C2BPayment.id)
        .limit(1)
    )


def _open_twin_items(session: Session, row: StkRequest) -> list[SuspenseItem]:
    return list(
        session.scalars(
            select(SuspenseItem)
            .where(
                SuspenseItem.stk_request_id == row.id,
                SuspenseItem.reason == "possible_duplicate",
                SuspenseItem.status == SuspenseStatus.OPEN,
            )
            .order_by(SuspenseItem.id)
            .with_for_update()
        )
    )


def _resolve_duplicate(session: Session, deps: CoreDeps, item: SuspenseItem, proof: str) -> None:
    """The parked money was the same payment as money already credited: reverse the
    parking entry (float and suspense both come back down) and close the item."""
    reversal = ledger.reverse_entry(
        session,
        entry_id=item.entry_id,
        idempotency_key=f"mpesa:suspense:{item.id}:duplicate",
        now=deps.now(),
        memo=f"Same M-Pesa payment, {proof}"[:160],
    )
    item.status, item.assigned_entry_id = SuspenseStatus.DUPLICATE, reversal.entry_id
    item.assigned_by, item.assigned_at = proof[:80], deps.now()


def _release_twin(
    session: Session, deps: CoreDeps, item: SuspenseItem, member_id: int | None, target: str | None
) -> None:
    """The parked money was a payment of its own after all: it goes to the member, or
    stays open for staff if the member can no longer take deposits."""
    if member_id is None or target is None or parse_loan_ref(target) is not None:
        return  # money for a loan: staff decide (docs/loans/repayment.md)
    try:
        with session.begin_nested():
            assign_suspense(
                session, deps, item_id=item.id, member_id=member_id, target=target,
                staff="M-Pesa receipts differ",
            )  # fmt: skip
    except DomainError as exc:
        log.warning("suspense item %d stays open for staff: %s", item.id, exc)


def _learn_stk_receipt(session: Session, deps: CoreDeps, row: StkRequest, receipt: str) -> None:
    """A push already settled without a receipt (status query) now shows its receipt
    (a late callback). Record it, and settle any twin doubt it proves."""
    if _claim_receipt(session, deps, receipt, stk_request_id=row.id, entry_id=row.entry_id):
        row.receipt = receipt
        # Its receipt is its own: a paybill payment parked as its twin was another
        # payment, and so was this push's money if it was parked as a paybill's twin.
        for item in _open_twin_items(session, row):
            if item.source == "c2b" and item.c2b_payment_id is not None:
                c2b = session.get_one(C2BPayment, item.c2b_payment_id)
                _release_twin(session, deps, item, c2b.member_id, c2b.target)
            elif item.source == "stk":
                _release_twin(session, deps, item, row.member_id, row.target)
        return
    holder = _receipt_holder(session, receipt)
    if holder.source == "stk":
        if holder.stk_request_id != row.id:
            log.error(
                "receipt %s already belongs to STK request %s", receipt, holder.stk_request_id
            )
        return
    for item in _open_twin_items(session, row):
        if item.c2b_payment_id == holder.c2b_payment_id:
            _settle_as_one_payment(session, deps, item, row, f"receipt {receipt}")
            return
    # Both were credited: a twin the window did not catch, or staff assigned the item.
    log.error(
        "M-Pesa receipt %s was credited by the paybill confirmation and STK request %d was "
        "credited without a receipt: one payment credited twice; staff must correct it",
        receipt,
        row.id,
    )


def _settle_as_one_payment(
    session: Session, deps: CoreDeps, item: SuspenseItem, row: StkRequest, proof: str
) -> None:
    """A ``possible_duplicate`` item was one payment reaching us twice: its parking entry
    is reversed, the credit that stands keeps the receipt, and both records say so."""
    assert item.c2b_payment_id is not None
    c2b = session.get_one(C2BPayment, item.c2b_payment_id)
    holder = _receipt_holder(session, c2b.trans_id)
    _resolve_duplicate(session, deps, item, proof)
    if item.source == "stk":  # the push's money was parked: the paybill's credit stands
        row.receipt, row.entry_id = c2b.trans_id, c2b.entry_id
        row.result_desc = "one payment with the paybill confirmation; credited there"
        return
    # the paybill's money was parked: the push's credit stands and takes the receipt
    c2b.status, c2b.entry_id = C2BStatus.DUPLICATE_OF_STK, row.entry_id
    holder.source, holder.stk_request_id, holder.entry_id = "stk", row.id, row.entry_id
    session.flush()
    row.receipt = c2b.trans_id


# ------------------------------------------------------------------ STK deposits


@dataclass(frozen=True, slots=True)
class DepositStarted:
    request_id: int
    amount_cents: int
    target: str
    msisdn: str
    created: bool


@dataclass(frozen=True, slots=True)
class LoanPush:
    """What an STK push to repay a loan may take: the member's active loan, what pays it
    off today, and the most a push may ask (the payoff rounded up to a whole shilling:
    M-Pesa moves whole shillings; the cents beyond the payoff reach savings)."""

    loan_id: int
    reference: str
    payoff_cents: int
    max_cents: int


def loan_push(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    reference: str,
    amount_cents: int | None = None,
    policy: MpesaPolicy,
) -> LoanPush:
    """Check a push to repay the loan ``reference`` (any case, ``-`` or spaces) for
    ``member_id``, and ``amount_cents`` if given. Raises ``NotFound`` (no such loan, or
    another member's: the same answer), ``LoanStateError`` (``closed``, ``written_off``),
    ``InvalidInput`` and ``LimitExceeded`` (``not_whole``, ``below_minimum``,
    ``above_maximum``, and ``more_than_owed`` with the push's maximum as the limit).
    Writes nothing."""
    loan = find_loan(session, reference)
    if loan is None or loan.member_id != member_id:
        raise NotFound("no such loan")
    if loan.status != LoanStatus.ACTIVE:
        raise LoanStateError(f"loan {loan.reference} is {loan.status}", reason=loan.status)
    payoff = position(session, deps, loan.id).payoff_cents
    most = -(-payoff // CENTS) * CENTS  # up to a whole shilling
    if amount_cents is not None:
        check_deposit_amount(amount_cents, policy)
        if amount_cents > most:
            raise LimitExceeded(
                f"more than the {format_cents(payoff)} that pays loan {loan.reference} off",
                reason="more_than_owed",
                limit_cents=most,
            )
    return LoanPush(loan.id, loan.reference, payoff, most)


def start_deposit(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    target: str,
    amount_cents: int,
    policy: MpesaPolicy,
    idempotency_key: str,
) -> DepositStarted:
    """Record an STK-push deposit to send (status ``queued``).

    ``target``: ``savings``, ``deposits``, ``shares``, or the reference of the member's
    own active loan (a repayment: ``loan_push`` checks it; the push's account reference
    is the loan's, and its callback repays the loan, ``_credit_or_repay``).

    Defers ``SendStkPush(request_id)`` (sent after the commit); the channel tells
    the member to approve the M-Pesa prompt. The same ``idempotency_key`` (e.g. the
    USSD session id) returns the first request (and defers the push again: the worker
    claims only a request still queued, so it is sent once, and a push lost between
    the commit and the queue is healed). Pending and active members may
    deposit. Raises ``InvalidInput``, ``LimitExceeded`` (reason ``target``,
    ``not_whole``, ``below_minimum``, ``above_maximum``, ``more_than_owed``),
    ``NotFound`` and ``LoanStateError`` (a loan target), ``MemberNotAllowed``; all
    before anything is written.
    """
    existing = session.scalar(
        select(StkRequest).where(StkRequest.idempotency_key == idempotency_key)
    )
    if existing is not None:
        uow.defer(session, SendStkPush(existing.id))
        return DepositStarted(
            existing.id, existing.amount_cents, existing.target, existing.msisdn, False
        )
    if isinstance(target, str) and is_product_target(target):
        if not holds_target(session, member_id, target):  # a further savings account
            raise LimitExceeded("unknown deposit account", reason="target")
    elif target not in ACCOUNT_LABELS["en"]:
        if not isinstance(target, str) or parse_loan_ref(target) is None:
            raise LimitExceeded("unknown deposit account", reason="target")
        target = loan_push(
            session, deps, member_id=member_id, reference=target, amount_cents=amount_cents,
            policy=policy,
        ).reference  # fmt: skip
    check_deposit_amount(amount_cents, policy)
    member = get_member(session, member_id)
    check_may_deposit(member.status)
    row = StkRequest(
        member_id=member.id,
        target=target,
        amount_cents=amount_cents,
        msisdn=member.msisdn,
        idempotency_key=idempotency_key,
        status=StkStatus.QUEUED,
        attempts=0,
        created_at=deps.now(),
    )
    session.add(row)
    session.flush()
    uow.defer(session, SendStkPush(row.id))
    return DepositStarted(row.id, amount_cents, target, member.msisdn, True)


@dataclass(frozen=True, slots=True)
class StkPushJob:
    request_id: int
    msisdn: str
    amount_cents: int
    account_reference: str
    description: str


def claim_stk_push(session: Session, deps: CoreDeps, request_id: int) -> StkPushJob | None:
    """Mark a queued request ``sending`` and say what to send; None if not queued."""
    row = session.scalar(select(StkRequest).where(StkRequest.id == request_id).with_for_update())
    if row is None or row.status != StkStatus.QUEUED:
        return None
    member = get_member(session, row.member_id)
    row.status, row.attempts, row.sent_at = StkStatus.SENDING, row.attempts + 1, deps.now()
    job = StkPushJob(
        row.id,
        row.msisdn,
        row.amount_cents,
        account_reference(member.member_number or str(member.id), row.target),
        "Loan payment" if parse_loan_ref(row.target) else "SACCO deposit",  # <= 13 chars
    )
    session.flush()
    return job


def record_stk_accepted(
    session: Session,
    deps: CoreDeps,
    request_id: int,
    *,
    checkout_request_id: str,
    merchant_request_id: str,
) -> None:
    """Daraja accepted the push: remember its CheckoutRequestID.

    The callback may already have arrived and settled (or adopted) the row, or
    have been kept as unmatched: the caller replays those after this commit.
    """
    _serialise_on(session, f"stk:{checkout_request_id}")
    row = session.scalar(select(StkRequest).where(StkRequest.id == request_id).with_for_update())
    if row is None:
        raise NotFound(f"no STK request {request_id}")
    if row.checkout_request_id is None:
        row.checkout_request_id = checkout_request_id
        row.merchant_request_id = merchant_request_id
    if row.status in (StkStatus.SENDING, StkStatus.UNKNOWN):
        row.status = StkStatus.PENDING
    session.flush()


def record_stk_send_failed(
    session: Session,
    deps: CoreDeps,
    request_id: int,
    *,
    may_have_taken_effect: bool,
    detail: str,
) -> None:
    """The push failed. If it may have reached the member: ``unknown`` (a callback can
    still adopt it); else ``failed`` and an SMS saying no money was taken."""
    row = session.scalar(select(StkRequest).where(StkRequest.id == request_id).with_for_update())
    if row is None or row.status != StkStatus.SENDING:
        return
    row.result_desc = detail[:200]
    if may_have_taken_effect:
        row.status = StkStatus.UNKNOWN
    else:
        row.status, row.settled_at = StkStatus.FAILED, deps.now()
        _notify_stk_failure(session, deps, row, code=None)
    session.flush()


def _notify_stk_failure(
    session: Session, deps: CoreDeps, row: StkRequest, *, code: int | None
) -> None:
    member = get_member(session, row.member_id)
    notify(
        session,
        template="deposit_cancelled" if code == 1032 else "deposit_failed",
        business_key=f"deposit_failed:stk:{row.id}",
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "amount": format_cents(row.amount_cents),
            "ussd_code": deps.ussd_code,
        },
    )


@dataclass(frozen=True, slots=True)
class StkOutcome:
    """An STK result, from the callback or from a query (which carries no receipt)."""

    checkout_request_id: str
    result_code: int
    result_desc: str = ""
    amount_cents: int | None = None
    receipt: str | None = None
    phone: str | None = None  # E.164


def _find_stk(session: Session, deps: CoreDeps, outcome: StkOutcome) -> StkRequest | None:
    _serialise_on(session, f"stk:{outcome.checkout_request_id}")
    row = session.scalar(
        select(StkRequest)
        .where(StkRequest.checkout_request_id == outcome.checkout_request_id)
        .with_for_update()
    )
    if row is not None or outcome.phone is None:
        return row
    # A callback for a push whose answer we never recorded (crash, timeout, or the
    # callback simply won the race): adopt the oldest matching push still in flight.
    query = (
        select(StkRequest)
        .where(
            StkRequest.checkout_request_id.is_(None),
            StkRequest.status.in_((StkStatus.SENDING, StkStatus.UNKNOWN)),
            StkRequest.msisdn == outcome.phone,
            StkRequest.created_at > deps.now() - ADOPT_WINDOW,
        )
        .order_by(StkRequest.id)
        .limit(1)
        .with_for_update()
    )
    if outcome.amount_cents is not None:
        query = query.where(StkRequest.amount_cents == outcome.amount_cents)
    row = session.scalar(query)
    if row is not None:
        row.checkout_request_id = outcome.checkout_request_id
    return row


def settle_stk(
    session: Session,
    deps: CoreDeps,
    outcome: StkOutcome,
    *,
    callback_id: int | None = None,
    twin_window: timedelta = TWIN_WINDOW,
) -> str:
    """Apply an STK result exactly once. Returns ``credited``, ``failed``,
    ``duplicate`` (already settled, or its receipt was credited by the paybill
    confirmation), ``suspense`` (member can no longer take deposits, or settled without
    a receipt while a paybill payment that may be the same one was already credited) or
    ``unmatched`` (no request yet: keep the callback and replay it later)."""
    row = _find_stk(session, deps, outcome)
    if row is None:
        return _done(session, deps, "unmatched", callback_id, outcome.checkout_request_id)
    success = outcome.result_code == 0
    if row.status == StkStatus.SUCCEEDED or (row.status == StkStatus.FAILED and not success):
        if (
            success
            and outcome.receipt
            and row.receipt is None
            and row.status == StkStatus.SUCCEEDED
        ):
            _learn_stk_receipt(session, deps, row, outcome.receipt)
        return _done(session, deps, "duplicate", callback_id, outcome.checkout_request_id)
    now = deps.now()
    if not success:
        row.status, row.settled_at = StkStatus.FAILED, now
        row.result_code, row.result_desc = outcome.result_code, outcome.result_desc[:200]
        _notify_stk_failure(session, deps, row, code=outcome.result_code)
        return _done(session, deps, "failed", callback_id, outcome.checkout_request_id)
    # A late success after we gave up (row failed) still moved money: credit it.
    amount = outcome.amount_cents or row.amount_cents
    receipt = outcome.receipt
    park = _Park(
        "stk", receipt or outcome.checkout_request_id, bill_ref=row.target, msisdn=row.msisdn,
        paid_at=now, stk_request_id=row.id,
    )  # fmt: skip
    if receipt:
        if not _claim_receipt(session, deps, receipt, stk_request_id=row.id):
            _paid_by_paybill(session, deps, row, receipt, amount)
            return _done(session, deps, "duplicate", callback_id, outcome.checkout_request_id)
        key = _receipt_key(receipt)
    else:
        key = f"mpesa:stk:{outcome.checkout_request_id}"
        _lock_member_deposits(session, row.member_id)
        twin = _paybill_twin(session, row, amount, twin_window)
        if twin is not None:
            park = replace(park, reason="possible_duplicate", c2b_payment_id=twin.id)
    posted, member, account_id = _credit_or_repay(
        session,
        deps,
        member_id=row.member_id,
        target=row.target,
        amount_cents=amount,
        key=key,
        memo=f"M-Pesa deposit {receipt or outcome.checkout_request_id}"[:160],
        park=park,
        receipt=receipt,
        business_key=(
            f"loan_repayment:stk:{row.id}"
            if parse_loan_ref(row.target)
            else f"deposit_received:stk:{row.id}"
        ),
    )
    if receipt:
        _record_receipt_entry(session, receipt, posted.entry_id)
    row.status, row.settled_at, row.result_code = StkStatus.SUCCEEDED, now, 0
    row.result_desc = outcome.result_desc[:200] or None
    if park.reason == "possible_duplicate":
        row.result_desc = f"parked: may be paybill payment {_twin_ref(session, park)}"
    row.receipt, row.paid_cents, row.entry_id = receipt, amount, posted.entry_id
    return _done(
        session,
        deps,
        "credited" if member is not None else "suspense",
        callback_id,
        outcome.checkout_request_id,
    )


def _twin_ref(session: Session, park: _Park) -> str:
    twin = session.get(C2BPayment, park.c2b_payment_id) if park.c2b_payment_id else None
    return twin.trans_id if twin is not None else "?"


def _paid_by_paybill(
    session: Session, deps: CoreDeps, row: StkRequest, receipt: str, amount_cents: int
) -> None:
    """The push's receipt was already brought in by the paybill confirmation (the same
    payment reached us both ways): the push is settled by that money, not credited."""
    holder = _receipt_holder(session, receipt)
    row.status, row.settled_at, row.result_code = StkStatus.SUCCEEDED, deps.now(), 0
    row.paid_cents, row.entry_id = amount_cents, holder.entry_id
    if holder.source == "c2b":
        row.receipt = receipt
        item = session.scalar(
            select(SuspenseItem).where(
                SuspenseItem.c2b_payment_id == holder.c2b_payment_id,
                SuspenseItem.status == SuspenseStatus.OPEN,
            )
        )
        row.result_desc = (
            "credited by the paybill confirmation"
            if item is None
            else f"parked in suspense by the paybill confirmation (item {item.id})"
        )
    else:  # another push holds it: never seen; kept for staff, credited nothing
        log.error(
            "receipt %s of STK request %d belongs to STK request %s",
            receipt,
            row.id,
            holder.stk_request_id,
        )
        row.result_desc = (
            f"receipt {receipt} already credited by STK request {holder.stk_request_id}"
        )


# ------------------------------------------------------------------ paybill (C2B)


@dataclass(frozen=True, slots=True)
class C2BIn:
    trans_id: str
    trans_time: datetime
    amount_cents: int
    bill_ref: str
    shortcode: str
    msisdn_masked: str = ""
    payer_name: str = ""


def validate_c2b(
    session: Session,
    *,
    bill_ref: str,
    amount_cents: int,
    shortcode: str,
    expected_shortcode: str,
    policy: MpesaPolicy,
) -> tuple[str, str]:
    """Daraja's validation answer: ``("0", "Accepted")`` or ``("C2B000xx", "Rejected")``.

    C2B00015 another shortcode, C2B00013 an amount that is not whole shillings or
    outside the deposit limits, C2B00012 an account that is neither a member number
    (bare = savings, ``D`` deposits, ``S`` shares, a savings product's code for the member's
    account under it) of a member who may deposit nor the
    reference of an active loan (``L7K2M9QX``: a repayment) or of a written-off one (a
    recovery).
    """
    if expected_shortcode and shortcode != expected_shortcode:
        return "C2B00015", "Rejected"
    if amount_cents <= 0 or amount_cents % 100 or amount_cents > policy.deposit_max_cents:
        return "C2B00013", "Rejected"
    parsed = parse_bill_ref(bill_ref)
    if parsed is None:
        loan = find_loan(session, bill_ref)
        # A written-off loan takes money too: a recovery (core.loans.repayments._recover).
        if loan is None or loan.status not in (LoanStatus.ACTIVE, LoanStatus.WRITTEN_OFF):
            return "C2B00012", "Rejected"
        return "0", "Accepted"
    found = session.execute(
        select(Member.id, Member.status).where(Member.member_number == parsed.member_number)
    ).one_or_none()
    if found is None or not may_deposit(found.status):
        return "C2B00012", "Rejected"
    if is_product_target(parsed.target) and not holds_target(session, found.id, parsed.target):
        return "C2B00012", "Rejected"  # a product code the member holds no account under
    return "0", "Accepted"


def record_c2b(
    session: Session,
    deps: CoreDeps,
    payment: C2BIn,
    *,
    callback_id: int | None = None,
    twin_window: timedelta = TWIN_WINDOW,
) -> str:
    """Apply a paybill confirmation exactly once; never refuse it.

    Returns ``credited``, ``suspense`` (account unknown, member not allowed, or the
    possible twin of an STK push settled without a receipt: parked on 2200 with an item
    for staff), ``duplicate`` (this confirmation again) or ``duplicate_of_stk`` (its
    receipt was brought in by the STK callback).
    """
    # The payment row first: a concurrent duplicate waits here, then does nothing (and
    # looks nothing up: a duplicate is the insert and the callback's status).
    inserted = session.execute(
        _INSERT_C2B,
        {
            "trans_id": payment.trans_id,
            "trans_time": payment.trans_time,
            "amount_cents": payment.amount_cents,
            "bill_ref": payment.bill_ref[:40],
            "shortcode": payment.shortcode[:12],
            "msisdn_masked": payment.msisdn_masked[:80],
            "payer_name": payment.payer_name[:120],
            "status": C2BStatus.SUSPENSE.value,
            "created_at": deps.now(),
        },
    ).scalar_one_or_none()
    if inserted is None:
        return _done(session, deps, "duplicate", callback_id, payment.trans_id)
    # What the payment row learns, written once at the end (one UPDATE, not one per step).
    learnt: dict[str, object] = {}
    # Then the receipt: an STK callback carrying it at the same moment waits here.
    if not _claim_receipt(session, deps, payment.trans_id, c2b_payment_id=inserted):
        holder = _receipt_holder(session, payment.trans_id)
        stk = session.get(StkRequest, holder.stk_request_id) if holder.stk_request_id else None
        learnt.update(status=C2BStatus.DUPLICATE_OF_STK, entry_id=holder.entry_id)
        if stk is not None:
            learnt.update(member_id=stk.member_id, target=stk.target)
        return _c2b_done(session, deps, inserted, learnt, "duplicate_of_stk", callback_id, payment)
    if payment.amount_cents <= 0:
        return _c2b_done(session, deps, inserted, learnt, "suspense", callback_id, payment)
    parsed = parse_bill_ref(payment.bill_ref)
    member = (  # the whole row: _credit and credit_member find it in the session
        session.scalar(select(Member).where(Member.member_number == parsed.member_number))
        if parsed is not None
        else None
    )
    member_id = member.id if member is not None else None
    target = parsed.target if parsed is not None else None
    loan = find_loan(session, payment.bill_ref) if parsed is None else None
    if loan is not None:  # a loan's reference as the account: a repayment
        member_id, target = loan.member_id, loan.reference
    park = _Park(
        "c2b", payment.trans_id, bill_ref=payment.bill_ref, payer_name=payment.payer_name,
        msisdn=payment.msisdn_masked, paid_at=payment.trans_time, c2b_payment_id=inserted,
    )  # fmt: skip
    if (
        member_id is not None
        and target is not None
        and is_product_target(target)
        and not holds_target(session, member_id, target)
    ):
        park = replace(park, reason="unknown_account")  # no such account of this member
    if member_id is not None and target is not None:
        learnt.update(member_id=member_id, target=target)
        _lock_member_deposits(session, member_id)
        twin = _push_twin(
            session, member_id=member_id, amount_cents=payment.amount_cents,
            paid_at=payment.trans_time, window=twin_window,
        )  # fmt: skip
        if twin is not None:
            park = replace(park, reason="possible_duplicate", stk_request_id=twin.id)
    posted, credited, _account_id = _credit_or_repay(
        session,
        deps,
        member_id=member_id,
        target=target,
        amount_cents=payment.amount_cents,
        key=_receipt_key(payment.trans_id),
        memo=f"M-Pesa paybill {payment.trans_id}",
        park=park,
        receipt=payment.trans_id,
        business_key=(
            f"loan_repayment:c2b:{payment.trans_id}"
            if loan is not None
            else f"deposit_received:c2b:{payment.trans_id}"
        ),
    )
    _record_receipt_entry(session, payment.trans_id, posted.entry_id)
    learnt["entry_id"] = posted.entry_id
    if credited is not None:
        learnt["status"] = C2BStatus.CREDITED
    outcome = "credited" if credited is not None else "suspense"
    return _c2b_done(session, deps, inserted, learnt, outcome, callback_id, payment)


def _c2b_done(
    session: Session,
    deps: CoreDeps,
    payment_id: int,
    learnt: Mapping[str, object],
    outcome: str,
    callback_id: int | None,
    payment: C2BIn,
) -> str:
    if learnt:
        session.execute(update(C2BPayment).where(C2BPayment.id == payment_id).values(**learnt))
    return _done(session, deps, outcome, callback_id, payment.trans_id)


# ------------------------------------------------------------------ suspense


@dataclass(frozen=True, slots=True)
class SuspenseView:
    item_id: int
    source: str
    source_ref: str
    amount_cents: int
    bill_ref: str
    payer_name: str
    msisdn_masked: str
    paid_at: datetime
    reason: str
    status: str
    assigned_member_id: int | None
    assigned_target: str | None
    stk_request_id: int | None = None  # a possible duplicate: the STK push it may be
    c2b_payment_id: int | None = None  # and the paybill payment


def list_suspense(
    session: Session, *, status: str = SuspenseStatus.OPEN, limit: int = 100, after_id: int = 0
) -> list[SuspenseView]:
    """Suspense items with this status in id order, the first ``limit`` after ``after_id``."""
    rows = session.scalars(
        select(SuspenseItem)
        .where(SuspenseItem.status == status, SuspenseItem.id > after_id)
        .order_by(SuspenseItem.id)
        .limit(max(1, min(limit, 1000)))
    )
    return [
        SuspenseView(
            r.id,
            r.source,
            r.source_ref,
            r.amount_cents,
            r.bill_ref,
            r.payer_name,
            r.msisdn_masked,
            r.paid_at,
            r.reason,
            r.status,
            r.assigned_member_id,
            r.assigned_target,
            r.stk_request_id,
            r.c2b_payment_id,
        )
        for r in rows
    ]


class SuspenseAlreadyAssigned(DomainError):
    code = "suspense_already_assigned"


def assign_suspense(
    session: Session,
    deps: CoreDeps,
    *,
    item_id: int,
    member_id: int,
    target: str = "savings",
    staff: str,
    note: str = "",
    actor: Principal | None = None,
) -> ledger.PostedEntry:
    """Staff move a parked payment from suspense to a member's account (``savings``,
    ``deposits``, ``shares``: ``credit_member``), or to the member's loan (``target`` a
    loan's reference: ``repay_loan``, money from suspense, an overpayment to savings; the
    loan must be this member's). Keyed ``mpesa:suspense:<item id>`` either way, so the
    item's money moves once. ``actor``: the member of staff who decided (a loan
    repayment's audit row names them).

    Repeating the same assignment returns the first entry; assigning an item
    already given to someone else, or no longer open (closed as a duplicate), raises
    ``SuspenseAlreadyAssigned``. A loan target also raises ``NotFound`` (no such loan,
    or another member's) and ``repay_loan``'s refusals (a written-off loan takes a
    recovery); a loan closed since the request takes the money into savings, as
    any late payment to a closed loan does.
    """
    reference = None
    if target not in ACCOUNT_LABELS["en"]:
        reference = parse_loan_ref(target) if isinstance(target, str) else None
        if reference is None:
            raise LimitExceeded("unknown account", reason="target")
        target = reference
    item = session.scalar(
        select(SuspenseItem)
        .where(SuspenseItem.id == item_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if item is None:
        raise NotFound(f"no suspense item {item_id}")
    key = f"mpesa:suspense:{item.id}"
    if item.status == SuspenseStatus.ASSIGNED:
        if item.assigned_member_id == member_id and item.assigned_target == target:
            entry = session.get(JournalEntry, item.assigned_entry_id)
            assert entry is not None
            return ledger.PostedEntry(entry.id, entry.reference, created=False)
        raise SuspenseAlreadyAssigned(f"item {item_id} already assigned")
    if item.status != SuspenseStatus.OPEN:  # closed as a duplicate: its money is gone
        raise SuspenseAlreadyAssigned(f"item {item_id} is already {item.status}")
    member = get_member(session, member_id)
    receipt = item.source_ref if item.source == "c2b" else None
    if reference is not None:
        posted = _repay_from_suspense(
            session, deps, item, member, reference, key=key, receipt=receipt, actor=actor
        )
    else:
        posted = credit_member(
            session,
            deps,
            Credit(
                member_id=member.id, target=target, amount_cents=item.amount_cents,
                source=CreditSource.SUSPENSE, idempotency_key=key,
                business_key=f"deposit_received:suspense:{item.id}",
                memo=f"Suspense {item.source_ref} to {member.member_number}",
                receipt=receipt,
            ),
        ).posted  # fmt: skip
    item.status, item.assigned_member_id, item.assigned_target = (
        SuspenseStatus.ASSIGNED,
        member.id,
        target,
    )
    item.assigned_entry_id, item.assigned_by = posted.entry_id, staff[:80]
    item.assigned_at, item.note = deps.now(), (note or None) and note[:200]
    session.flush()
    return posted


def check_suspense_loan(session: Session, *, member_id: int | None, reference: str) -> str:
    """A loan a suspense item may repay, checked when staff ask: the member's own active
    loan, or written-off one (a recovery). Returns its reference as stored.
    ``InvalidInput`` (field ``target``) names the reason."""
    loan = find_loan(session, reference)
    if loan is None or member_id is None or loan.member_id != member_id:
        raise InvalidInput("no such loan of this member", field="target", reason="unknown")
    if loan.status not in (LoanStatus.ACTIVE, LoanStatus.WRITTEN_OFF):
        raise InvalidInput(
            f"loan {loan.reference} is {loan.status}: move the money to savings instead",
            field="target",
            reason=loan.status,
        )
    return loan.reference


def _repay_from_suspense(
    session: Session,
    deps: CoreDeps,
    item: SuspenseItem,
    member: Member,
    reference: str,
    *,
    key: str,
    receipt: str | None,
    actor: Principal | None,
) -> ledger.PostedEntry:
    """The parked money repays the member's loan (``repay_loan``: from suspense, keyed by
    the item; the borrower's SMS and the ``loan.repaid`` event are the use case's)."""
    loan = find_loan(session, reference)
    if loan is None or loan.member_id != member.id:
        raise NotFound("no such loan of this member")
    repaid = repay_loan(
        session,
        deps,
        Repayment(
            amount_cents=item.amount_cents, source=RepaymentSource.MPESA,
            idempotency_key=key, business_key=f"loan_repayment:suspense:{item.id}",
            loan_id=loan.id, member_id=member.id, receipt=receipt, actor=actor,
            from_suspense=True,
        ),
    )  # fmt: skip
    entry_id = repaid.entry_id if repaid.entry_id is not None else repaid.savings_entry_id
    reference_out = repaid.entry_reference or repaid.savings_entry_reference
    assert entry_id is not None and reference_out is not None
    return ledger.PostedEntry(entry_id, reference_out, repaid.created)


def _open_possible_duplicate(session: Session, item_id: object) -> SuspenseItem:
    item = (
        session.scalar(select(SuspenseItem).where(SuspenseItem.id == item_id).with_for_update())
        if type(item_id) is int
        else None
    )
    if item is None or item.reason != "possible_duplicate" or item.stk_request_id is None:
        raise InvalidInput(
            "no such possible duplicate in suspense", field="item_id", reason="unknown"
        )
    if item.status != SuspenseStatus.OPEN:
        raise SuspenseAlreadyAssigned(f"suspense item {item.id} is already {item.status}")
    return item


def possible_duplicate_member_id(session: Session, item_id: int) -> int:
    member_id = session.scalar(
        select(StkRequest.member_id)
        .join(SuspenseItem, SuspenseItem.stk_request_id == StkRequest.id)
        .where(SuspenseItem.id == item_id, SuspenseItem.reason == "possible_duplicate")
    )
    if member_id is None:
        raise NotFound("no such possible duplicate in suspense")
    return member_id


def check_suspense_duplicate(
    session: Session, *, member_id: int | None, payload: Mapping[str, object]
) -> int:
    """What ``resolve_suspense_duplicate`` needs, checked when staff ask; returns the
    cents at stake."""
    item = _open_possible_duplicate(session, payload.get("item_id"))
    push = session.get_one(StkRequest, item.stk_request_id)
    if push.member_id != member_id:
        raise InvalidInput("the item belongs to another member", field="member_id")
    return item.amount_cents


def resolve_suspense_duplicate(
    session: Session, deps: CoreDeps, *, item_id: int, staff: str
) -> dict[str, object]:
    """Staff found one payment, not two (the org portal lists one receipt): the parked
    copy of a ``possible_duplicate`` item leaves suspense and the float (its entry is
    reversed). A payment of its own
    is moved to the member with ``assign_suspense`` instead."""
    item = _open_possible_duplicate(session, item_id)
    row = session.scalar(
        select(StkRequest).where(StkRequest.id == item.stk_request_id).with_for_update()
    )
    assert row is not None and item.c2b_payment_id is not None
    c2b = session.get_one(C2BPayment, item.c2b_payment_id)
    if row.receipt is not None and row.receipt != c2b.trans_id:
        raise DomainError(
            f"the STK push's receipt is {row.receipt}, the paybill's {c2b.trans_id}: "
            "two payments; move it to the member instead",
            reason="receipts_differ",
        )
    _settle_as_one_payment(session, deps, item, row, f"staff ({staff})")
    session.flush()
    return {"item_id": item.id, "status": item.status}


# ------------------------------------------------------------------ SIM swap


# The member's SMS for each refusal reason (``core.payments.mpesa.rules.sim_swap_decision``).
SIM_SWAP_TEMPLATES = {
    "recent_swap": "withdrawal_blocked_sim_swap",
    "check_failed": "withdrawal_blocked_check",
    "check_failed_daily_cap": "withdrawal_blocked_check_cap",
}


def _nairobi_midnight(now: datetime) -> datetime:
    local = now.astimezone(NAIROBI)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def unverified_today_cents(session: Session, member_id: int, now: datetime) -> int:
    """What the guard let through for this member since Nairobi midnight while the
    SIM-swap check failed (``check_failed`` / ``allowed`` events). A payout that later
    failed still counts: the cap is on what was risked, and it is small."""
    total = session.scalar(
        select(func.coalesce(func.sum(SimSwapEvent.amount_cents), 0)).where(
            SimSwapEvent.member_id == member_id,
            SimSwapEvent.outcome == "check_failed",
            SimSwapEvent.decision == "allowed",
            SimSwapEvent.created_at >= _nairobi_midnight(now),
        )
    )
    return int(total or 0)


def guard_sim_swap(
    session: Session,
    deps: CoreDeps,
    *,
    member: Member,
    amount_cents: int,
    policy: MpesaPolicy,
    assessment: SimSwapAssessment,
) -> None:
    """Money going out to ``member``'s phone, given their SIM-swap status
    (``core.risk.sim_swap.assess``, made before the member row lock: it may call out).

    The caller holds the member row lock (``SELECT ... FOR UPDATE``), so today's
    unverified total is read and this attempt's event written one member at a time.
    Refuses (``SimSwapBlocked``; ``SimSwapDailyCapReached`` for the cap), after
    committing an event for staff and an SMS, when the SIM changed within the window
    (and staff did not clear that swap), or the check failed and the setting or
    today's cap refuses. A failed check let through is recorded (flushed, committed
    with the withdrawal) and counts towards the cap."""
    status = assessment.status
    verdict = assessment.verdict
    unverified = (
        unverified_today_cents(session, member.id, deps.now()) if status == "unknown" else 0
    )
    decision = sim_swap_decision(
        status, amount_cents=amount_cents, policy=policy, unverified_today_cents=unverified
    )
    if decision is None and status != "unknown":
        return
    error = verdict.error or None
    if decision == "check_failed_daily_cap":
        error = f"{error or 'no verdict'}; today's unverified cap reached"
    event = SimSwapEvent(
        member_id=member.id,
        msisdn=member.msisdn,
        outcome=(
            SimSwapOutcome.RECENT_SWAP if decision == "recent_swap" else SimSwapOutcome.CHECK_FAILED
        ),
        decision=SimSwapDecision.REFUSED if decision else SimSwapDecision.ALLOWED,
        amount_cents=amount_cents,
        last_swap_at=verdict.last_swap_at,
        error=error and str(error)[:200],
        created_at=deps.now(),
    )
    session.add(event)
    session.flush()
    if decision is None:
        return  # a failed check let through: recorded, counted towards today's cap
    notify(
        session,
        template=SIM_SWAP_TEMPLATES[decision],
        business_key=f"sim_swap_event:{event.id}",
        now=deps.now(),
        member=member,
        data={"sacco": deps.sacco_name, "days": policy.sim_swap_window.days},
    )
    error_type = SimSwapDailyCapReached if decision == "check_failed_daily_cap" else SimSwapBlocked
    raise keep(error_type(reason=decision, last_swap_at=verdict.last_swap_at))


# ------------------------------------------------------------------ withdrawals


def withdrawn_today_cents(session: Session, member_id: int, now: datetime) -> int:
    """Payouts requested since Nairobi midnight that have not failed."""
    total = session.scalar(
        select(func.coalesce(func.sum(B2CPayout.amount_cents), 0)).where(
            B2CPayout.member_id == member_id,
            B2CPayout.status != PayoutStatus.FAILED,
            B2CPayout.created_at >= _nairobi_midnight(now),
        )
    )
    return int(total or 0)


def _savings(session: Session, member_id: int, target: str = "savings") -> Account:
    """The savings account money leaves: the main one, or a further savings account of
    the member's (``@<product code>``; ``NotFound`` when not held)."""
    if target == "savings":
        account_id = member_account_ids(session, member_id)["savings"]
    elif is_product_target(target):
        account_id = account_for_target(session, member_id, target).account_id
    else:
        raise InvalidInput("withdraw from savings or @<product code>", field="account")
    account = session.get(Account, account_id)
    assert account is not None
    return account


def _payout_account(session: Session, row: B2CPayout) -> Account:
    """The account a payout's hold is on: its own, else the member's main savings."""
    if row.account_id is not None:
        return session.get_one(Account, row.account_id)
    return _savings(session, row.member_id)


def quote_withdrawal(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    amount_cents: int,
    policy: MpesaPolicy,
    account: str = "savings",
) -> WithdrawalQuote:
    """What the confirmation screen shows: amount, fee, total from savings, payout number.
    ``account``: ``savings`` (the main savings) or a further savings account's
    ``@<product code>`` (its own product's rules apply).

    Active members only (``MemberNotAllowed``), savings not dormant (``AccountDormant``);
    ``LimitExceeded`` with ``reason``
    ``not_whole``, ``below_minimum``, ``above_maximum``, ``daily_limit`` or
    ``insufficient`` (``limit_cents`` = the bound to show), then the savings product's
    rules (``core.savings.rules.SavingsRuleRefused``: reason ``daily_limit``,
    ``min_balance`` or ``insufficient``; the product's fee is added to the quote's fee).
    Reads only.
    """
    member = get_member(session, member_id)
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
    savings = _savings(session, member_id, account)
    check_not_dormant(session, member_id, savings.id)  # AccountDormant until reactivated
    available = savings.balance_cents - savings.held_cents
    q = quote(
        amount_cents,
        available_cents=available,
        withdrawn_today_cents=withdrawn_today_cents(session, member_id, deps.now()),
        msisdn=member.msisdn,
        policy=policy,
    )
    # The savings product's rules on top (minimum balance, daily limit across every
    # channel); its withdrawal fee joins M-Pesa's and goes to fee income in the payout's
    # one entry (``_pay_payout``).
    product_fee = savings_rules.check_withdrawal(
        savings_rules.rules_for_account(session, savings.id),
        amount_cents=q.amount_cents,
        available_cents=available,
        withdrawn_today_cents=savings_rules.withdrawn_today_cents(
            session, member_id, savings.id, deps.now()
        ),
        other_fees_cents=q.fee_cents,
    )
    if not product_fee:
        return q
    return replace(q, fee_cents=q.fee_cents + product_fee, total_cents=q.total_cents + product_fee)


@dataclass(frozen=True, slots=True)
class WithdrawalRequested:
    payout_id: int
    reference: str  # what the member is told and finds in the SMS
    amount_cents: int
    fee_cents: int
    total_cents: int
    msisdn: str
    created: bool


def _requested(p: B2CPayout, created: bool) -> WithdrawalRequested:
    return WithdrawalRequested(
        p.id,
        p.reference,
        p.amount_cents,
        p.fee_cents,
        p.amount_cents + p.fee_cents,
        p.msisdn,
        created,
    )


def request_withdrawal(
    session: Session,
    deps: CoreDeps,
    *,
    member_id: int,
    amount_cents: int,
    policy: MpesaPolicy,
    sim_swap: SimSwapChecker,
    idempotency_key: str,
    account: str = "savings",
) -> WithdrawalRequested:
    """Hold amount + fee on savings (``account``: the main savings, or a further savings
    account's ``@<product code>``) and record the payout to send.

    The channel must have checked the member's PIN in this session; it ends with
    ``reference``. Defers ``SendB2C(payout_id)``, also when the same
    ``idempotency_key`` returns the first request (the worker claims only a payout
    still ``requested``, so it is never paid twice). Raises what
    ``quote_withdrawal`` raises, and ``SimSwapBlocked`` (``reason``
    ``recent_swap`` or ``check_failed``; ``SimSwapDailyCapReached`` with
    ``check_failed_daily_cap`` once today's unverified allowance is used up).
    Safe to run again whole after a deadlock (``db.session.run_in_transaction``).
    """
    existing = session.scalar(select(B2CPayout).where(B2CPayout.idempotency_key == idempotency_key))
    if existing is not None:
        uow.defer(session, SendB2C(existing.id))
        return _requested(existing, False)
    quote_withdrawal(
        session, deps, member_id=member_id, amount_cents=amount_cents, policy=policy,
        account=account,
    )  # fmt: skip
    member = get_member(session, member_id)
    # The SIM-swap check may call out (seconds): before any lock is taken.
    assessment = assess_sim_swap(
        session, deps, sim_swap, member_id=member.id, msisdn=member.msisdn, policy=policy.sim_swap
    )
    # One lock order for every withdrawal: the member row first (serialising this
    # member's withdrawals, so the daily limit and the unverified cap hold under
    # concurrency), then the SIM-swap event, then the savings account (the ledger locks
    # accounts in id order). An event inserted before the member lock takes a key-share
    # lock on the member row, and two such withdrawals deadlocked on the upgrade.
    session.scalar(select(Member.id).where(Member.id == member_id).with_for_update())
    # The same request made meanwhile (a double-tapped confirm) is the first one.
    existing = session.scalar(select(B2CPayout).where(B2CPayout.idempotency_key == idempotency_key))
    if existing is not None:
        uow.defer(session, SendB2C(existing.id))
        return _requested(existing, False)
    final = quote_withdrawal(
        session, deps, member_id=member_id, amount_cents=amount_cents, policy=policy,
        account=account,
    )  # fmt: skip
    guard_sim_swap(
        session, deps, member=member, amount_cents=amount_cents, policy=policy,
        assessment=assessment,
    )  # fmt: skip
    ocid = str(uuid.uuid4())
    source = _savings(session, member_id, account)
    hold = ledger.reserve_hold(
        session,
        account_id=source.id,
        amount_cents=final.total_cents,
        idempotency_key=f"mpesa:b2c:{ocid}:hold",
        now=deps.now(),
        reason=f"M-Pesa withdrawal {format_cents(final.amount_cents)}",
    )
    payout = B2CPayout(
        originator_conversation_id=ocid,
        reference="W" + ledger.new_reference()[1:],
        idempotency_key=idempotency_key,
        purpose="withdrawal",
        member_id=member_id,
        msisdn=member.msisdn,
        amount_cents=final.amount_cents,
        fee_cents=final.fee_cents,
        hold_id=hold.hold_id,
        account_id=None if account == "savings" else source.id,
        status=PayoutStatus.REQUESTED,
        attempts=0,
        created_at=deps.now(),
    )
    session.add(payout)
    session.flush()
    uow.defer(session, SendB2C(payout.id))
    return _requested(payout, True)


@dataclass(frozen=True, slots=True)
class B2CJob:
    payout_id: int
    originator_conversation_id: str
    msisdn: str
    amount_cents: int
    reference: str
    resent: bool  # an earlier attempt may have reached Daraja


def claim_b2c(session: Session, deps: CoreDeps, payout_id: int) -> B2CJob | None:
    """Mark a ``requested`` payout ``sending`` and say what to send; else None."""
    row = session.scalar(select(B2CPayout).where(B2CPayout.id == payout_id).with_for_update())
    if row is None or row.status != PayoutStatus.REQUESTED:
        return None
    if row.purpose != ESTATE_PURPOSE and (
        get_member(session, row.member_id).status == MemberStatus.DECEASED
    ):  # a death recorded since it was asked: nothing more goes to that phone
        ledger.release_hold(session, hold_id=row.hold_id, now=deps.now())
        row.status, row.settled_at = PayoutStatus.FAILED, deps.now()
        row.result_desc = "not sent: the member has died"
        session.flush()
        return None
    job = B2CJob(
        row.id,
        row.originator_conversation_id,
        row.msisdn,
        row.amount_cents,
        row.reference,
        resent=row.attempts > 0,
    )
    row.status, row.attempts, row.sent_at = PayoutStatus.SENDING, row.attempts + 1, deps.now()
    session.flush()
    return job


def _lock_payout(session: Session, **where: object) -> B2CPayout | None:
    query = select(B2CPayout).with_for_update()
    for name, value in where.items():
        query = query.where(getattr(B2CPayout, name) == value)
    return session.scalar(query)


def record_b2c_accepted(
    session: Session, deps: CoreDeps, payout_id: int, *, conversation_id: str
) -> None:
    """Daraja accepted the payout request. (Its result may already be in.)"""
    row = _lock_payout(session, id=payout_id)
    if row is None:
        raise NotFound(f"no payout {payout_id}")
    row.conversation_id = row.conversation_id or conversation_id[:64]
    if row.status in (PayoutStatus.SENDING, PayoutStatus.UNKNOWN):
        row.status = PayoutStatus.SENT
    session.flush()


def record_b2c_send_error(
    session: Session,
    deps: CoreDeps,
    payout_id: int,
    *,
    refused: bool,
    may_have_taken_effect: bool,
    detail: str,
) -> str:
    """The payout request did not get a clean answer. Returns the new status.

    Refused outright (nothing happened): the hold is released and the member told.
    May have taken effect: ``unknown``, the hold stays until a status query settles it.
    Never sent: back to ``requested`` so reconciliation sends it again (same id).
    """
    row = _lock_payout(session, id=payout_id)
    if row is None or row.status != PayoutStatus.SENDING:
        return row.status if row is not None else "missing"
    row.last_error = detail[:200]
    if refused and not may_have_taken_effect:
        _fail_payout(session, deps, row, code=None, desc=detail)
    elif may_have_taken_effect:
        row.status = PayoutStatus.UNKNOWN
    else:
        row.status = PayoutStatus.REQUESTED
    session.flush()
    return row.status


def _pay_payout(session: Session, deps: CoreDeps, row: B2CPayout, receipt: str | None) -> None:
    if row.purpose == ESTATE_PURPOSE:
        _pay_estate(session, deps, row, receipt)
        return
    savings = _payout_account(session, row)
    legs = [
        ledger.Leg(savings.id, row.amount_cents + row.fee_cents),
        ledger.Leg(ledger.account_id_by_code(session, FLOAT_OUT), -row.amount_cents),
    ]
    if row.fee_cents:
        legs.append(ledger.Leg(ledger.account_id_by_code(session, FEE_INCOME), -row.fee_cents))
    posted = ledger.post_hold(
        session,
        hold_id=row.hold_id,
        legs=legs,
        idempotency_key=f"mpesa:b2c:{row.originator_conversation_id}",
        kind=EntryKind.WITHDRAWAL_MPESA,
        now=deps.now(),
        memo=f"M-Pesa withdrawal {row.reference} {receipt or ''}".strip()[:160],
    )
    row.status, row.settled_at, row.entry_id = PayoutStatus.SUCCEEDED, deps.now(), posted.entry_id
    if receipt and not session.scalar(select(B2CPayout.id).where(B2CPayout.receipt == receipt)):
        row.receipt = receipt[:20]
    member = get_member(session, row.member_id)
    if row.purpose == EXIT_PURPOSE:  # an exit refund: the member's last account closes
        member_exit.refund_settled(session, deps, row.id, paid=True)
        notify(
            session, template="exit_refund_paid", business_key=f"withdrawal_result:{row.id}",
            now=deps.now(), member=member,
            data={"sacco": deps.sacco_name, "amount": format_cents(row.amount_cents),
                  "msisdn": row.msisdn, "receipt": receipt or "-"},
        )  # fmt: skip
        _publish_payout(session, deps, row, member, "withdrawal.paid", receipt)
        return
    notify(
        session,
        template="withdrawal_paid",
        business_key=f"withdrawal_result:{row.id}",
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "amount": format_cents(row.amount_cents),
            "fee": format_cents(row.fee_cents),
            "msisdn": row.msisdn,
            "receipt": receipt or "-",
            "reference": row.reference,
            "balance": _balance_text(session, savings.id),
        },
    )
    _publish_payout(session, deps, row, member, "withdrawal.paid", receipt)


def _estate_payable(session: Session, row: B2CPayout) -> EstatePayable:
    return death.lock_payable(
        session,
        session.scalars(select(EstatePayable.id).where(EstatePayable.payout_id == row.id)).one(),
    )


def _pay_estate(session: Session, deps: CoreDeps, row: B2CPayout, receipt: str | None) -> None:
    """A deceased member's payee paid by M-Pesa: the payable -> the disbursement float."""
    payable = _estate_payable(session, row)
    posted = ledger.post_hold(
        session, hold_id=row.hold_id,
        legs=[ledger.Leg(payable.account_id, row.amount_cents),
              ledger.Leg(ledger.account_id_by_code(session, FLOAT_OUT), -row.amount_cents)],
        idempotency_key=f"mpesa:b2c:{row.originator_conversation_id}",
        kind=EntryKind.WITHDRAWAL_MPESA, now=deps.now(),
        memo=f"M-Pesa estate payout {row.reference} {receipt or ''}".strip()[:160],
    )  # fmt: skip
    row.status, row.settled_at, row.entry_id = PayoutStatus.SUCCEEDED, deps.now(), posted.entry_id
    if receipt and not session.scalar(select(B2CPayout.id).where(B2CPayout.receipt == receipt)):
        row.receipt = receipt[:20]
    if ledger.get_balance(session, payable.account_id).balance_cents == 0:
        death.mark_paid(session, deps, payable, method=death.PayMethod.MPESA,
                        reference=receipt or row.reference, entry_id=posted.entry_id)  # fmt: skip
    notify(
        session, template="estate_share_paid", business_key=f"withdrawal_result:{row.id}",
        now=deps.now(), msisdn=row.msisdn,
        data={"sacco": deps.sacco_name, "amount": format_cents(row.amount_cents),
              "msisdn": row.msisdn, "receipt": receipt or "-"},
    )  # fmt: skip


def _publish_payout(
    session: Session,
    deps: CoreDeps,
    row: B2CPayout,
    member: Member,
    event_type: str,
    receipt: str | None,
) -> None:
    publish_event(
        session,
        event_type=event_type,
        event_id=f"{event_type}:{row.id}",
        now=deps.now(),
        data={
            "member_number": member.member_number,
            "amount_cents": row.amount_cents,
            "fee_cents": row.fee_cents,
            "mpesa_receipt": receipt,
            "reference": row.reference,
        },
    )


# The SMS of a failed payout, by ``B2CPayout.purpose`` (default ``withdrawal_failed``).
FAILED_TEMPLATES = {"loan": "loan_payout_failed", "year_end": "year_end_payout_failed"}


def _fail_payout(
    session: Session,
    deps: CoreDeps,
    row: B2CPayout,
    *,
    code: int | None,
    desc: str,
    alert_staff: bool = True,  # False when staff released it themselves
) -> None:
    ledger.release_hold(session, hold_id=row.hold_id, now=deps.now())
    row.status, row.settled_at = PayoutStatus.FAILED, deps.now()
    row.result_code, row.result_desc = code, desc[:200] or None
    member = get_member(session, row.member_id)
    if row.purpose == ESTATE_PURPOSE:  # open again: staff pay the payee at the branch
        payable = _estate_payable(session, row)
        payable.status, payable.method = death.PayableStatus.OPEN, None
        session.flush()
        if alert_staff:
            staff_alerts.payout_needs_staff(session, deps, row, member, "failed")
        return
    if row.purpose == EXIT_PURPOSE:  # refunded at the branch instead; the member is told
        member_exit.refund_settled(session, deps, row.id, paid=False)
        _publish_payout(session, deps, row, member, "withdrawal.failed", None)
        if alert_staff:
            staff_alerts.payout_needs_staff(session, deps, row, member, "failed")
        return
    notify(
        session,
        # A loan or a year-end net paid out by M-Pesa (``loan_payouts``, ``dividend_payouts``):
        # the money stays in savings, and the member reads that, not "withdrawal".
        template=FAILED_TEMPLATES.get(row.purpose, "withdrawal_failed"),
        business_key=f"withdrawal_result:{row.id}",
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "amount": format_cents(row.amount_cents),
            "reference": row.reference,
            "balance": _balance_text(session, _payout_account(session, row).id),
            "ussd_code": deps.ussd_code,
        },
    )
    _publish_payout(session, deps, row, member, "withdrawal.failed", None)
    if alert_staff:
        staff_alerts.payout_needs_staff(session, deps, row, member, "failed")


@dataclass(frozen=True, slots=True)
class B2COutcome:
    originator_conversation_id: str
    result_code: int
    result_desc: str = ""
    conversation_id: str = ""
    receipt: str | None = None


def settle_b2c(
    session: Session,
    deps: CoreDeps,
    outcome: B2COutcome,
    *,
    timeout: bool = False,
    callback_id: int | None = None,
) -> str:
    """Apply a B2C result (or queue timeout) exactly once. Returns ``paid``,
    ``failed``, ``unknown`` (queue timeout: the hold stays, a status query decides),
    ``duplicate`` or ``unmatched``."""
    row = _lock_payout(session, originator_conversation_id=outcome.originator_conversation_id)
    if row is None:
        return _done(session, deps, "unmatched", callback_id, outcome.originator_conversation_id)
    if row.status in B2C_FINAL:
        return _done(session, deps, "duplicate", callback_id, outcome.originator_conversation_id)
    if outcome.conversation_id and not row.conversation_id:
        row.conversation_id = outcome.conversation_id[:64]
    if timeout:
        row.status, row.last_error = (
            PayoutStatus.UNKNOWN,
            f"queue timeout: {outcome.result_desc}"[:200],
        )
        return _done(session, deps, "unknown", callback_id, outcome.originator_conversation_id)
    row.result_code, row.result_desc = outcome.result_code, outcome.result_desc[:200]
    if outcome.result_code == 0:
        _pay_payout(session, deps, row, outcome.receipt)
        return _done(session, deps, "paid", callback_id, outcome.originator_conversation_id)
    _fail_payout(session, deps, row, code=outcome.result_code, desc=outcome.result_desc)
    return _done(session, deps, "failed", callback_id, outcome.originator_conversation_id)


def record_status_query(session: Session, deps: CoreDeps, payout_id: int, query_id: str) -> None:
    row = _lock_payout(session, id=payout_id)
    if row is not None:
        row.status_query_id, row.queried_at = query_id[:64], deps.now()
    session.flush()


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    """A transaction-status answer about one of our payouts."""

    query_id: str
    original_originator_conversation_id: str | None
    found: bool | None  # False: M-Pesa has no such transaction; None: no verdict
    completed: bool  # M-Pesa says the payment completed
    failed: bool  # M-Pesa says it failed
    receipt: str | None = None
    detail: str = ""


def settle_status(
    session: Session, deps: CoreDeps, outcome: StatusOutcome, *, callback_id: int | None = None
) -> str:
    """Apply a status answer to a payout still open. Returns ``paid``, ``failed``,
    ``review`` (M-Pesa says "not found": parked for staff, never resent by itself),
    ``unknown``, ``duplicate`` or ``unmatched``."""
    row = None
    if outcome.original_originator_conversation_id:
        row = _lock_payout(
            session, originator_conversation_id=outcome.original_originator_conversation_id
        )
    if row is None and outcome.query_id:
        row = _lock_payout(session, status_query_id=outcome.query_id)
    if row is None:
        return _done(
            session, deps, "unmatched", callback_id, outcome.original_originator_conversation_id
        )
    if row.status in B2C_FINAL:
        return _done(
            session, deps, "duplicate", callback_id, outcome.original_originator_conversation_id
        )
    if outcome.completed:
        _pay_payout(session, deps, row, outcome.receipt)
        return _done(
            session, deps, "paid", callback_id, outcome.original_originator_conversation_id
        )
    if outcome.failed:
        _fail_payout(session, deps, row, code=None, desc=outcome.detail or "failed (status query)")
        return _done(
            session, deps, "failed", callback_id, outcome.original_originator_conversation_id
        )
    if outcome.found is False and row.status in (
        PayoutStatus.SENT,
        PayoutStatus.UNKNOWN,
        PayoutStatus.SENDING,
    ):
        # "Not found" does not prove the request never arrived (it may not be processed
        # yet, or be filed under another id), and Daraja is not known for certain to
        # refuse a repeated OriginatorConversationID: resending could pay twice for one
        # debit. The hold stays; staff look at the org portal and decide (payout.resolve).
        row.status, row.last_error = PayoutStatus.REVIEW, f"status query: {outcome.detail}"[:200]
        staff_alerts.payout_needs_staff(
            session, deps, row, get_member(session, row.member_id), "review"
        )
        return _done(
            session, deps, "review", callback_id, outcome.original_originator_conversation_id
        )
    row.last_error = f"status query: {outcome.detail}"[:200]
    return _done(session, deps, "unknown", callback_id, outcome.original_originator_conversation_id)


# ------------------------------------------------------------------ payouts only staff can settle

PAYOUT_RESOLUTIONS = ("resend", "release", "paid")
PAYOUT_LIST_STATUSES = (
    PayoutStatus.REVIEW,
    PayoutStatus.UNKNOWN,
    PayoutStatus.SENT,
    PayoutStatus.REQUESTED,
    PayoutStatus.SENDING,
    "all",
)


class PayoutNotInReview(DomainError):
    code = "payout_not_in_review"


@dataclass(frozen=True, slots=True)
class PayoutView:
    payout_id: int
    reference: str
    member_id: int
    member_number: str | None
    msisdn_masked: str
    amount_cents: int
    fee_cents: int
    status: str
    originator_conversation_id: str
    conversation_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    queried_at: datetime | None


def list_payouts(
    session: Session,
    *,
    status: str = PayoutStatus.REVIEW,
    branch: str | None = None,
    limit: int = 50,
    after_id: int = 0,
) -> list[PayoutView]:
    """Payouts in id order after ``after_id``: by default those waiting for staff
    (``review``); ``branch`` limits them to that branch's members."""
    if status not in PAYOUT_LIST_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(PAYOUT_LIST_STATUSES)}", field="status"
        )
    query = (
        select(B2CPayout, Member)
        .join(Member, Member.id == B2CPayout.member_id)
        .where(B2CPayout.id > after_id)
        .order_by(B2CPayout.id)
        .limit(max(1, min(limit, 500)))
    )
    if status != "all":
        query = query.where(B2CPayout.status == status)
    if branch is not None:
        query = query.where(Member.branch == branch)
    return [
        PayoutView(
            p.id,
            p.reference,
            p.member_id,
            m.member_number,
            mask_msisdn(p.msisdn),
            p.amount_cents,
            p.fee_cents,
            p.status,
            p.originator_conversation_id,
            p.conversation_id,
            p.attempts,
            p.last_error,
            p.created_at,
            p.sent_at,
            p.queried_at,
        )  # fmt: skip
        for p, m in session.execute(query).tuples()
    ]


def payout_member_id(session: Session, payout_id: int) -> int:
    member_id = session.scalar(select(B2CPayout.member_id).where(B2CPayout.id == payout_id))
    if member_id is None:
        raise NotFound("no such payout")
    return member_id


def check_payout_resolution(
    session: Session, *, member_id: int | None, payload: Mapping[str, object]
) -> int:
    """What ``resolve_payout`` needs, checked when staff ask (maker); returns the cents
    at stake (amount + fee), which decides who may approve."""
    payout_id = payload.get("payout_id")
    row = session.get(B2CPayout, payout_id) if type(payout_id) is int else None
    if row is None or row.member_id != member_id:
        raise InvalidInput("no such payout for this member", field="payout_id", reason="unknown")
    if row.status != PayoutStatus.REVIEW:
        raise PayoutNotInReview(f"payout {row.reference} is {row.status}, not waiting for staff")
    resolution = payload.get("resolution")
    if resolution not in PAYOUT_RESOLUTIONS:
        raise InvalidInput(
            f"resolution must be one of {', '.join(PAYOUT_RESOLUTIONS)}", field="resolution"
        )
    receipt = payload.get("receipt")
    if resolution == "paid":
        if not isinstance(receipt, str) or not RECEIPT_PATTERN.fullmatch(receipt):
            raise InvalidInput(
                "the M-Pesa receipt of the payment (8-20 capital letters and digits)",
                field="receipt",
            )
    elif receipt not in (None, ""):
        raise InvalidInput("a receipt is given only with resolution paid", field="receipt")
    return row.amount_cents + row.fee_cents


def resolve_payout(
    session: Session,
    deps: CoreDeps,
    *,
    payout_id: int,
    resolution: str,
    receipt: str | None,
    staff: str,
) -> dict[str, object]:
    """Settle a payout parked for staff (``review``), after a checker approved what the
    maker saw in the M-Pesa org portal.

    * ``resend``: M-Pesa shows no such payment: sent again (same OriginatorConversationID,
      flagged as a resend) by the next reconciliation run.
    * ``release``: M-Pesa shows no payment and none is to be made: the hold is released
      and the member told.
    * ``paid``: M-Pesa shows it paid (``receipt``): the hold is posted and the member told.

    Raises ``PayoutNotInReview`` if a result or a status answer settled it meanwhile.
    """
    row = _lock_payout(session, id=payout_id)
    if row is None:
        raise NotFound(f"no payout {payout_id}")
    if row.status != PayoutStatus.REVIEW:
        raise PayoutNotInReview(f"payout {row.reference} is {row.status}, not waiting for staff")
    note = f"staff ({staff}): {resolution}"[:200]
    if resolution == "resend":
        row.status, row.last_error = PayoutStatus.REQUESTED, note
    elif resolution == "release":
        _fail_payout(session, deps, row, code=None, desc=note, alert_staff=False)
    elif resolution == "paid" and receipt:
        row.result_code, row.result_desc = 0, note
        _pay_payout(session, deps, row, receipt)
    else:
        raise InvalidInput("unknown resolution", field="resolution")
    session.flush()
    return {"payout": row.reference, "status": row.status}


# ------------------------------------------------------------------ reconciliation


@dataclass
class DueWork:
    stk_to_query: list[tuple[int, str]] = field(default_factory=list)
    b2c_to_send: list[int] = field(default_factory=list)
    b2c_to_query: list[tuple[int, str]] = field(default_factory=list)
    stk_expired: int = 0
    stk_unknown: int = 0
    b2c_stuck: int = 0  # payouts left ``sending``: now ``unknown``, to be asked about


def due_for_reconciliation(
    session: Session, deps: CoreDeps, *, older_than: timedelta, limit: int = 200
) -> DueWork:
    """What the reconciliation job must do now; stale states are moved on here.

    * STK ``pending`` older than the cut-off: query it.
    * STK ``queued`` never sent: expired (``failed``; the member saw no prompt).
    * STK ``sending`` whose worker died: ``unknown`` (a callback can still adopt it);
      ``unknown`` with no CheckoutRequestID after the adoption window: ``failed``.
    * B2C ``requested`` (job lost, worker killed before the call, or a send that
      provably never left): send it.
    * B2C ``sending`` (worker died during the call): ``unknown``, never resent by
      itself: the request may have reached Daraja, and a second one could pay twice.
    * B2C ``sent``/``unknown`` with no result: ask for the transaction status (an
      answer settles it; "not found" parks it for staff, ``review``).
    """
    cutoff = deps.now() - older_than
    due = DueWork()
    for row in session.scalars(
        select(StkRequest)
        .where(
            StkRequest.status.in_((StkStatus.QUEUED, StkStatus.SENDING)),
            StkRequest.created_at < cutoff,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    ):
        if row.status == StkStatus.QUEUED:
            row.status, row.settled_at, row.result_desc = StkStatus.FAILED, deps.now(), "never sent"
            due.stk_expired += 1
        else:
            row.status = StkStatus.UNKNOWN
            due.stk_unknown += 1
    for row in session.scalars(
        select(StkRequest)
        .where(
            StkRequest.status == StkStatus.UNKNOWN,
            StkRequest.checkout_request_id.is_(None),
            StkRequest.created_at < deps.now() - ADOPT_WINDOW,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    ):
        # No id and no callback to adopt it for hours: nothing was paid that we can see;
        # a payment that did go through shows up in the statement import.
        row.status, row.settled_at = StkStatus.FAILED, deps.now()
        row.result_desc = "no answer from M-Pesa; see the statement import"
        due.stk_expired += 1
    due.stk_to_query = [
        (r.id, r.checkout_request_id or "")
        for r in session.scalars(
            select(StkRequest)
            .where(
                StkRequest.status.in_((StkStatus.PENDING, StkStatus.UNKNOWN)),
                StkRequest.checkout_request_id.is_not(None),
                StkRequest.created_at < cutoff,
            )
            .order_by(StkRequest.id)
            .limit(limit)
        )
    ]
    for payout in session.scalars(
        select(B2CPayout)
        .where(B2CPayout.status == PayoutStatus.SENDING, B2CPayout.sent_at < cutoff)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ):
        payout.status = PayoutStatus.UNKNOWN
        payout.last_error = "worker lost during the call; asking M-Pesa, not resending"
        due.b2c_stuck += 1
    session.flush()
    due.b2c_to_send = list(
        session.scalars(
            select(B2CPayout.id)
            .where(B2CPayout.status == PayoutStatus.REQUESTED, B2CPayout.created_at < cutoff)
            .order_by(B2CPayout.id)
            .limit(limit)
        )
    )
    due.b2c_to_query = [
        (p.id, p.originator_conversation_id)
        for p in session.scalars(
            select(B2CPayout)
            .where(
                B2CPayout.status.in_((PayoutStatus.SENT, PayoutStatus.UNKNOWN)),
                B2CPayout.created_at < cutoff,
                (B2CPayout.queried_at.is_(None)) | (B2CPayout.queried_at < cutoff),
            )
            .order_by(B2CPayout.id)
            .limit(limit)
        )
    ]
    session.flush()
    return due
