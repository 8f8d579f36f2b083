"""Year-end payouts by M-Pesa: thin — list a posted run's ``mpesa`` members, then one unit of
work per member (``core.payments.mpesa.dividend_payouts.pay_member``).

``pay_year_end_by_mpesa(run_id)`` is the job ``core.savings.jobs.PayYearEndByMpesa`` maps
to (deferred when a run is posted, or asked for again by staff); ``run_year_end_payouts``
takes the M-Pesa context explicitly (``manage.py year-end payouts``, tests). A member the
SIM-swap guard refuses, or whose payout fails for a reason of theirs, does not stop the
others: it is counted under its reason and the net stays in savings.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core.kernel.errors import SaccoError
from core.payments.mpesa import dividend_payouts
from core.savings import year_end
from db.session import run_in_transaction
from integrations.mpesa.wiring import MpesaContext

log = logging.getLogger(__name__)


@dataclass
class PayoutReport:
    run_id: int
    members: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    queued_cents: int = 0  # what the queued payouts (new or earlier) send to M-Pesa
    kept_cents: int = 0  # what of the members' nets stays in savings

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none"
        return (
            f"run {self.run_id}: {self.members} members by M-Pesa: {counts}; "
            f"to M-Pesa {self.queued_cents / 100:,.2f}, kept in savings "
            f"{self.kept_cents / 100:,.2f}"
        )


def pay_year_end_by_mpesa(run_id: int, *, ctx: MpesaContext | None = None) -> None:
    from workers.mpesa import worker_context

    log.info("year-end payouts: %s", run_year_end_payouts(ctx or worker_context(), run_id))


def run_year_end_payouts(ctx: MpesaContext, run_id: int) -> PayoutReport:
    """Queue every payout of the run not queued yet. Raises ``YearEndRefused``
    (``not_posted``) for a run not posted."""
    factory, deps = ctx.runtime.session_factory, ctx.runtime.deps
    members = run_in_transaction(factory, lambda s: year_end.mpesa_members(s, run_id))
    report = PayoutReport(run_id, members=len(members))
    for member_id in members:

        def pay(s: Session, m: int = member_id) -> dividend_payouts.MemberPayout:
            return dividend_payouts.pay_member(
                s, deps, run_id=run_id, member_id=m, policy=ctx.policy, sim_swap=ctx.sim_swap
            )

        try:
            done = run_in_transaction(factory, pay)
        except SaccoError as exc:  # the SIM-swap guard (kept), savings locked meanwhile
            log.warning("year-end payout run %d member %d: %s", run_id, member_id, exc.code)
            report.outcomes[str(exc.context.get("reason") or exc.code)] += 1
            continue
        report.outcomes[done.outcome] += 1
        report.queued_cents += done.amount_cents
        report.kept_cents += done.kept_cents
    return report
