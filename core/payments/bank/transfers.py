"""Money out by bank transfer (issue 15, part 4; docs/integrations/banks.md).

The same two phases as a B2C payout (``core.payments.mpesa.loan_payouts``):

1. **hold**: a loan to be paid to the member's bank account is disbursed to savings by the
   loan book (``core.loans.disbursement.disburse`` with ``disburse_to = bank``), then, in
   the same transaction, ``BankLoanPayout.pay`` reserves a hold on savings and records a
   ``bank_transfers`` row (our unique ``reference``, the account copied encrypted) and
   defers ``SendBankTransfer``;
2. **send**: the worker claims the row (``claim_for_sending``: ``requested`` -> ``sending``,
   so two workers never send it twice), calls the bank, and records what it answered:
   accepted (``record_accepted``: ``sent``), refused (``record_refused``: ``failed``, the hold
   released, the member told) or nothing at all (``record_unsure``: ``unknown``; the
   transfer may have reached the bank, so it is never sent again by itself);
3. **settle**: the bank's callback (``apply_result``) posts the hold (Dr savings / Cr bank,
   ``withdrawal.bank``) or releases it. It is applied once: the transfer's row is locked,
   a settled transfer answers ``duplicate``, and the bank's reference is unique. A
   transfer left ``unknown`` or ``sent`` is asked about (``apply_result`` with the status
   query's answer); one the bank does not know goes to ``review`` for staff
   (``resolve_transfer``, maker-checker ``bank_transfer.resolve``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.kernel.uow import Job
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import get_member, member_account_ids
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from core.payments.bank.vocabulary import OPEN, TransferStatus, TransferType
from db.models import Member
from db.models_bank import BankTransfer, MemberBankAccount
from db.models_loans import Loan

LOAN_PURPOSE = "loan"
_BANK_CODE = re.compile(r"^[0-9]{2,8}$")
_ACCOUNT = re.compile(r"^[0-9]{6,20}$")


class BankUnavailable(DomainError):
    """No bank adapter at this edge (not configured), or no bank account on the member."""

    code = "bank_unavailable"


class TransferStateError(DomainError):
    """The transfer is not in a state that allows this."""

    code = "bank_transfer_state"


@dataclass(frozen=True)
class BankPolicy:
    """The SACCO's bank and the transfer rails' limits (settings; sources in the docs)."""

    own_bank_code: str  # the SACCO's bank: a member at the same bank is paid ``internal``
    debit_account: str  # the SACCO's account the money leaves from
    pesalink_max_cents: int  # above it, RTGS
    payout_min_cents: int


@dataclass(frozen=True)
class SendBankTransfer(Job):
    """Send a ``requested`` bank transfer."""

    transfer_id: int


@dataclass(frozen=True)
class SettleBankTransfers(Job):
    """Ask the bank about transfers left waiting (the scheduler's periodic job)."""


@dataclass(frozen=True, slots=True)
class TransferOrder:
    """What the adapter sends: everything the bank's funds-transfer request needs."""

    transfer_id: int
    reference: str
    debit_account: str
    credit_account: str
    bank_code: str
    account_name: str
    amount_cents: int
    transfer_type: str
    narration: str


@dataclass(frozen=True, slots=True)
class TransferResult:
    """A final word from the bank on one of our transfers (its callback or status query)."""

    reference: str  # ours
    bank_reference: str
    succeeded: bool
    code: str
    description: str
    amount_cents: int | None = None  # when the bank says it


def choose_type(policy: BankPolicy, bank_code: str, amount_cents: int) -> TransferType:
    """Same bank: ``internal``; another bank: PesaLink up to its limit, RTGS above it."""
    if bank_code == policy.own_bank_code:
        return TransferType.INTERNAL
    if amount_cents <= policy.pesalink_max_cents:
        return TransferType.PESALINK
    return TransferType.RTGS


def new_transfer_reference() -> str:
    return "BT" + ledger.new_reference()[1:]


# ------------------------------------------------------------------ member bank account


def set_member_bank_account(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    *,
    bank_code: str,
    account_number: str,
    account_name: str,
) -> MemberBankAccount:
    """Record (or replace) the bank account a member's loans may be paid to. The number is
    encrypted with the PII keys; the audit keeps its last four digits only."""
    bank_code = str(bank_code or "").strip()
    account_number = re.sub(r"[\s-]", "", str(account_number or ""))
    account_name = " ".join(str(account_name or "").split())
    if not _BANK_CODE.match(bank_code):
        raise InvalidInput("bank_code must be 2 to 8 digits", field="bank_code")
    if not _ACCOUNT.match(account_number):
        raise InvalidInput("account_number must be 6 to 20 digits", field="account_number")
    if not 2 <= len(account_name) <= 80:
        raise InvalidInput("account_name must be 2 to 80 characters", field="account_name")
    member = get_member(session, member_id)
    now = deps.now()
    row = session.scalar(
        select(MemberBankAccount).where(MemberBankAccount.member_id == member.id).with_for_update()
    )
    before = None if row is None else {"bank_code": row.bank_code, "last4": row.account_last4}
    if row is None:
        row = MemberBankAccount(member_id=member.id, created_at=now)
        session.add(row)
    row.bank_code = bank_code
    row.account_number_ciphertext = deps.vault.encrypt(account_number)
    row.account_last4 = account_number[-4:]
    row.account_name = account_name
    row.updated_at = now
    session.flush()
    audit.record(
        session, actor, "member.bank_account", target_type="member", target_id=member.id,
        before=before, after={"bank_code": bank_code, "last4": row.account_last4}, now=now,
    )  # fmt: skip
    return row


def member_bank_account(session: Session, member_id: int) -> MemberBankAccount | None:
    return session.scalar(select(MemberBankAccount).where(MemberBankAccount.member_id == member_id))


# ------------------------------------------------------------------ the loan payout port


def payout_key(loan_id: int) -> str:
    return f"loan.bank_payout:{loan_id}"


@dataclass(frozen=True)
class BankLoanPayout:
    """A ``core.loans.disbursement.LoanPayout`` paying a loan on to the member's bank
    account (``prepare_bank_payout``)."""

    member_id: int
    policy: BankPolicy

    def check(self, session: Session, deps: CoreDeps, net_cents: int) -> int:
        member = get_member(session, self.member_id)
        if member.status != MemberStatus.ACTIVE:
            raise MemberNotAllowed(f"member is {member.status}", reason=member.status)
        if member_bank_account(session, self.member_id) is None:
            raise BankUnavailable(
                "the member has no bank account on record", reason="no_bank_account"
            )
        if net_cents < self.policy.payout_min_cents:
            raise BankUnavailable("below the bank payout minimum", reason="below_minimum")
        return net_cents

    def pay(self, session: Session, deps: CoreDeps, loan: Loan, amount_cents: int) -> str:
        return request_transfer(
            session, deps, self.policy, member_id=loan.member_id, amount_cents=amount_cents,
            idempotency_key=payout_key(loan.id), narration=f"Loan {loan.reference}",
        ).reference  # fmt: skip


def prepare_bank_payout(session: Session, member_id: int, policy: BankPolicy) -> BankLoanPayout:
    """The payout port the loan book's disbursement uses for ``disburse_to = bank``."""
    if session.get(Member, member_id) is None:
        raise NotFound("no such member")
    return BankLoanPayout(member_id, policy)


def request_transfer(
    session: Session,
    deps: CoreDeps,
    policy: BankPolicy,
    *,
    member_id: int,
    amount_cents: int,
    idempotency_key: str,
    narration: str,
) -> BankTransfer:
    """Phase one: a hold on the member's savings and the transfer row; the send deferred.
    The same key again returns the first transfer (its send deferred again: the worker
    claims only a ``requested`` one)."""
    existing = session.scalar(
        select(BankTransfer).where(BankTransfer.idempotency_key == idempotency_key)
    )
    if existing is not None:
        uow.defer(session, SendBankTransfer(existing.id))
        return existing
    account = member_bank_account(session, member_id)
    if account is None:
        raise BankUnavailable("the member has no bank account on record", reason="no_bank_account")
    now = deps.now()
    reference = new_transfer_reference()
    hold = ledger.reserve_hold(
        session,
        account_id=member_account_ids(session, member_id)[Purpose.SAVINGS],
        amount_cents=amount_cents,
        idempotency_key=f"bank:transfer:{reference}:hold",
        now=now,
        reason=f"{narration} to bank ****{account.account_last4} {format_cents(amount_cents)}",
    )
    row = BankTransfer(
        reference=reference,
        idempotency_key=idempotency_key,
        purpose=LOAN_PURPOSE,
        member_id=member_id,
        amount_cents=amount_cents,
        transfer_type=choose_type(policy, account.bank_code, amount_cents),
        bank_code=account.bank_code,
        account_number_ciphertext=account.account_number_ciphertext,
        account_last4=account.account_last4,
        account_name=account.account_name,
        hold_id=hold.hold_id,
        status=TransferStatus.REQUESTED,
        attempts=0,
        created_at=now,
    )
    session.add(row)
    session.flush()
    uow.defer(session, SendBankTransfer(row.id))
    return row


# ------------------------------------------------------------------ send


def _lock(session: Session, transfer_id: int) -> BankTransfer:
    row = session.scalar(
        select(BankTransfer)
        .where(BankTransfer.id == transfer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound("no such bank transfer")
    return row


def claim_for_sending(
    session: Session, deps: CoreDeps, policy: BankPolicy, transfer_id: int
) -> TransferOrder | None:
    """``requested`` -> ``sending`` under the row's lock, and the order to send; None when
    another worker has it or it is past sending."""
    row = _lock(session, transfer_id)
    if row.status != TransferStatus.REQUESTED:
        return None
    row.status = TransferStatus.SENDING
    row.attempts += 1
    row.sent_at = deps.now()
    session.flush()
    return TransferOrder(
        transfer_id=row.id,
        reference=row.reference,
        debit_account=policy.debit_account,
        credit_account=deps.vault.decrypt(row.account_number_ciphertext),
        bank_code=row.bank_code,
        account_name=row.account_name,
        amount_cents=row.amount_cents,
        transfer_type=row.transfer_type,
        narration=f"SACCO {row.purpose} {row.reference}",
    )


def record_accepted(
    session: Session, deps: CoreDeps, transfer_id: int, retrieval_reference: str
) -> str:
    """The bank took the order (its ``retrievalRefNumber`` kept; the transfer's own
    reference, ``ftReference``, comes with the result by callback). A callback that came
    first has already settled it: nothing changes."""
    row = _lock(session, transfer_id)
    if row.status not in (TransferStatus.SENDING, TransferStatus.UNKNOWN):
        return row.status
    row.status = TransferStatus.SENT
    row.retrieval_reference = (retrieval_reference or "")[:64] or None
    session.flush()
    return row.status


def record_refused(
    session: Session, deps: CoreDeps, transfer_id: int, code: str, description: str
) -> str:
    """The bank refused the order outright (its synchronous error): nothing moved."""
    row = _lock(session, transfer_id)
    if row.status not in (TransferStatus.SENDING, TransferStatus.UNKNOWN):
        return row.status
    _fail(session, deps, row, code, description)
    return row.status


def record_unsure(session: Session, deps: CoreDeps, transfer_id: int, error: str) -> str:
    """No answer (a timeout, a dropped connection, a 5xx): the order may have reached the
    bank, so the hold stays and the transfer is ``unknown`` until the bank says."""
    row = _lock(session, transfer_id)
    if row.status != TransferStatus.SENDING:
        return row.status
    row.status = TransferStatus.UNKNOWN
    row.last_error = error[:200]
    session.flush()
    return row.status


def unsettled(session: Session, *, older_than: datetime) -> list[int]:
    """Transfers sent or unknown since before ``older_than``: ask the bank about them."""
    return list(
        session.scalars(
            select(BankTransfer.id)
            .where(
                BankTransfer.status.in_((TransferStatus.SENT, TransferStatus.UNKNOWN)),
                BankTransfer.created_at < older_than,
            )
            .order_by(BankTransfer.id)
        )
    )


def mark_for_review(session: Session, deps: CoreDeps, transfer_id: int, why: str) -> str:
    """The bank does not know the transfer (status query) or the answer disagrees with
    ours: only staff can settle it now."""
    row = _lock(session, transfer_id)
    if row.status not in (TransferStatus.SENT, TransferStatus.UNKNOWN, TransferStatus.SENDING):
        return row.status
    row.status = TransferStatus.REVIEW
    row.last_error = why[:200]
    session.flush()
    return row.status


# ------------------------------------------------------------------ settle


def apply_result(session: Session, deps: CoreDeps, result: TransferResult) -> str:
    """Settle one of our transfers from the bank's word, exactly once: ``succeeded`` (the
    hold posted), ``failed`` (released), ``duplicate`` (already settled the same way),
    ``conflict`` (settled the other way, or the amounts differ: sent to review),
    ``unmatched`` (no transfer of ours has that reference)."""
    row_id = session.scalar(
        select(BankTransfer.id).where(BankTransfer.reference == result.reference)
    )
    if row_id is None:
        return "unmatched"
    row = _lock(session, row_id)
    if row.status in (TransferStatus.SUCCEEDED, TransferStatus.FAILED):
        same = (row.status == TransferStatus.SUCCEEDED) == result.succeeded
        return "duplicate" if same else "conflict"
    if row.status == TransferStatus.REVIEW:
        return "review"
    if result.amount_cents is not None and result.amount_cents != row.amount_cents:
        row.status = TransferStatus.REVIEW
        row.last_error = f"bank says {result.amount_cents} cents"[:200]
        session.flush()
        return "conflict"
    row.result_code = result.code[:16]
    row.result_desc = result.description[:200]
    if not result.succeeded:
        _fail(session, deps, row, result.code, result.description)
        return "failed"
    if result.bank_reference:
        taken = session.scalar(
            select(BankTransfer.id).where(
                BankTransfer.bank_reference == result.bank_reference, BankTransfer.id != row.id
            )
        )
        if taken is not None:
            row.status = TransferStatus.REVIEW
            row.last_error = "the bank's reference belongs to another transfer"
            session.flush()
            return "conflict"
        row.bank_reference = result.bank_reference[:64]
    _succeed(session, deps, row)
    return "succeeded"


def _succeed(session: Session, deps: CoreDeps, row: BankTransfer) -> None:
    now = deps.now()
    savings = member_account_ids(session, row.member_id)[Purpose.SAVINGS]
    bank = ledger.account_id_by_code(session, SystemAccount.BANK)
    posted = ledger.post_hold(
        session,
        hold_id=row.hold_id,
        legs=[ledger.Leg(savings, row.amount_cents), ledger.Leg(bank, -row.amount_cents)],
        idempotency_key=f"bank:transfer:{row.reference}",
        kind=EntryKind.WITHDRAWAL_BANK,
        now=now,
        memo=f"To bank ****{row.account_last4} ref {row.reference}",
    )
    row.status = TransferStatus.SUCCEEDED
    row.entry_id = posted.entry_id
    row.settled_at = now
    session.flush()
    notify(
        session,
        template="bank_transfer_paid",
        business_key=f"bank_transfer_result:{row.id}",
        now=now,
        member=get_member(session, row.member_id),
        data={
            "sacco": deps.sacco_name,
            "amount": format_cents(row.amount_cents),
            "digits": row.account_last4,
            "reference": row.reference,
        },
    )


def _fail(session: Session, deps: CoreDeps, row: BankTransfer, code: str, desc: str) -> None:
    now = deps.now()
    ledger.release_hold(session, hold_id=row.hold_id, now=now)
    row.status = TransferStatus.FAILED
    row.result_code = (code or "")[:16]
    row.result_desc = (desc or "")[:200]
    row.settled_at = now
    session.flush()
    notify(
        session,
        template="bank_transfer_failed",
        business_key=f"bank_transfer_result:{row.id}",
        now=now,
        member=get_member(session, row.member_id),
        data={
            "sacco": deps.sacco_name,
            "amount": format_cents(row.amount_cents),
            "reference": row.reference,
            "ussd_code": deps.ussd_code,
        },
    )


# ------------------------------------------------------------------ staff review

RESOLUTIONS = ("paid", "not_paid")


def check_resolution(session: Session, payload: dict[str, object]) -> int:
    """Validate a ``bank_transfer.resolve`` request; its amount in cents."""
    transfer_id = payload.get("transfer_id")
    if type(transfer_id) is not int:
        raise InvalidInput("transfer_id is required", field="transfer_id")
    resolution = payload.get("resolution")
    if resolution not in RESOLUTIONS:
        raise InvalidInput("resolution must be paid or not_paid", field="resolution")
    bank_reference = payload.get("bank_reference")
    if resolution == "paid" and not (isinstance(bank_reference, str) and bank_reference.strip()):
        raise InvalidInput("a paid transfer needs the bank's reference", field="bank_reference")
    row = session.get(BankTransfer, transfer_id)
    if row is None:
        raise NotFound("no such bank transfer")
    if row.status not in (TransferStatus.REVIEW, TransferStatus.UNKNOWN):
        raise TransferStateError(f"the transfer is {row.status}", reason="not_in_review")
    return row.amount_cents


def resolve_transfer(
    session: Session,
    deps: CoreDeps,
    *,
    transfer_id: int,
    resolution: str,
    bank_reference: str | None,
    staff: str,
) -> dict[str, object]:
    """Staff settle a transfer the bank could not: ``paid`` posts the hold with the bank's
    reference (from the bank statement or the bank's portal), ``not_paid`` releases it."""
    row = _lock(session, transfer_id)
    if row.status not in (TransferStatus.REVIEW, TransferStatus.UNKNOWN):
        raise TransferStateError(f"the transfer is {row.status}", reason="not_in_review")
    row.status = TransferStatus.SENT  # apply_result settles open transfers only
    session.flush()
    outcome = apply_result(
        session,
        deps,
        TransferResult(
            reference=row.reference,
            bank_reference=(bank_reference or "").strip(),
            succeeded=resolution == "paid",
            code="staff",
            description=f"settled by {staff}",
        ),
    )
    if outcome not in ("succeeded", "failed"):
        raise TransferStateError(f"could not settle: {outcome}", reason=outcome)
    return {"transfer": row.reference, "status": row.status}


def transfer_dict(row: BankTransfer) -> dict[str, object]:
    """A transfer as staff see it (the account number masked)."""
    return {
        "id": row.id,
        "reference": row.reference,
        "member_id": row.member_id,
        "amount_cents": row.amount_cents,
        "type": row.transfer_type,
        "bank_code": row.bank_code,
        "account": f"****{row.account_last4}",
        "status": row.status,
        "bank_reference": row.bank_reference,
        "result_desc": row.result_desc,
        "created_at": row.created_at.isoformat(),
        "open": row.status in OPEN,
    }
