"""Close of day's reminders and notices, and the credit-bureau listing marks (issue 13,
parts 6 and 9; docs/loans/close-of-day.md): the ``notify`` step, after ``classify``.

A run closes business date ``d`` once it is over, so what it sends reaches the member on
``d + 1``, the **reading day**. Which loans get what is SQL over the book, from the
instalments and the figures ``classify`` just wrote for ``d`` (``loan_day_states``):

* ``due_soon``: an instalment not fully paid falls due ``due_soon_days`` after the reading
  day; ``due_today``: it falls due on the reading day;
* ``overdue_1``, ``overdue_7``, ``overdue_30``: the loan is that many days past due on
  ``d`` (about its oldest unpaid instalment); ``guarantor_30``: each guarantor whose pledge
  is accepted is told when the loan is 30 days past due, with their pledge as it stands;
* ``pre_listing``: the loan's arrears are above the listing threshold and the borrower has
  never had a pre-listing notice (once per loan).

Each notice is one row of ``loan_notices``, unique on (loan, kind, instalment, recipient),
inserted set-based with ``ON CONFLICT DO NOTHING``; an SMS is queued (outbox, keyed by the
row's ``outbox_key``) only for the rows actually inserted, in the recipient's language. So
the step run twice sends nothing twice, and a loan touched by two runs is told once.

A date closed late (a catch-up: the reading day is already past) sends nothing: a reminder
of a day gone by, or a burst of old overdue notices after an outage, would mislead. Its
marks are still brought up to date.

Then every loan of the book gets its **mark** (``loan_bureau_marks``): *listable* as
negative information when its arrears are above the threshold and at least
``listing_notice_days`` have passed since the reading day of its pre-listing notice; a
repaid loan loses its mark. The bureau file itself is another issue's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.kernel.calendar import NAIROBI, business_date
from core.kernel.deps import CoreDeps
from core.kernel.money import format_cents
from core.loans.vocabulary import GuaranteeStatus, LoanStatus, NoticeKind
from core.messaging.notifications import first_name, notify
from db.models import Member

DATE_FORMAT = "%d/%m/%Y"

# The SMS template of each kind (core/messaging/catalogues/sms.*.toml).
TEMPLATES: dict[NoticeKind, str] = {
    NoticeKind.DUE_SOON: "loan_due_soon",
    NoticeKind.DUE_TODAY: "loan_due_today",
    NoticeKind.OVERDUE_1: "loan_overdue_1",
    NoticeKind.OVERDUE_7: "loan_overdue_7",
    NoticeKind.OVERDUE_30: "loan_overdue_30",
    NoticeKind.GUARANTOR_30: "loan_guarantor_overdue",
    NoticeKind.PRE_LISTING: "loan_pre_listing",
}
OVERDUE_DAYS = (1, 7, 30)  # the days past due that send a notice (overdue_<n>)
GUARANTOR_DAYS = 30


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    """The step's settings (``config.Settings``; docs/operators/configuration.md)."""

    due_soon_days: int = 3  # NOTICE_DUE_SOON_DAYS
    # Negative information is listed only above KES 1,000 (Banking (Credit Reference Bureau)
    # Regulations, 2020), after a pre-listing notice of 30 days: BUREAU_LISTING_*.
    listing_threshold_cents: int = 100_000
    listing_notice_days: int = 30
    send_from_hour: int = 8  # NOTICE_SEND_FROM_HOUR: not before this hour, Nairobi

    def __post_init__(self) -> None:
        if self.due_soon_days < 1 or self.listing_notice_days < 0:
            raise ValueError("due_soon_days must be at least 1, listing_notice_days at least 0")
        if self.listing_threshold_cents < 0 or not 0 <= self.send_from_hour <= 23:
            raise ValueError("listing threshold must be >= 0 and send_from_hour 0-23")


@dataclass(frozen=True, slots=True)
class NotifyResult:
    loans: int  # loans told something (borrower or guarantors)
    amount_cents: int  # arrears of the loans marked listable on the date
    detail: dict[str, Any]


_UNPAID = (
    "i.principal_cents + i.interest_cents + i.fee_cents - i.paid_principal_cents"
    " - i.paid_interest_cents - i.paid_fee_cents - i.waived_interest_cents"
)

# What a member in arrears must pay to be current on :day: the instalments due and unpaid
# (classify's figure) and the penalty charged on them and not paid (accrue's), as a
# repayment takes the penalty first (docs/loans/close-of-day.md, "Penalties").
_ARREARS = (
    "(s.arrears_cents + s.penalty_accrued_cents - s.penalty_paid_cents - s.penalty_waived_cents)"
)

# The book on :day as classify left it: active loans paid out by then, classified on :day.
_BOOK = (
    "book AS ("
    f" SELECT l.id AS loan_id, l.member_id, s.days_past_due AS dpd, {_ARREARS} AS arrears_cents"
    " FROM loans l JOIN loan_day_states s ON s.loan_id = l.id"
    " WHERE l.status = :active AND l.disbursed_on <= :day AND s.classified_on = :day)"
)

# Which notices the book calls for, inserted once each; what each message needs, for the
# rows inserted only (a data-modifying CTE: the SELECT joins what INSERT returned).
_NOTICES = text(
    f"WITH {_BOOK}, due AS ("
    " SELECT b.loan_id, b.member_id, i.number,"
    "  CASE WHEN i.due_on = :read_on THEN 'due_today' ELSE 'due_soon' END AS kind"
    " FROM loan_instalments i JOIN book b ON b.loan_id = i.loan_id"
    f" WHERE i.due_on IN (:read_on, :soon_on) AND {_UNPAID} > 0"
    "), late AS ("
    " SELECT b.loan_id, b.member_id, b.dpd, MIN(i.number) AS number"
    " FROM book b JOIN loan_instalments i ON i.loan_id = b.loan_id"
    f" WHERE b.dpd IN ({', '.join(map(str, OVERDUE_DAYS))}) AND i.due_on < :day"
    f" AND {_UNPAID} > 0"
    " GROUP BY b.loan_id, b.member_id, b.dpd"
    "), picked AS ("
    " SELECT loan_id, member_id, kind, number FROM due"
    " UNION ALL SELECT loan_id, member_id, 'overdue_' || dpd, number FROM late"
    " UNION ALL SELECT l.loan_id, g.guarantor_id, 'guarantor_30', l.number"
    "  FROM late l JOIN loan_guarantees g ON g.loan_id = l.loan_id AND g.status = :accepted"
    "  WHERE l.dpd = :guarantor_days"
    " UNION ALL SELECT b.loan_id, b.member_id, 'pre_listing', 0 FROM book b"
    "  WHERE b.arrears_cents > :threshold AND NOT EXISTS (SELECT 1 FROM loan_notices n"
    "   WHERE n.loan_id = b.loan_id AND n.kind = 'pre_listing')"
    "), ins AS ("
    " INSERT INTO loan_notices (loan_id, member_id, kind, instalment_number, business_date,"
    "  outbox_key)"
    " SELECT loan_id, member_id, kind, number, :day,"
    "  'loan_notice:' || loan_id || ':' || kind || ':' || number || ':' || member_id"
    " FROM picked ORDER BY loan_id, kind, member_id"
    " ON CONFLICT (loan_id, kind, instalment_number, member_id) DO NOTHING"
    " RETURNING id, loan_id, member_id, kind, instalment_number, outbox_key"
    ") SELECT ins.id, ins.loan_id, ins.member_id, ins.kind, ins.outbox_key,"
    " l.reference, borrower.full_name AS borrower_name, i.due_on,"
    f" COALESCE({_UNPAID}, 0) AS unpaid, {_ARREARS} AS arrears_cents,"
    " COALESCE(h.amount_cents, g.amount_cents) AS pledge"
    " FROM ins JOIN loans l ON l.id = ins.loan_id"
    " JOIN members borrower ON borrower.id = l.member_id"
    " JOIN loan_day_states s ON s.loan_id = ins.loan_id"
    " LEFT JOIN loan_instalments i ON i.loan_id = ins.loan_id"
    "  AND i.number = ins.instalment_number"
    " LEFT JOIN loan_guarantees g ON ins.kind = 'guarantor_30' AND g.loan_id = ins.loan_id"
    "  AND g.guarantor_id = ins.member_id AND g.status = :accepted"
    " LEFT JOIN holds h ON h.id = g.hold_id AND h.status = 'pending'"
    " ORDER BY ins.id"
)

# Every loan of the book in arrears above the threshold, or marked before, gets its mark
# for :day: listable once the notice period since its pre-listing notice's reading day is
# over; ``listable_since`` keeps the first day of a listable spell.
_MARK = text(
    f"WITH {_BOOK}, src AS ("
    " SELECT b.loan_id, b.arrears_cents, n.business_date + 1 AS notice_on"
    " FROM book b LEFT JOIN loan_notices n ON n.loan_id = b.loan_id AND n.kind = 'pre_listing'"
    " WHERE b.arrears_cents > :threshold"
    "  OR EXISTS (SELECT 1 FROM loan_bureau_marks m WHERE m.loan_id = b.loan_id)"
    "), flagged AS ("
    " SELECT loan_id, arrears_cents, notice_on, (arrears_cents > :threshold"
    "  AND notice_on IS NOT NULL AND :day >= notice_on + :notice_days) AS listable"
    " FROM src"
    ") INSERT INTO loan_bureau_marks AS m (loan_id, notice_on, listable, listable_since,"
    "  arrears_cents, marked_on)"
    " SELECT loan_id, notice_on, listable, CASE WHEN listable THEN CAST(:day AS DATE) END,"
    "  arrears_cents, :day FROM flagged ORDER BY loan_id"
    " ON CONFLICT (loan_id) DO UPDATE SET notice_on = EXCLUDED.notice_on,"
    "  listable = EXCLUDED.listable,"
    "  listable_since = CASE WHEN EXCLUDED.listable"
    "   THEN COALESCE(m.listable_since, EXCLUDED.listable_since) END,"
    "  arrears_cents = EXCLUDED.arrears_cents, marked_on = EXCLUDED.marked_on"
    " RETURNING m.listable, m.arrears_cents"
)

# A loan repaid since (closed) is no longer listable.
_UNMARK_CLOSED = text(
    "UPDATE loan_bureau_marks m SET listable = false, listable_since = NULL,"
    " arrears_cents = 0, marked_on = :day"
    " FROM loans l WHERE l.id = m.loan_id AND l.status = :closed"
    " AND (m.listable OR m.arrears_cents > 0)"
)


def send_moment(policy: NoticePolicy, read_on: date, now: datetime) -> datetime:
    """When the SMS may go: not before ``send_from_hour`` on the reading day, Nairobi time
    (a run after midnight does not wake members up), and never before ``now``."""
    earliest = datetime.combine(read_on, time(policy.send_from_hour), tzinfo=NAIROBI)
    return max(now, earliest)


def run(session: Session, deps: CoreDeps, day: date, policy: NoticePolicy) -> NotifyResult:
    """The ``notify`` step of ``day`` (see the module). Never commits."""
    read_on = day + timedelta(days=1)
    now = deps.now()
    fresh = business_date(now) <= read_on
    params = {
        "day": day, "read_on": read_on,
        "soon_on": read_on + timedelta(days=policy.due_soon_days),
        "active": LoanStatus.ACTIVE, "closed": LoanStatus.CLOSED,
        "accepted": GuaranteeStatus.ACCEPTED, "guarantor_days": GUARANTOR_DAYS,
        "threshold": policy.listing_threshold_cents, "notice_days": policy.listing_notice_days,
    }  # fmt: skip
    rows = session.execute(_NOTICES, params).all() if fresh else []
    by_kind: dict[str, int] = {}
    if rows:
        members = {
            m.id: m
            for m in session.scalars(
                select(Member).where(Member.id.in_({r.member_id for r in rows}))
            )
        }
        not_before = send_moment(policy, read_on, now)
        list_on = read_on + timedelta(days=policy.listing_notice_days)
        for r in rows:
            kind = NoticeKind(r.kind)
            by_kind[kind] = by_kind.get(kind, 0) + 1
            notify(
                session, template=TEMPLATES[kind], business_key=r.outbox_key, now=now,
                member=members[r.member_id], not_before=not_before,
                data=_data(deps, kind, r, list_on),
            )  # fmt: skip
    session.execute(_UNMARK_CLOSED, params)
    marks = session.execute(_MARK, params).all()
    listable = [m for m in marks if m.listable]
    return NotifyResult(
        loans=len({r.loan_id for r in rows}),
        amount_cents=sum(int(m.arrears_cents) for m in listable),
        detail={
            "notices_by_kind": dict(sorted(by_kind.items())),
            "sent": len(rows),
            "late_run_sent_nothing": not fresh,
            "listable_loans": len(listable),
            "marked_loans": len(marks),
        },
    )


def _data(deps: CoreDeps, kind: NoticeKind, r: Any, list_on: date) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sacco": deps.sacco_name, "ussd_code": deps.ussd_code, "loan": r.reference,
        "arrears": format_cents(int(r.arrears_cents)),
    }  # fmt: skip
    if r.due_on is not None:
        data["due_on"] = r.due_on.strftime(DATE_FORMAT)
    if kind in (NoticeKind.DUE_SOON, NoticeKind.DUE_TODAY):
        data["amount"] = format_cents(int(r.unpaid))
    elif kind is NoticeKind.GUARANTOR_30:
        data["first_name"] = first_name(r.borrower_name)
        data["pledge"] = format_cents(int(r.pledge or 0))
    elif kind is NoticeKind.PRE_LISTING:
        data["list_on"] = list_on.strftime(DATE_FORMAT)
    return data
