"""Death of a member (issue 14, part 3; docs/members/death.md): staff record it, every
channel of the member stops at once, and after a manager approves, the member's loans are
offset against their deposits, savings and shares exactly as an exit does
(``core.members.exit.offset_loans``: the one repayment use case), and what is left, the
estate, is shared out per the member's nomination into one payable account per
beneficiary (or held whole for the legal representative when there is no nomination),
from where each is paid at the branch or by M-Pesa.

* ``record_death`` (staff API): the date, the death certificate's number and where its
  scan is kept. The member becomes ``deceased`` in the same transaction (USSD ends with
  "your membership has ended", SMS commands answer ``sms_not_active``, no withdrawal or
  payout to that number is accepted, money arriving for them waits in suspense). Then the
  settlement is asked of a manager (maker-checker ``member.death``, checker
  ``approvals:decide_large``), or, when something must be settled first (the blockers of
  an exit: the member guarantees a loan, owes more than they hold, has a written-off loan,
  an open application or money on hold), the death is ``blocked`` with the reason and
  staff ask again (``ask_settlement``) once it is dealt with.
* ``settle_estate`` (the approved action): the offset, then ``split_estate`` (below) into
  the payable accounts, one entry ``member.estate_transfer``; the member's accounts closed
  at zero. Keys ``member.death:<id>:…``: run again, it writes nothing.
* A rejected settlement means the death was recorded in error: the member's status is
  put back to what it was and the record marked ``rejected``.
* ``pay_at_branch``: a payable paid in cash from the till or by bank transfer against a
  reference (``member.estate_payout``, Dr the payable / Cr bank), once.
  ``core.payments.mpesa.estate_payouts`` pays one by M-Pesa B2C to the beneficiary's
  phone.

Never commits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine
from core.audit import log as audit
from core.kernel import uow
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members import exit as member_exit
from core.members.registration import get_member, set_status
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from db.models import Account, ApprovalRequest, JournalEntry, Member
from db.models_exit import EstatePayable, MemberDeath
from db.models_members import MemberBeneficiary

ACTION = "member.death"
MAKER_PERMISSION = "member_status:request"  # "ask to suspend, reactivate or exit a member"
CHECKER_PERMISSION = "approvals:decide_large"  # a manager approves before money moves
HUNDRED = Decimal(100)
_CERTIFICATE = re.compile(r"[A-Z0-9][A-Z0-9/-]{2,39}")


class DeathStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    BLOCKED = "blocked"  # something must be settled first (exit's blockers)
    SETTLED = "settled"  # loans offset, the estate in its payable accounts
    REJECTED = "rejected"  # recorded in error: the member's status restored


class Payee(StrEnum):
    BENEFICIARY = "beneficiary"
    LEGAL_REPRESENTATIVE = "legal_representative"  # no nomination: the whole estate


class PayableStatus(StrEnum):
    OPEN = "open"
    PAYING = "paying"  # an M-Pesa payout under way
    PAID = "paid"


class PayMethod(StrEnum):
    CASH = "cash"
    BANK = "bank"
    MPESA = "mpesa"


class PayableNotOpen(DomainError):
    """The payable is paid already, or an M-Pesa payout of it is under way."""

    code = "payable_not_open"


# ------------------------------------------------------------------ pure


def split_estate(total_cents: int, shares: Sequence[Decimal]) -> list[int]:
    """``total_cents`` shared by percentages that sum to 100, in whole cents summing to
    exactly ``total_cents`` (largest remainder): each payee first gets the cents below
    their exact share, then the cents left over (fewer than the payees) go one each to the
    largest fractions dropped, the earlier nominee first on a tie. So each amount is
    within one cent of its exact share and nothing is lost or made up."""
    if type(total_cents) is not int or total_cents < 0:
        raise InvalidInput("the estate is a whole, non-negative number of cents")
    if not shares or sum(shares, Decimal(0)) != HUNDRED or any(s <= 0 for s in shares):
        raise InvalidInput("shares: positive percentages that sum to exactly 100")
    exact = [Decimal(total_cents) * share / HUNDRED for share in shares]
    amounts = [int(x) for x in exact]  # positive: int() is the floor
    left = total_cents - sum(amounts)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - amounts[i]), i))
    for i in order[:left]:
        amounts[i] += 1
    return amounts


def _certificate(text: str) -> str:
    value = re.sub(r"\s+", "", str(text or "")).upper()
    if not _CERTIFICATE.fullmatch(value):
        raise InvalidInput("certificate_ref: 3-40 letters, digits, / or -",
                           field="certificate_ref")  # fmt: skip
    return value


# ------------------------------------------------------------------ recording


def death_of(session: Session, member_id: int) -> MemberDeath | None:
    return session.scalar(select(MemberDeath).where(MemberDeath.member_id == member_id))


def record_death(
    session: Session, deps: CoreDeps, actor: Principal, *, member_id: int, died_on: date,
    certificate_ref: str, document_ref: str | None, large_threshold_cents: int,
) -> tuple[MemberDeath, bool]:  # fmt: skip
    """Record a member's death (see the module); ``(row, created)``. The same member
    again returns the first record (unless it was rejected: then it is recorded anew).
    ``InvalidInput`` for a date after today or a bad certificate number;
    ``MemberNotAllowed`` for a member who has exited."""
    today = business_date(deps.now())
    if not isinstance(died_on, date) or died_on > today or died_on.year < 1900:
        raise InvalidInput("died_on: a date, not after today", field="died_on")
    certificate = _certificate(certificate_ref)
    document = " ".join((document_ref or "").split())[:200] or None
    session.scalar(select(Member.id).where(Member.id == member_id).with_for_update())
    member = get_member(session, member_id)
    row = death_of(session, member_id)
    if row is not None and row.status != DeathStatus.REJECTED:
        return row, False
    if member.status == MemberStatus.EXITED:
        raise MemberNotAllowed("the member has exited", reason="exited")
    previous = member.status
    now = deps.now()
    if row is None:
        row = MemberDeath(member_id=member.id, recorded_at=now)
        session.add(row)
    row.died_on, row.certificate_ref, row.document_ref = died_on, certificate, document
    row.recorded_by = actor.id if actor.kind == "staff" else None
    row.recorded_at, row.status, row.blocked_reason = now, DeathStatus.AWAITING_APPROVAL, None
    row.previous_status = previous
    row.loans_offset_cents, row.estate_cents, row.approval_id = 0, 0, None
    set_status(session, member.id, MemberStatus.DECEASED)  # every channel stops now
    session.flush()
    audit.record(
        session, actor, "member.death_recorded", target_type="member", target_id=member.id,
        before={"status": previous},
        after={"death_id": row.id, "died_on": died_on.isoformat(), "certificate": certificate},
        now=now,
    )  # fmt: skip
    _ask(session, deps, actor, row, large_threshold_cents)
    return row, True


def _ask(
    session: Session, deps: CoreDeps, actor: Principal, row: MemberDeath,
    large_threshold_cents: int,
) -> None:  # fmt: skip
    try:
        with uow.savepoint(session):
            req = engine.request_approval(
                session, deps, actor, ACTION,
                payload={"death_id": row.id},
                member_id=row.member_id, note="settle a deceased member's estate",
                large_threshold_cents=large_threshold_cents,
            )  # fmt: skip
    except member_exit.ExitRefused as refused:
        row.status = DeathStatus.BLOCKED
        row.blocked_reason = str(refused.context.get("reason", "refused"))[:40]
        session.flush()
        return
    row.status, row.approval_id, row.blocked_reason = DeathStatus.AWAITING_APPROVAL, req.id, None
    session.flush()


def ask_settlement(
    session: Session, deps: CoreDeps, actor: Principal, *, member_id: int,
    large_threshold_cents: int,
) -> MemberDeath:  # fmt: skip
    """Ask a manager again for a death that was blocked, once staff settled what blocked
    it; it stays ``blocked`` (with the reason of now) while anything still does."""
    row = session.scalar(
        select(MemberDeath).where(MemberDeath.member_id == member_id).with_for_update()
    )
    if row is None:
        raise NotFound("no death recorded for this member")
    if row.status != DeathStatus.BLOCKED:
        raise InvalidInput(f"the death is {row.status}, not blocked", field="status",
                           reason=row.status)  # fmt: skip
    _ask(session, deps, actor, row, large_threshold_cents)
    return row


def _previous(value: object) -> str:
    return str(value) if value in set(MemberStatus) - {MemberStatus.DECEASED} else "active"


# ------------------------------------------------------------------ the approval


def _death(session: Session, member_id: int | None, p: dict[str, Any]) -> MemberDeath:
    death_id = p.get("death_id")
    if isinstance(death_id, bool) or not isinstance(death_id, int):
        raise InvalidInput("death_id is required", field="death_id")
    row = session.get(MemberDeath, death_id)
    if row is None or (member_id is not None and row.member_id != member_id):
        raise NotFound("no such death record")
    return row


def _nominees(session: Session, member_id: int) -> list[MemberBeneficiary]:
    return list(
        session.scalars(
            select(MemberBeneficiary)
            .where(MemberBeneficiary.member_id == member_id)
            .order_by(MemberBeneficiary.position)
        )
    )


def _shares_of(nominees: Sequence[MemberBeneficiary], estate_cents: int) -> list[int]:
    if not nominees:
        return [estate_cents]
    return split_estate(estate_cents, [Decimal(n.share_percent) for n in nominees])


def check_request(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    """The engine's check: the member is deceased, the estate not yet settled, nothing
    blocks the offset; the preview (the offset, the estate, each payee's amount) goes
    into the payload. The amount: the estate."""
    row = _death(session, member_id, p)
    if row.status == DeathStatus.SETTLED:
        raise InvalidInput("the estate is settled", field="death_id", reason="settled")
    the = member_exit.plan(session, deps, row.member_id, member_exit.ExitPolicy())
    member_exit.refuse_if_blocked(the)
    nominees = _nominees(session, row.member_id)
    amounts = _shares_of(nominees, the.refund_cents)
    p["preview"] = {
        **{k: v for k, v in the.as_dict().items() if k not in ("blockers", "refund_cents")},
        "estate_cents": the.refund_cents,
        "payees": [
            {"beneficiary": n.position, "share_percent": str(n.share_percent), "amount_cents": a}
            for n, a in zip(nominees, amounts, strict=False)
        ]
        or [{"legal_representative": True, "amount_cents": the.refund_cents}],
    }
    return the.refund_cents


@dataclass(frozen=True)
class Settled:
    death_id: int
    member_id: int
    loans_offset_cents: int
    estate_cents: int
    payables: tuple[dict[str, Any], ...]
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "payables": list(self.payables)}


def payable_dict(row: EstatePayable) -> dict[str, Any]:
    return {
        "payable_id": row.id, "payee": row.payee, "beneficiary_id": row.beneficiary_id,
        "share_percent": str(row.share_percent) if row.share_percent is not None else None,
        "amount_cents": row.amount_cents, "status": row.status, "method": row.method,
        "paid_reference": row.paid_reference,
    }  # fmt: skip


def payables_of(session: Session, death_id: int) -> list[EstatePayable]:
    return list(
        session.scalars(
            select(EstatePayable)
            .where(EstatePayable.death_id == death_id)
            .order_by(EstatePayable.id)
        )
    )


def _settled(session: Session, row: MemberDeath, *, created: bool) -> Settled:
    return Settled(
        row.id, row.member_id, row.loans_offset_cents, row.estate_cents,
        tuple(payable_dict(x) for x in payables_of(session, row.id)), created,
    )  # fmt: skip


def settle_estate(session: Session, deps: CoreDeps, death_id: int, *, approval_id: int) -> Settled:
    """The settlement itself (see the module), as ``approval_id`` approved it, with the
    figures of this moment. ``ExitRefused`` before any money moves when something blocks."""
    row = session.scalar(
        select(MemberDeath).where(MemberDeath.id == death_id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    if row is None:
        raise NotFound("no such death record")
    if row.status == DeathStatus.SETTLED:
        return _settled(session, row, created=False)
    prefix = f"member.death:{row.id}"
    member, the, accounts = member_exit.offset_loans(
        session, deps, row.member_id, prefix=prefix, shares=member_exit.SharesOnExit.REFUND,
        memo="Estate: deposits, further savings and share capital to savings",
    )  # fmt: skip
    now = deps.now()
    estate = the.refund_cents
    nominees = _nominees(session, member.id)
    amounts = _shares_of(nominees, estate)
    payees: list[tuple[MemberBeneficiary | None, int]] = (
        list(zip(nominees, amounts, strict=True)) if nominees else [(None, estate)]
    )
    legs = [ledger.Leg(accounts[Purpose.SAVINGS], estate)] if estate else []
    for n, (nominee, amount) in enumerate(payees, start=1):
        if not amount:
            continue
        account = ledger.create_account(
            session, code=f"2600-{member.member_number}-E{n}",  # under the payables (2xxx)
            name=f"Estate of {member.member_number}: "
            + (f"beneficiary {nominee.position}" if nominee else "legal representative"),
            type_="liability", purpose=Purpose.ESTATE_PAYABLE, no_overdraft=True, now=now,
            member_id=member.id,
        )  # fmt: skip
        session.add(
            EstatePayable(
                death_id=row.id, member_id=member.id, account_id=account.id,
                beneficiary_id=nominee.id if nominee else None,
                payee=Payee.BENEFICIARY if nominee else Payee.LEGAL_REPRESENTATIVE,
                share_percent=nominee.share_percent if nominee else None,
                amount_cents=amount, status=PayableStatus.OPEN, created_at=now,
            )
        )  # fmt: skip
        legs.append(ledger.Leg(account.id, -amount))
    entry = None
    if estate:
        entry = ledger.post_entry(
            session, kind=EntryKind.MEMBER_ESTATE_TRANSFER, legs=legs,
            idempotency_key=f"{prefix}:estate", now=now,
            memo=f"Estate of {member.member_number} to its payees",
        )  # fmt: skip
    for account_id in (
        *(accounts[p] for p in (Purpose.SAVINGS, Purpose.DEPOSITS, Purpose.SHARES)),
        *(f.account_id for f in the.further),  # moved to savings by ``offset_loans``
    ):
        session.get_one(Account, account_id).closed_at = now
    row.status, row.approval_id, row.settled_at = DeathStatus.SETTLED, approval_id, now
    row.loans_offset_cents, row.estate_cents, row.blocked_reason = (
        the.loans_offset_cents,
        estate,
        None,
    )
    session.flush()
    for payable in payables_of(session, row.id):
        phone = _phone_of(session, deps, payable)
        if phone is not None:
            notify(
                session, template="estate_share_ready", business_key=f"estate_share:{payable.id}",
                now=now, msisdn=phone,
                data={"sacco": deps.sacco_name, "amount": format_cents(payable.amount_cents),
                      "reference": entry.reference if entry else "-"},
            )  # fmt: skip
    return _settled(session, row, created=True)


def _phone_of(session: Session, deps: CoreDeps, payable: EstatePayable) -> str | None:
    if payable.beneficiary_id is None:
        return None
    nominee = session.get_one(MemberBeneficiary, payable.beneficiary_id)
    if nominee.msisdn_ciphertext is None:
        return None
    return deps.vault.decrypt(nominee.msisdn_ciphertext)


def beneficiary_phone(session: Session, deps: CoreDeps, payable_id: int) -> str | None:
    """The phone of the payee of this payable (None: no phone, or the legal representative)."""
    payable = session.get(EstatePayable, payable_id)
    if payable is None:
        raise NotFound("no such payable")
    return _phone_of(session, deps, payable)


def execute(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """The ``member.death`` action approved: ``settle_estate`` in the approval's transaction."""
    row = _death(session, req.member_id, p)
    return settle_estate(session, deps, row.id, approval_id=req.id).as_dict()


def on_reject(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """A rejected settlement: the death was recorded in error. The member's status goes
    back to what it was (the channels work again) and the record is kept, ``rejected``."""
    row = session.get(MemberDeath, p.get("death_id"))
    if row is None or row.status == DeathStatus.SETTLED:
        return {}
    member = get_member(session, row.member_id)
    restored = _previous(row.previous_status)
    if member.status == MemberStatus.DECEASED:
        member.status = restored
    row.status = DeathStatus.REJECTED
    session.flush()
    return {"status": restored}


# ------------------------------------------------------------------ paying the payees


def lock_payable(session: Session, payable_id: int) -> EstatePayable:
    row = session.scalar(
        select(EstatePayable).where(EstatePayable.id == payable_id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    if row is None:
        raise NotFound("no such payable")
    return row


def pay_at_branch(
    session: Session, deps: CoreDeps, actor: Principal, *, payable_id: int, method: str,
    reference: str,
) -> tuple[EstatePayable, bool]:  # fmt: skip
    """Pay a payable in cash from the till or by bank transfer (``reference``: the
    transfer's or the receipt's); ``(row, created)``. Paid already: the first payment.
    ``PayableNotOpen`` while an M-Pesa payout of it is under way."""
    if method not in (PayMethod.CASH, PayMethod.BANK):
        raise InvalidInput("method: cash or bank", field="method")
    text = " ".join((reference or "").split())
    if not 3 <= len(text) <= 40:
        raise InvalidInput("reference: 3 to 40 characters", field="reference")
    row = lock_payable(session, payable_id)
    if row.status == PayableStatus.PAID:
        return row, False
    if row.status != PayableStatus.OPEN:
        raise PayableNotOpen("an M-Pesa payout of this payable is under way", reason=row.status)
    now = deps.now()
    due = ledger.get_balance(session, row.account_id).balance_cents  # less cents paid already
    posted = ledger.post_entry(
        session, kind=EntryKind.MEMBER_ESTATE_PAYOUT,
        legs=[ledger.Leg(row.account_id, due),
              ledger.Leg(ledger.account_id_by_code(session, SystemAccount.BANK), -due)],
        idempotency_key=f"estate.payable:{row.id}:paid", now=now,
        memo=f"Estate payout by {method}, ref {text}",
    )  # fmt: skip
    mark_paid(
        session, deps, row, method=PayMethod(method), reference=text, entry_id=posted.entry_id
    )
    audit.record(
        session, actor, "member.estate_paid", target_type="member", target_id=row.member_id,
        after={"payable_id": row.id, "amount_cents": row.amount_cents, "method": method,
               "reference": text},
        now=now,
    )  # fmt: skip
    return row, True


def mark_paid(
    session: Session, deps: CoreDeps, row: EstatePayable, *, method: PayMethod, reference: str,
    entry_id: int | None,
) -> None:  # fmt: skip
    """The payable is paid (at the branch, or its M-Pesa payout confirmed): its account,
    now at zero, is closed."""
    row.status, row.method, row.paid_reference = PayableStatus.PAID, method, reference[:40]
    row.paid_entry_id, row.paid_at = entry_id, deps.now()
    session.get_one(Account, row.account_id).closed_at = deps.now()
    session.flush()


def entry_reference(session: Session, entry_id: int | None) -> str | None:
    if entry_id is None:
        return None
    return session.scalar(select(JournalEntry.reference).where(JournalEntry.id == entry_id))


def estate_report(session: Session) -> list[dict[str, Any]]:
    """Every estate with money still payable, the legal representative's first: what the
    SACCO holds for the families of deceased members."""
    rows = session.scalars(
        select(EstatePayable)
        .where(EstatePayable.status != PayableStatus.PAID)
        .order_by(EstatePayable.payee.desc(), EstatePayable.id)
    ).all()
    return [{**payable_dict(r), "member_id": r.member_id, "death_id": r.death_id} for r in rows]
