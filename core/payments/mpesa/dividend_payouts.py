"""Year-end nets paid by M-Pesa (issue 14, part 2; docs/savings/year-end.md, "Paid by M-Pesa").

Posting a year-end run (``core.savings.year_end.post_run``) credits every member's net to
savings, the ``mpesa`` choice included, and defers ``PayYearEndByMpesa(run_id)``. The
worker (``workers.year_end``; also ``manage.py year-end payouts`` and
``POST /api/v1/year-end/runs/{id}/payouts``) lists the run's ``mpesa`` members
(``core.savings.year_end.mpesa_members``) and calls ``pay_member`` once per member, each
in its own transaction:

* the SIM-swap status is assessed first (it may call out: before any lock), then the
  member row is locked (the lock order of every withdrawal: member, then accounts) and the
  payout key ``year_end.payout:<run>:<member>`` looked up again, so two triggers at once
  queue one payout;
* the amount is the net in whole shillings (M-Pesa pays no cents; the odd cents stay in
  savings), at most ``MpesaPolicy.loan_payout_max_cents`` (Safaricom's per-transaction
  limit, a setting): a net above it is paid up to the limit in one payout and the rest
  stays in savings (one payout per member and run, so the key stays the whole story);
* what cannot be sent stays in savings and the member is told once
  (``year_end_payout_kept``): a member no longer active, dormant savings (withdrawals
  wait for staff to reactivate them), a net under the withdrawal minimum, savings already
  spent below the amount. A SIM swap within the window (or a
  failed check the setting refuses) is the withdrawal guard's refusal
  (``flows.guard_sim_swap``: an event for staff and its own SMS); it is raised, kept, and
  counted by the caller;
* otherwise a hold on savings and a ``B2CPayout`` (purpose ``year_end``, no fee) with
  ``SendB2C`` deferred (``core.payments.mpesa.payouts.open_payout``, shared with loans).

From there the payout is a withdrawal like any other: paid, the hold is posted (savings ->
the disbursement float, ``withdrawal_paid``); failed, the hold is released and the money
stays in savings (``year_end_payout_failed``). Running it again queues nothing twice; it
tries again only the members who have no payout yet (a SIM swap staff have since cleared).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import NotFound
from core.kernel.money import format_cents
from core.ledger import entries as ledger
from core.ledger.chart import Purpose
from core.members.registration import member_account_ids
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from core.payments.mpesa.flows import guard_sim_swap
from core.payments.mpesa.jobs import SendB2C
from core.payments.mpesa.payouts import open_payout, payout_amount, payout_by_key
from core.payments.mpesa.rules import MpesaPolicy
from core.risk.sim_swap import SimSwapChecker
from core.risk.sim_swap import assess as assess_sim_swap
from core.savings.dormancy import dormant_since
from core.savings.vocabulary import PayoutChoice
from db.models import Member
from db.models_mpesa import B2CPayout
from db.models_year_end import YearEndLine, YearEndRun

YEAR_END_PURPOSE = "year_end"  # ``mpesa_b2c_payouts.purpose``

QUEUED = "queued"  # a payout was opened now
ALREADY = "already_queued"  # the member's payout exists (its send is deferred again)
# Kept in savings, the member told (``year_end_payout_kept``):
NOT_ACTIVE = "member_not_active"
BELOW_MINIMUM = "below_minimum"
SAVINGS_SPENT = "savings_spent"
DORMANT = "savings_dormant"  # withdrawals wait for staff to reactivate the account


def split_net(net_cents: int, policy: MpesaPolicy) -> tuple[int, int]:
    """(sent to M-Pesa, kept in savings) of a member's net: whole shillings, at most the
    per-transaction limit, nothing under the withdrawal minimum. The two add up to the net."""
    amount = min(payout_amount(net_cents), policy.loan_payout_max_cents)
    if amount < policy.withdrawal_min_cents:
        amount = 0
    return amount, net_cents - amount


def payout_key(run_id: int, member_id: int) -> str:
    return f"year_end.payout:{run_id}:{member_id}"


@dataclass(frozen=True)
class MemberPayout:
    member_id: int
    outcome: str  # QUEUED, ALREADY or a reason the net stays in savings
    amount_cents: int  # what goes to M-Pesa (0 when kept)
    kept_cents: int  # what of the net stays in savings


def _line(session: Session, run_id: int, member_id: int) -> YearEndLine:
    line = session.scalar(
        select(YearEndLine).where(
            YearEndLine.run_id == run_id,
            YearEndLine.member_id == member_id,
            YearEndLine.destination == PayoutChoice.MPESA,
            YearEndLine.credit_entry_id.is_not(None),
        )
    )
    if line is None:
        raise NotFound(f"run {run_id} pays member {member_id} nothing by M-Pesa")
    return line


def _already(session: Session, row: B2CPayout, line: YearEndLine) -> MemberPayout:
    uow.defer(session, SendB2C(row.id))  # the worker claims only a payout still ``requested``
    return MemberPayout(
        line.member_id, ALREADY, row.amount_cents, line.net_cents - row.amount_cents
    )


def _kept(
    session: Session, deps: CoreDeps, line: YearEndLine, member: Member, reason: str
) -> MemberPayout:
    run = session.get_one(YearEndRun, line.run_id)
    savings = member_account_ids(session, member.id)[Purpose.SAVINGS]
    notify(
        session,
        template="year_end_payout_kept",
        business_key=f"{payout_key(line.run_id, member.id)}:kept",
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "year": str(run.financial_year),
            "net": format_cents(line.net_cents),
            "balance": format_cents(ledger.get_balance(session, savings).available_cents),
            "ussd_code": deps.ussd_code,
        },
    )
    return MemberPayout(member.id, reason, 0, line.net_cents)


def pay_member(
    session: Session,
    deps: CoreDeps,
    *,
    run_id: int,
    member_id: int,
    policy: MpesaPolicy,
    sim_swap: SimSwapChecker,
) -> MemberPayout:
    """Queue one member's year-end payout (see the module's docstring); safe to run again
    and at the same time as itself. Raises ``SimSwapBlocked`` (kept: the event and its SMS
    are committed) when the SIM-swap guard refuses."""
    line = _line(session, run_id, member_id)
    key = payout_key(run_id, member_id)
    existing = payout_by_key(session, key)
    if existing is not None:
        return _already(session, existing, line)
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("no such member")
    # The SIM-swap check may call out (seconds): before any lock is taken.
    checked = member.msisdn
    assessment = assess_sim_swap(
        session, deps, sim_swap, member_id=member.id, msisdn=member.msisdn, policy=policy.sim_swap
    )
    session.flush()
    member = session.scalar(
        select(Member)
        .where(Member.id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert member is not None
    existing = payout_by_key(session, key)  # a second trigger got here first
    if existing is not None:
        return _already(session, existing, line)
    if member.status != MemberStatus.ACTIVE:
        return _kept(session, deps, line, member, NOT_ACTIVE)
    if dormant_since(session, member.id) is not None:
        return _kept(session, deps, line, member, DORMANT)
    amount, kept = split_net(line.net_cents, policy)
    if amount == 0:
        return _kept(session, deps, line, member, BELOW_MINIMUM)
    savings = member_account_ids(session, member.id)[Purpose.SAVINGS]
    if ledger.get_balance(session, savings).available_cents < amount:
        return _kept(session, deps, line, member, SAVINGS_SPENT)
    if checked != member.msisdn:  # the phone changed since it was checked
        assessment = assess_sim_swap(
            session, deps, sim_swap, member_id=member.id, msisdn=member.msisdn,
            policy=policy.sim_swap,
        )  # fmt: skip
    guard_sim_swap(
        session, deps, member=member, amount_cents=amount, policy=policy, assessment=assessment
    )
    run = session.get_one(YearEndRun, run_id)
    open_payout(
        session, deps, member_id=member.id, msisdn=member.msisdn, amount_cents=amount,
        idempotency_key=key, purpose=YEAR_END_PURPOSE,
        reason=f"{run.financial_year} dividend to M-Pesa {format_cents(amount)}",
    )  # fmt: skip
    return MemberPayout(member.id, QUEUED, amount, kept)


def year_end_payout_of(session: Session, run_id: int, member_id: int) -> B2CPayout | None:
    """A member's M-Pesa payout of a year-end run, if any."""
    return payout_by_key(session, payout_key(run_id, member_id))
