"""Member exit (issue 14, part 3; docs/members/exit.md): a member gives notice to leave,
and when the by-laws' notice period is over the exit run, approved by a manager, offsets
the member's loans against their deposits and savings, refunds the rest with the share
capital, closes the accounts and marks the member ``exited``. History is kept: nothing is
deleted, the ledger holds every step.

* ``request_exit`` (staff API, USSD): the notice. One per member (an exit is final); the
  same request again returns the first. From then on the member may not borrow (the
  appraisal counts them not active: ``core.loans.facts``) nor guarantee
  (``guarantor_leaving``: ``core.loans.guarantees``). SMS ``exit_notice``.
* ``plan`` (reads only): what the exit would do today and what stops it (``Blocker``):
  the member guarantees a loan (the pledge must be released or replaced first); owes more
  on loans than deposits and savings can offset (staff decide: collect the difference
  first); owes on a written-off loan; has an open loan application or money on hold (a
  payout under way); holds share capital the by-laws want transferred, not refunded.
* ``exit_run`` (``manage.py exit-run --maker USER``, by the injected clock): each exit
  whose notice is over is either blocked (SMS ``exit_blocked`` once per reason) or put to
  a manager as a maker-checker request (``member.exit``, checker
  ``approvals:decide_large``). Run it again: nothing new (idempotent).
* ``exit_member`` (the approved action, in the approval's transaction): deposits and share
  capital moved to savings (``member.exit_transfer``), each active loan repaid from
  savings through the ONE repayment use case (``core.loans.repayments.repay_loan``, source
  ``savings``; its own SMS), the rest refunded from savings to the bank account
  (``member.exit_refund``: the teller pays it in cash, or by bank transfer, against the
  exit's reference), the three accounts closed at zero, the member ``exited``, SMS
  ``exit_done``. The member's further savings accounts (holiday, school fees:
  ``core.savings.member_accounts``) count as savings: their balances offset loans and are
  moved to savings with the deposits (``further_cents``), and they are closed at zero too. Keys ``member.exit:<exit id>:…``: run again, it writes nothing.

Never commits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.approvals import engine
from core.approvals.vocabulary import ApprovalStatus
from core.audit import log as audit
from core.kernel import uow
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, MemberNotAllowed, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import MEMBER_PURPOSES, Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans import close_of_day, repayments
from core.loans.vocabulary import (
    OPEN_APPLICATION_STATUSES,
    GuaranteeStatus,
    LoanStatus,
    RepaymentSource,
)
from core.members.registration import get_member, member_account_ids, set_status
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from db.models import Account, ApprovalRequest, JournalEntry, Member
from db.models_exit import MemberExit
from db.models_loans import Loan, LoanApplication, LoanGuarantee
from db.models_savings import SavingsProduct

ACTION = "member.exit"
MAKER_PERMISSION = "member_status:request"  # "ask to suspend, reactivate or exit a member"
CHECKER_PERMISSION = "approvals:decide_large"  # a manager approves before money moves


class ExitStatus(StrEnum):
    NOTICE = "notice"  # notice given, the period running
    BLOCKED = "blocked"  # the period is over but something must be settled first
    AWAITING_APPROVAL = "awaiting_approval"  # a manager decides the run
    DONE = "done"  # offset, refunded, accounts closed, member exited


class ExitChannel(StrEnum):
    STAFF = "staff"
    USSD = "ussd"


class RefundMethod(StrEnum):
    """How the exit's refund is paid (``member_exits.refund_method``)."""

    BRANCH = "branch"  # teller cash or bank transfer against the exit's reference
    MPESA = "mpesa"  # B2C to the member's registered phone (a port the edge passes in)


@dataclass(frozen=True)
class RefundSent:
    """What an M-Pesa refund port did: the payout it started (held on savings) and its
    amount, or why M-Pesa was refused (the whole refund is then paid at the branch)."""

    payout_id: int | None
    amount_cents: int
    refused: str | None = None
    reference: str | None = None  # the payout's


class RefundPayout(Protocol):
    """Pays an exit refund by M-Pesa (``core.payments.mpesa.exit_refunds``), made by the
    edge for one member with their SIM-swap status assessed before any lock."""

    def pay(
        self, session: Session, deps: CoreDeps, member: Member, amount_cents: int, key: str
    ) -> RefundSent: ...


class SharesOnExit(StrEnum):
    """What the by-laws do with share capital on exit (setting ``EXIT_SHARES``)."""

    REFUND = "refund"  # paid back with deposits and savings
    TRANSFER_REQUIRED = "transfer_required"  # sold to another member first


class Blocker(StrEnum):
    """Why an exit cannot run yet; staff read the detail, the member an SMS."""

    GUARANTOR = "guarantees_loan"
    WRITTEN_OFF = "written_off_loan"
    OWES_MORE = "owes_more_than_savings"
    OPEN_APPLICATION = "open_loan_application"
    ON_HOLD = "money_on_hold"
    SHARES_TO_TRANSFER = "shares_to_transfer"
    FIXED_DEPOSIT = "fixed_deposit_open"


@dataclass(frozen=True)
class ExitPolicy:
    """The by-laws' figures (settings ``EXIT_NOTICE_DAYS``, ``EXIT_SHARES``)."""

    notice_days: int = 60
    shares: SharesOnExit = SharesOnExit.REFUND


class ExitRefused(DomainError):
    """The exit cannot go ahead: ``reason`` is the first ``Blocker`` (or ``exited``,
    ``not_due``), ``blockers`` all of them with what staff must do."""

    code = "exit_refused"


@dataclass(frozen=True)
class FurtherAccount:
    """A further savings account (``product_savings``) the exit empties and closes."""

    account_id: int
    code: str
    balance_cents: int


@dataclass(frozen=True)
class LoanOffset:
    loan_id: int
    reference: str
    payoff_cents: int  # what closes it today, taken from deposits then savings


@dataclass(frozen=True)
class Plan:
    """What the exit would do now. ``refund_cents`` = savings + further savings +
    deposits + shares (when refunded) − ``loans_offset_cents``, exactly."""

    member_id: int
    savings_cents: int
    deposits_cents: int
    shares_cents: int
    further: tuple[FurtherAccount, ...]
    further_cents: int
    loans: tuple[LoanOffset, ...]
    loans_offset_cents: int
    refund_cents: int
    blockers: tuple[tuple[str, str], ...]  # (Blocker, what to do)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "loans": [asdict(o) for o in self.loans],
            "further": [asdict(f) for f in self.further],
            "blockers": [{"reason": r, "detail": d} for r, d in self.blockers],
        }


# ------------------------------------------------------------------ reading


def exit_of(session: Session, member_id: int) -> MemberExit | None:
    return session.scalar(select(MemberExit).where(MemberExit.member_id == member_id))


def leaving(session: Session, member_id: int) -> bool:
    """Whether the member has given notice to leave (or left): no new loans or pledges."""
    return exit_of(session, member_id) is not None


def _balances(session: Session, member_id: int) -> dict[str, Account]:
    rows = session.scalars(
        select(Account).where(
            Account.member_id == member_id,
            Account.purpose.in_([Purpose.SAVINGS, Purpose.DEPOSITS, Purpose.SHARES]),
        )
    )
    return {a.purpose: a for a in rows}


def _further(session: Session, member_id: int) -> list[Account]:
    """The member's further savings accounts still open, by id."""
    return list(
        session.scalars(
            select(Account)
            .where(
                Account.member_id == member_id,
                Account.purpose == Purpose.PRODUCT_SAVINGS,
                Account.closed_at.is_(None),
            )
            .order_by(Account.id)
        )
    )


def _active_loans(session: Session, member_id: int, *, lock: bool = False) -> list[Loan]:
    query = (
        select(Loan)
        .where(Loan.member_id == member_id, Loan.status == LoanStatus.ACTIVE)
        .order_by(Loan.id)
    )
    if lock:
        query = query.with_for_update(key_share=True).execution_options(populate_existing=True)
    return list(session.scalars(query))


def _blockers(
    session: Session, member_id: int, accounts: dict[str, Account], further: list[Account],
    owed: int, shares: str,
) -> list[tuple[str, str]]:  # fmt: skip
    found: list[tuple[str, str]] = []
    pledged = session.scalars(
        select(Loan.reference)
        .join(LoanGuarantee, LoanGuarantee.loan_id == Loan.id)
        .where(
            LoanGuarantee.guarantor_id == member_id,
            LoanGuarantee.status == GuaranteeStatus.ACCEPTED,
        )
        .order_by(Loan.id)
    ).all()
    if pledged:
        found.append((Blocker.GUARANTOR, f"guarantees loan {', '.join(pledged)}: the pledge "
                      "must be released or replaced by another guarantor first"))  # fmt: skip
    written_off = session.scalar(
        select(func.count(Loan.id)).where(
            Loan.member_id == member_id, Loan.status == LoanStatus.WRITTEN_OFF
        )
    )
    if written_off:
        found.append((Blocker.WRITTEN_OFF, "has a written-off loan: staff settle what is "
                      "still to recover before the exit"))  # fmt: skip
    available = sum(
        accounts[p].balance_cents - accounts[p].held_cents
        for p in (Purpose.SAVINGS, Purpose.DEPOSITS)
    ) + sum(a.balance_cents - a.held_cents for a in further)
    if owed > available:
        found.append((Blocker.OWES_MORE, f"owes {format_cents(owed)} on loans, more than "
                      f"deposits and savings can offset ({format_cents(available)}): staff "
                      "decide (collect the difference first)"))  # fmt: skip
    applying = session.scalar(
        select(func.count(LoanApplication.id)).where(
            LoanApplication.member_id == member_id,
            LoanApplication.status.in_(list(OPEN_APPLICATION_STATUSES)),
        )
    )
    if applying:
        found.append((Blocker.OPEN_APPLICATION, "a loan application is still open: withdraw "
                      "or reject it first"))  # fmt: skip
    if (
        accounts[Purpose.SAVINGS].held_cents
        or accounts[Purpose.SHARES].held_cents
        or any(a.held_cents for a in further)
    ):  # deposits: pledges
        found.append((Blocker.ON_HOLD, "money is on hold on the member's accounts (a payout "
                      "under way): wait until it settles"))  # fmt: skip
    fixed = session.scalar(
        select(func.count(Account.id)).where(
            Account.member_id == member_id, Account.purpose == Purpose.FIXED_DEPOSIT,
            Account.closed_at.is_(None),
        )
    )  # fmt: skip
    if fixed:
        found.append((Blocker.FIXED_DEPOSIT, "a fixed deposit is still open: staff close it "
                      "early (POST /api/v1/fixed-deposits/{id}/close) or wait for its "
                      "maturity"))  # fmt: skip
    if shares == SharesOnExit.TRANSFER_REQUIRED and accounts[Purpose.SHARES].balance_cents:
        found.append((Blocker.SHARES_TO_TRANSFER, "the by-laws require share capital to be "
                      "transferred to another member before exit"))  # fmt: skip
    return found


def _plan(session: Session, deps: CoreDeps, member_id: int, loans: list[Loan],
          shares: str) -> Plan:  # fmt: skip
    accounts = _balances(session, member_id)
    offsets = tuple(
        LoanOffset(
            loan.id, loan.reference, repayments.position(session, deps, loan.id).payoff_cents
        )
        for loan in loans
    )
    owed = sum(o.payoff_cents for o in offsets)
    further_rows = _further(session, member_id)
    blockers = _blockers(session, member_id, accounts, further_rows, owed, shares)
    savings, deposits, share_capital = (
        accounts[p].balance_cents for p in (Purpose.SAVINGS, Purpose.DEPOSITS, Purpose.SHARES)
    )
    codes = {
        int(pid): str(code)
        for pid, code in session.execute(
            select(SavingsProduct.id, SavingsProduct.code).where(
                SavingsProduct.id.in_([a.savings_product_id for a in further_rows])
            )
        )
    }
    further = tuple(
        FurtherAccount(a.id, codes.get(a.savings_product_id or 0, a.code), a.balance_cents)
        for a in further_rows
    )
    further_cents = sum(f.balance_cents for f in further)
    refunded_shares = share_capital if shares == SharesOnExit.REFUND else 0
    return Plan(
        member_id=member_id, savings_cents=savings, deposits_cents=deposits,
        shares_cents=share_capital, further=further, further_cents=further_cents,
        loans=offsets, loans_offset_cents=owed,
        refund_cents=max(savings + further_cents + deposits + refunded_shares - owed, 0),
        blockers=tuple(blockers),
    )  # fmt: skip


def plan(session: Session, deps: CoreDeps, member_id: int, policy: ExitPolicy) -> Plan:
    """What the exit of ``member_id`` would do today and what stops it (writes nothing)."""
    get_member(session, member_id)
    return _plan(session, deps, member_id, _active_loans(session, member_id), policy.shares)


def check_direct_exit(session: Session, member_id: int) -> None:
    """A status change straight to ``exited`` (``member.status``) is only for a member
    with nothing at the SACCO: money in an account or an active loan goes through the exit
    (``MemberNotAllowed``, ``use_exit``), which offsets and refunds it."""
    money = session.scalar(
        select(func.count(Account.id)).where(
            Account.member_id == member_id,
            Account.purpose.in_([*MEMBER_PURPOSES, Purpose.PRODUCT_SAVINGS, Purpose.FIXED_DEPOSIT]),
            Account.balance_cents != 0,
        )
    )
    if money or _active_loans(session, member_id):
        raise MemberNotAllowed(
            "the member still has money or a loan with the SACCO: give notice with "
            "POST /api/v1/members/{id}/exit; the exit run offsets and refunds it",
            reason="use_exit",
        )


# ------------------------------------------------------------------ the notice


def request_exit(
    session: Session, deps: CoreDeps, *, member_id: int, reason: str, policy: ExitPolicy,
    channel: ExitChannel, actor: Principal | None = None,
    refund_method: RefundMethod = RefundMethod.BRANCH,
) -> tuple[MemberExit, bool]:  # fmt: skip
    """The member's notice to leave (see the module); ``(row, created)``. The same member
    again returns the first notice. ``InvalidInput`` for a reason of fewer than 3 or more
    than 200 characters; ``MemberNotAllowed`` (``exited``) for a member who has left."""
    text = " ".join((reason or "").split())
    if refund_method not in set(RefundMethod):
        raise InvalidInput("refund_method: branch or mpesa", field="refund_method")
    if not 3 <= len(text) <= 200:
        raise InvalidInput("reason: 3 to 200 characters", field="reason")
    session.scalar(select(Member.id).where(Member.id == member_id).with_for_update())
    member = get_member(session, member_id)
    earlier = exit_of(session, member_id)
    if earlier is not None:
        return earlier, False
    if member.status == MemberStatus.EXITED:
        raise MemberNotAllowed("the member has exited", reason="exited")
    now = deps.now()
    row = MemberExit(
        member_id=member.id, reason=text, channel=channel,
        requested_by=actor.id if actor is not None and actor.kind == "staff" else None,
        notice_days=policy.notice_days,
        due_on=business_date(now) + timedelta(days=policy.notice_days),
        status=ExitStatus.NOTICE, loans_offset_cents=0, refund_cents=0, shares_cents=0,
        requested_at=now, refund_method=RefundMethod(refund_method),
    )  # fmt: skip
    session.add(row)
    session.flush()
    notify(
        session, template="exit_notice", business_key=f"exit_notice:{row.id}", now=now,
        member=member, data={"sacco": deps.sacco_name, "due_on": _day(row.due_on)},
    )  # fmt: skip
    if actor is not None:
        audit.record(
            session, actor, "member.exit_notice", target_type="member", target_id=member.id,
            after={"exit_id": row.id, "due_on": row.due_on.isoformat(), "channel": channel},
            now=now,
        )  # fmt: skip
    return row, True


def _day(day: date) -> str:
    return day.strftime("%d/%m/%Y")


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class RunReport:
    asked: tuple[tuple[int, int], ...]  # (member id, approval request id)
    blocked: tuple[tuple[int, str], ...]  # (member id, first blocker)
    waiting: int  # already before a manager

    def __str__(self) -> str:
        return (
            f"exit-run: {len(self.asked)} put to a manager, {len(self.blocked)} blocked, "
            f"{self.waiting} already waiting"
        )


def exit_run(
    session: Session, deps: CoreDeps, maker: Principal, *, policy: ExitPolicy,
    large_threshold_cents: int,
) -> RunReport:  # fmt: skip
    """Each exit whose notice is over (``due_on`` on or before today, the injected clock):
    blocked, or asked of a manager (``member.exit``). Idempotent (see the module)."""
    today = business_date(deps.now())
    rows = session.scalars(
        select(MemberExit)
        .where(MemberExit.status != ExitStatus.DONE, MemberExit.due_on <= today)
        .order_by(MemberExit.id)
        .with_for_update()
    ).all()
    asked: list[tuple[int, int]] = []
    blocked: list[tuple[int, str]] = []
    waiting = 0
    for row in rows:
        if row.status == ExitStatus.AWAITING_APPROVAL and row.approval_id is not None:
            req = session.get_one(ApprovalRequest, row.approval_id)
            if req.status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED):
                waiting += 1
                continue
        try:
            with uow.savepoint(session):
                req = engine.request_approval(
                    session, deps, maker, ACTION,
                    payload={"exit_id": row.id, "shares": str(policy.shares)},
                    member_id=row.member_id, note="member exit after the notice period",
                    large_threshold_cents=large_threshold_cents,
                )  # fmt: skip
        except ExitRefused as refused:
            first = str(refused.context.get("reason", "refused"))
            _block(session, deps, row, first)
            blocked.append((row.member_id, first))
            continue
        row.status, row.approval_id, row.blocked_reason = ExitStatus.AWAITING_APPROVAL, req.id, None
        asked.append((row.member_id, req.id))
    session.flush()
    return RunReport(tuple(asked), tuple(blocked), waiting)


def _block(session: Session, deps: CoreDeps, row: MemberExit, reason: str) -> None:
    row.status, row.blocked_reason = ExitStatus.BLOCKED, reason[:40]
    notify(
        session, template="exit_blocked", business_key=f"exit_blocked:{row.id}:{reason}",
        now=deps.now(), member=get_member(session, row.member_id),
        data={"sacco": deps.sacco_name, "due_on": _day(row.due_on)},
    )  # fmt: skip
    session.flush()


def refuse_if_blocked(the: Plan) -> None:
    """``ExitRefused`` with the first blocker (and all of them) when anything blocks."""
    if the.blockers:
        raise ExitRefused(
            "; ".join(d for _, d in the.blockers), reason=the.blockers[0][0],
            blockers=[r for r, _ in the.blockers],
        )  # fmt: skip


def _due_exit(
    session: Session, deps: CoreDeps, member_id: int | None, exit_id: object
) -> MemberExit:
    if isinstance(exit_id, bool) or not isinstance(exit_id, int):
        raise InvalidInput("exit_id is required", field="exit_id")
    row = session.get(MemberExit, exit_id)
    if row is None or (member_id is not None and row.member_id != member_id):
        raise NotFound("no such exit")
    if row.due_on > business_date(deps.now()):
        raise ExitRefused(f"the notice period runs until {row.due_on.isoformat()}",
                          reason="not_due")  # fmt: skip
    return row


def _shares_rule(p: dict[str, Any]) -> SharesOnExit:
    value = p.get("shares", SharesOnExit.REFUND)
    if value not in set(SharesOnExit):
        raise InvalidInput("shares: refund or transfer_required", field="shares")
    return SharesOnExit(value)


def check_request(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    """The engine's check when the run is asked: the notice is over, nothing blocks it;
    the preview goes into the payload (what the manager reads). The amount: the refund."""
    row = _due_exit(session, deps, member_id, p.get("exit_id"))
    if row.status == ExitStatus.DONE:
        raise ExitRefused("the member has exited", reason="exited")
    the = _plan(session, deps, row.member_id, _active_loans(session, row.member_id),
                _shares_rule(p))  # fmt: skip
    refuse_if_blocked(the)
    p["preview"] = {k: v for k, v in the.as_dict().items() if k != "blockers"}
    return the.refund_cents


@dataclass(frozen=True)
class Exited:
    exit_id: int
    member_id: int
    loans_offset_cents: int
    refund_cents: int
    shares_cents: int
    refund_reference: str | None
    created: bool
    refund_method: str = RefundMethod.BRANCH
    mpesa_payout_id: int | None = None
    mpesa_refused: str | None = None  # why M-Pesa was refused (paid at the branch instead)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _exited(
    session: Session, row: MemberExit, *, created: bool, refused: str | None = None
) -> Exited:
    reference = None
    if row.refund_entry_id is not None:
        reference = session.scalar(
            select(JournalEntry.reference).where(JournalEntry.id == row.refund_entry_id)
        )
    return Exited(row.id, row.member_id, row.loans_offset_cents, row.refund_cents,
                  row.shares_cents, reference, created, row.refund_method,
                  row.refund_payout_id, refused)  # fmt: skip


def offset_loans(
    session: Session, deps: CoreDeps, member_id: int, *, prefix: str, shares: SharesOnExit,
    memo: str,
) -> tuple[Member, Plan, dict[str, int]]:  # fmt: skip
    """What an exit and the settlement of a deceased member's estate share
    (``core.members.death``): the member's row, their loans, then their savings, deposits
    and shares locked (in that order, as a repayment and the ledger lock them) before any
    balance is read; each loan's interest and penalties brought up to yesterday; the plan
    made and refused (``ExitRefused``) while anything blocks it; deposits and (when
    refunded) share capital moved to savings (``member.exit_transfer``, keyed
    ``<prefix>:transfer``); each active loan repaid from savings with its payoff through
    the one repayment use case (``<prefix>:loan:<id>``). What is left in savings is then
    exactly ``plan.refund_cents``: the caller pays it out. Run again: writes nothing."""
    session.scalar(select(Member.id).where(Member.id == member_id).with_for_update())
    member = get_member(session, member_id)
    loans = _active_loans(session, member.id, lock=True)  # first, as a repayment does
    # Then the member's savings (further ones too), deposits and shares (id order, as the
    # ledger locks them) before they are read: a deposit racing the exit waits, so the plan
    # is what is paid.
    session.scalars(
        select(Account.id)
        .where(Account.member_id == member.id,
               Account.purpose.in_([*MEMBER_PURPOSES, Purpose.PRODUCT_SAVINGS]))
        .order_by(Account.id).with_for_update()
    ).all()  # fmt: skip
    for loan in loans:  # interest and penalties up to yesterday, so the payoff is whole
        close_of_day.catch_up_loan(session, deps, loan.id)
    the = _plan(session, deps, member.id, loans, shares)
    refuse_if_blocked(the)
    accounts = member_account_ids(session, member.id)
    refunded_shares = the.shares_cents if shares == SharesOnExit.REFUND else 0
    moved = the.deposits_cents + refunded_shares + the.further_cents
    if moved:
        legs = [ledger.Leg(accounts[Purpose.SAVINGS], -moved)]
        if the.deposits_cents:
            legs.append(ledger.Leg(accounts[Purpose.DEPOSITS], the.deposits_cents))
        legs.extend(
            ledger.Leg(f.account_id, f.balance_cents) for f in the.further if f.balance_cents
        )
        if refunded_shares:
            legs.append(ledger.Leg(accounts[Purpose.SHARES], refunded_shares))
        ledger.post_entry(
            session, kind=EntryKind.MEMBER_EXIT_TRANSFER, legs=legs,
            idempotency_key=f"{prefix}:transfer", now=deps.now(), memo=memo,
        )  # fmt: skip
    for offset in the.loans:
        key = f"{prefix}:loan:{offset.loan_id}"
        repaid = repayments.repay_loan(
            session, deps,
            repayments.Repayment(
                amount_cents=offset.payoff_cents, source=RepaymentSource.SAVINGS,
                idempotency_key=key, business_key=key, loan_id=offset.loan_id,
                member_id=member.id,
            ),
        )  # fmt: skip
        assert repaid.closed, "the offset pays each loan off"
    left = ledger.get_balance(session, accounts[Purpose.SAVINGS]).balance_cents
    assert left == the.refund_cents, "what is left is what the plan said"
    return member, the, accounts


def exit_member(
    session: Session, deps: CoreDeps, exit_id: int, *, approval_id: int,
    shares: SharesOnExit = SharesOnExit.REFUND, refund_port: RefundPayout | None = None,
) -> Exited:  # fmt: skip
    """The exit itself (see the module), as ``approval_id`` approved it, with the figures
    of this moment. ``ExitRefused`` before any money moves when something blocks it."""
    row = session.scalar(
        select(MemberExit).where(MemberExit.id == exit_id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    if row is None:
        raise NotFound("no such exit")
    if row.status == ExitStatus.DONE:
        return _exited(session, row, created=False)
    member, the, accounts = offset_loans(
        session, deps, row.member_id, prefix=f"member.exit:{row.id}", shares=shares,
        memo="Exit: deposits, further savings and share capital to savings",
    )  # fmt: skip
    now = deps.now()
    prefix = f"member.exit:{row.id}"
    refunded_shares = the.shares_cents if shares == SharesOnExit.REFUND else 0
    left = the.refund_cents
    sent = RefundSent(None, 0)
    if left and row.refund_method == RefundMethod.MPESA:
        if refund_port is None:
            raise ExitRefused("M-Pesa is not configured: pay the refund at the branch",
                              reason="mpesa_unavailable")  # fmt: skip
        sent = refund_port.pay(session, deps, member, left, f"{prefix}:mpesa")
        row.refund_payout_id = sent.payout_id
    at_branch = left - sent.amount_cents  # all of it, or the cents M-Pesa cannot send
    if at_branch:
        refund = _refund_at_branch(session, deps, accounts[Purpose.SAVINGS], at_branch,
                                   f"{prefix}:refund")  # fmt: skip
        row.refund_entry_id = refund.entry_id
    closing = [accounts[Purpose.DEPOSITS], *(f.account_id for f in the.further)]
    if not sent.amount_cents:  # else closed when the payout settles (``refund_settled``)
        closing.append(accounts[Purpose.SAVINGS])
    if refunded_shares == the.shares_cents:
        closing.append(accounts[Purpose.SHARES])
    for account_id in closing:
        session.get_one(Account, account_id).closed_at = now
    set_status(session, member.id, MemberStatus.EXITED)
    row.status, row.approval_id, row.completed_at = ExitStatus.DONE, approval_id, now
    row.blocked_reason = None
    row.loans_offset_cents, row.refund_cents = the.loans_offset_cents, left
    row.shares_cents = refunded_shares
    session.flush()
    done = _exited(session, row, created=True, refused=sent.refused)
    data = {"sacco": deps.sacco_name, "amount": format_cents(the.loans_offset_cents),
            "balance": format_cents(left),
            "reference": done.refund_reference or sent.reference or "-"}  # fmt: skip
    if sent.amount_cents:
        data |= {"sent": format_cents(sent.amount_cents), "msisdn": member.msisdn,
                 "branch": format_cents(at_branch)}  # fmt: skip
    notify(
        session, template="exit_done_mpesa" if sent.amount_cents else "exit_done",
        business_key=f"exit_done:{row.id}", now=now, member=member, data=data,
    )  # fmt: skip
    return done


def _refund_at_branch(
    session: Session, deps: CoreDeps, savings_id: int, amount_cents: int, key: str
) -> ledger.PostedEntry:
    """Savings -> the bank account the teller's cash is banked to: the teller pays it in
    cash, or the bank transfers it, against the entry's reference."""
    return ledger.post_entry(
        session, kind=EntryKind.MEMBER_EXIT_REFUND,
        legs=[ledger.Leg(savings_id, amount_cents),
              ledger.Leg(ledger.account_id_by_code(session, SystemAccount.BANK), -amount_cents)],
        idempotency_key=key, now=deps.now(), memo="Exit refund, paid at the branch",
    )  # fmt: skip


def exit_of_payout(session: Session, payout_id: int) -> MemberExit | None:
    """The exit whose refund this M-Pesa payout pays, if any."""
    return session.scalar(select(MemberExit).where(MemberExit.refund_payout_id == payout_id))


def refund_settled(session: Session, deps: CoreDeps, payout_id: int, *, paid: bool) -> None:
    """An exit refund's M-Pesa payout has settled (the payments domain calls this after it
    posted or released the hold). Paid: the savings account, now at zero, is closed.
    Failed: the same amount is refunded at the branch instead (``member.exit_refund``,
    keyed ``member.exit:<id>:refund:fallback``), the account closed, the member told where
    to collect it (``exit_refund_failed``). Nothing is left in an exited member's account."""
    row = exit_of_payout(session, payout_id)
    if row is None:
        return
    accounts = member_account_ids(session, row.member_id)
    savings_id = accounts[Purpose.SAVINGS]
    if not paid:
        left = ledger.get_balance(session, savings_id).balance_cents
        if left:
            fallback = _refund_at_branch(session, deps, savings_id, left,
                                         f"member.exit:{row.id}:refund:fallback")  # fmt: skip
            member = get_member(session, row.member_id)
            notify(
                session, template="exit_refund_failed",
                business_key=f"exit_refund_failed:{row.id}", now=deps.now(), member=member,
                data={"sacco": deps.sacco_name, "amount": format_cents(left),
                      "reference": fallback.reference},
            )  # fmt: skip
    now_at = ledger.get_balance(session, savings_id)
    account = session.get_one(Account, savings_id)
    if now_at.balance_cents == 0 and now_at.held_cents == 0 and account.closed_at is None:
        account.closed_at = deps.now()
    session.flush()


def execute(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """The ``member.exit`` action approved: ``exit_member`` in the approval's transaction."""
    row = _due_exit(session, deps, req.member_id, p.get("exit_id"))
    port = (p.get("_ports") or {}).get("exit_refund")
    return exit_member(
        session, deps, row.id, approval_id=req.id, shares=_shares_rule(p), refund_port=port
    ).as_dict()


def refund_member(session: Session, request_id: int) -> int | None:
    """The member a pending ``member.exit`` request would refund by M-Pesa, else None: the
    edge then prepares the refund port (its SIM-swap check calls out) before deciding."""
    req = session.get(ApprovalRequest, request_id)
    if req is None or req.action != ACTION or req.status != ApprovalStatus.PENDING:
        return None
    exit_id = engine.payload_of(req).get("exit_id")
    row = session.get(MemberExit, exit_id) if type(exit_id) is int else None
    if row is None or row.refund_method != RefundMethod.MPESA:
        return None
    return row.member_id


def on_reject(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """A rejected run leaves the notice standing; the next ``exit_run`` asks again."""
    row = session.get(MemberExit, p.get("exit_id"))
    if row is not None and row.status == ExitStatus.AWAITING_APPROVAL:
        row.status = ExitStatus.NOTICE
        session.flush()
    return {}
