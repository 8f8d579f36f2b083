"""Close of day's ``notify`` step on real PostgreSQL (core.loans.notices; issue 13, parts 6
and 9): the reminders and overdue notices on their boundary days, the guarantors told at
30 days, the pre-listing notice and the credit-bureau mark at their thresholds, a run twice
sending once, Swahili for a Swahili member, nothing for a repaid loan, nothing for a date
closed late, and the morning hour for a run after midnight."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.calendar import NAIROBI
from core.kernel.deps import CoreDeps
from core.kernel.gsm import sms_length
from core.kernel.money import format_cents
from core.loans import notices
from core.loans.notices import NoticePolicy
from core.loans.vocabulary import CloseDayStep, LoanStatus
from core.messaging.notifications import render_sms
from db.models import Member, OutboxMessage
from db.models_close_day import LoanDayState
from db.models_loans import Loan, LoanInstalment
from db.models_notices import LoanBureauMark, LoanNotice
from tests.loanutil import disbursed_loan, pay
from workers.close_day import run_close_day

START = date(2026, 1, 10)  # monthly loans fall due on the 10th
DUE = date(2026, 2, 10)  # the first instalment: KES 8,884.88 (100,000 at 1 % over 12)
FIRST_INSTALMENT = 888_488
D = timedelta(days=1)


def on(deps: CoreDeps, moment: datetime) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: moment)


def morning_after(deps: CoreDeps, day: date) -> CoreDeps:
    return on(deps, datetime.combine(day + D, time(9), tzinfo=UTC))  # noon in Nairobi


def close(factory: sessionmaker[Session], deps: CoreDeps, through: date, **kw: Any) -> Any:
    """Close up to ``through``, run the morning after (12:00 in Nairobi)."""
    return run_close_day(factory, morning_after(deps, through), through=through, **kw)


def close_daily(factory: sessionmaker[Session], deps: CoreDeps, first: date, last: date) -> None:
    day = first
    while day <= last:
        close(factory, deps, day)
        day += D


def told(s: Session, loan: Loan) -> list[tuple[str, int, date, int]]:
    """Every notice of the loan: kind, instalment, the run's date, recipient."""
    rows = s.execute(
        select(LoanNotice.kind, LoanNotice.instalment_number, LoanNotice.business_date,
               LoanNotice.member_id)
        .where(LoanNotice.loan_id == loan.id)
        .order_by(LoanNotice.business_date, LoanNotice.kind, LoanNotice.member_id)
    ).all()  # fmt: skip
    return [tuple(r) for r in rows]


def sms(s: Session, member: Member) -> list[OutboxMessage]:
    """The member's close-of-day SMS, oldest first."""
    return list(
        s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.member_id == member.id,
                   OutboxMessage.business_key.startswith("loan_notice:"))
            .order_by(OutboxMessage.id)
        )
    )  # fmt: skip


def mark(s: Session, loan: Loan) -> LoanBureauMark | None:
    return s.scalars(
        select(LoanBureauMark)
        .where(LoanBureauMark.loan_id == loan.id)
        .execution_options(populate_existing=True)
    ).one_or_none()


def on_day(deps: CoreDeps, day: date) -> CoreDeps:
    return on(deps, datetime.combine(day, time(9), tzinfo=UTC))


# ------------------------------------------------------------------ the boundary days


def test_a_loan_in_arrears_is_reminded_warned_and_its_guarantor_told_on_the_right_days(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """Closed day by day from 5 days before the first due date to 32 days after it, with
    nothing paid. A run closing ``d`` is read on ``d + 1``: "due in 3 days" goes from the
    close of ``DUE - 4``, "due today" from the close of ``DUE - 1``; overdue at 1, 7 and
    30 days past due (the classify step's figures on ``d``), never at 0 or 31."""
    s = db_session
    loan, borrower, guarantor = disbursed_loan(
        s,
        on_day(deps, START),
        deposits_cents=4_000_000,
        guarantor_deposits_cents=9_000_000,
        pledge_cents=6_000_000,
        penalty_rate_percent=Decimal(0),
    )  # fmt: skip  (no penalty: the arrears named are the instalments alone)
    assert guarantor is not None
    close_daily(session_factory, deps, DUE - 5 * D, DUE + 32 * D)
    due2 = date(2026, 3, 10)
    b, g = borrower.id, guarantor.id
    assert told(s, loan) == [
        ("due_soon", 1, DUE - 4 * D, b),  # read 3 days before: not at 2 or 4
        ("due_today", 1, DUE - D, b),  # read on the due day
        ("overdue_1", 1, DUE + D, b),  # not at 0 days past due (the due date itself)
        ("pre_listing", 0, DUE + D, b),  # arrears above KES 1,000 for the first time
        ("overdue_7", 1, DUE + 7 * D, b),
        ("due_soon", 2, due2 - 4 * D, b),
        ("due_today", 2, due2 - D, b),
        ("guarantor_30", 1, DUE + 30 * D, g),  # told once, with the borrower's notice
        ("overdue_30", 1, DUE + 30 * D, b),  # and nothing new at 31 or 32 days
    ]
    messages = sms(s, borrower)
    assert [m.template for m in messages] == [
        "loan_due_soon", "loan_due_today", "loan_overdue_1", "loan_pre_listing",
        "loan_overdue_7", "loan_due_soon", "loan_due_today", "loan_overdue_30",
    ]  # fmt: skip
    assert all(m.language == "en" and m.parts == 1 for m in messages)
    assert all(m.recipient == borrower.msisdn for m in messages)
    soon = messages[0].body
    assert f"loan {loan.reference}" in soon and format_cents(FIRST_INSTALMENT) in soon
    assert "10/02/2026" in soon
    late = messages[4].body  # 7 days: the arrears as classify found them on that date
    assert format_cents(FIRST_INSTALMENT) in late and "since 10/02/2026" in late
    # 30 days past due: the second instalment is in arrears too.
    assert format_cents(2 * FIRST_INSTALMENT) in messages[-1].body
    # The pre-listing notice names the day from which the loan may be listed: 30 days after
    # the day it is read.
    assert "from 14/03/2026" in messages[3].body
    [to_guarantor] = sms(s, guarantor)
    assert to_guarantor.template == "loan_guarantor_overdue" and to_guarantor.parts == 1
    body = to_guarantor.body
    assert body.startswith(f"{deps.sacco_name}: Amina's loan {loan.reference} you guarantee")
    assert format_cents(6_000_000) in body  # the pledge as it stands (nothing repaid)


def test_the_bureau_mark_waits_for_the_notice_period_and_goes_when_arrears_are_paid(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """Pre-listing notice read on DUE + 2; with 30 days' notice the loan is listable from
    the close of DUE + 32, not the day before; paying the arrears takes the mark away."""
    s = db_session
    loan, _, _ = disbursed_loan(s, on_day(deps, START))
    close(session_factory, deps, DUE)
    assert mark(s, loan) is None  # not in arrears on its due date
    close(session_factory, deps, DUE + D)
    first = mark(s, loan)
    assert first is not None and (first.notice_on, first.listable) == (DUE + 2 * D, False)
    assert first.arrears_cents == FIRST_INSTALMENT
    close_daily(session_factory, deps, DUE + 2 * D, DUE + 31 * D)
    before = mark(s, loan)
    assert before is not None and not before.listable and before.listable_since is None
    close(session_factory, deps, DUE + 32 * D)
    listed = mark(s, loan)
    assert listed is not None and listed.listable and listed.listable_since == DUE + 32 * D
    assert listed.marked_on == DUE + 32 * D
    result = close(session_factory, deps, DUE + 33 * D)
    notify = next(r for r in result.steps if r.step == CloseDayStep.NOTIFY)
    kept = mark(s, loan)
    assert kept is not None and kept.listable_since == DUE + 32 * D  # the spell's first day
    assert notify.detail["listable_loans"] == 1 and notify.amount_cents == kept.arrears_cents
    # The arrears named include the penalty charged since the grace days ended: paying
    # them makes the loan current (a repayment takes the penalty first).
    state = s.get_one(LoanDayState, loan.id)
    s.refresh(state)
    assert state.penalty_accrued_cents > 0
    assert kept.arrears_cents == state.arrears_cents + state.penalty_accrued_cents
    arrears = kept.arrears_cents
    pay(s, on_day(deps, DUE + 34 * D), loan, arrears, "notice-arrears")
    close(session_factory, deps, DUE + 34 * D)
    cleared = mark(s, loan)
    assert cleared is not None and not cleared.listable and cleared.listable_since is None
    assert cleared.arrears_cents == 0 and cleared.notice_on == DUE + 2 * D
    # The pre-listing notice went once, however long the arrears lasted.
    assert [k for k, *_ in told(s, loan)].count("pre_listing") == 1


def test_the_listing_threshold_is_above_kes_1000(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """Arrears of exactly KES 1,000 are not negative information; KES 1,000.01 are."""
    s = db_session
    at, _, _ = disbursed_loan(s, on_day(deps, START))
    above, _, _ = disbursed_loan(s, on_day(deps, START))
    pay(s, on_day(deps, DUE), at, FIRST_INSTALMENT - 100_000, "notice-at")
    pay(s, on_day(deps, DUE), above, FIRST_INSTALMENT - 100_001, "notice-above")
    close(session_factory, deps, DUE + D)
    assert [k for k, *_ in told(s, at)] == ["overdue_1"]
    assert [k for k, *_ in told(s, above)] == ["overdue_1", "pre_listing"]
    assert mark(s, at) is None
    above_mark = mark(s, above)
    assert above_mark is not None and above_mark.arrears_cents == 100_001
    # A SACCO that sets its own threshold (BUREAU_LISTING_THRESHOLD_KES) and notice period.
    other, _, _ = disbursed_loan(s, on_day(deps, START))
    pay(s, on_day(deps, DUE), other, FIRST_INSTALMENT - 100_000, "notice-other")
    strict = NoticePolicy(listing_threshold_cents=99_999, listing_notice_days=0)
    close(session_factory, deps, DUE + 2 * D, notices=strict)
    assert [k for k, *_ in told(s, other)] == ["pre_listing"]  # its overdue_1 day is past
    # Notice read on DUE + 3, no waiting period: listable from the close of DUE + 3.
    close(session_factory, deps, DUE + 3 * D, notices=strict)
    other_mark = mark(s, other)
    assert other_mark is not None and other_mark.listable
    assert other_mark.listable_since == DUE + 3 * D


# ------------------------------------------------------------------ once, and to whom


def test_a_run_twice_sends_once(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, on_day(deps, START))
    close(session_factory, deps, DUE + D)
    first = [(m.id, m.business_key) for m in sms(s, borrower)]
    assert len(first) == 2  # overdue_1 and pre_listing
    again = close(session_factory, deps, DUE + D)
    assert again.dates == []
    # The step's SQL itself, run again on the same date (as if the step record were lost):
    # every notice is there already, so nothing is inserted and nothing queued.
    result = notices.run(s, morning_after(deps, DUE + D), DUE + D, NoticePolicy())
    assert result.detail["sent"] == 0 and result.loans == 0
    assert [(m.id, m.business_key) for m in sms(s, borrower)] == first
    assert s.scalar(select(func.count()).select_from(LoanNotice)) == 2


def test_a_swahili_member_is_told_in_swahili(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, on_day(deps, START))
    borrower.language = "sw"
    s.flush()
    close(session_factory, deps, DUE - 4 * D)  # due in 3 days when read
    [message] = sms(s, borrower)
    assert (message.template, message.language, message.parts) == ("loan_due_soon", "sw", 1)
    expected = render_sms(
        "loan_due_soon", "sw",
        {"sacco": deps.sacco_name, "loan": loan.reference, "ussd_code": deps.ussd_code,
         "amount": format_cents(FIRST_INSTALMENT), "due_on": "10/02/2026"},
    )  # fmt: skip
    assert message.body == expected and "linadaiwa tarehe 10/02/2026" in message.body
    assert sms_length(message.body).encoding == "GSM-7"


def test_nothing_is_sent_for_a_repaid_loan_and_its_mark_goes(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    loan, borrower, _ = disbursed_loan(s, on_day(deps, START))
    close(session_factory, deps, DUE + D)  # overdue_1, pre_listing; marked
    assert mark(s, loan) is not None
    owed = sum(
        i.principal_cents + i.interest_cents + i.fee_cents
        for i in s.scalars(select(LoanInstalment).where(LoanInstalment.loan_id == loan.id))
    )
    assert pay(s, on_day(deps, DUE + 2 * D), loan, owed, "notice-payoff").closed
    s.refresh(loan)
    assert loan.status == LoanStatus.CLOSED
    sent = len(sms(s, borrower))
    # Every day that would have told it something, had it stayed open: nothing.
    close_daily(session_factory, deps, DUE + 2 * D, DUE + 31 * D)
    assert len(sms(s, borrower)) == sent == 2
    gone = mark(s, loan)
    assert gone is not None and not gone.listable and gone.arrears_cents == 0


def test_a_date_closed_late_sends_nothing_but_the_latest_date_does(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    """A catch-up after an outage: the run closing DUE - 4 … DUE + 1 in one go on the
    morning of DUE + 2 sends neither the reminders nor the day-1 notice of dates gone by
    (they would arrive late and wrong); the latest date's notices go, and marks are kept."""
    s = db_session
    loan, borrower, _ = disbursed_loan(s, on_day(deps, START))
    close(session_factory, deps, DUE - 5 * D)  # the first run closes one date
    report = close(session_factory, deps, DUE + D)
    assert len(report.dates) == 6
    assert [(k, day) for k, _, day, _ in told(s, loan)] == [
        ("overdue_1", DUE + D), ("pre_listing", DUE + D)
    ]  # fmt: skip
    late = [r for r in report.steps if r.step == CloseDayStep.NOTIFY][:-1]
    assert all(r.detail["late_run_sent_nothing"] and r.detail["sent"] == 0 for r in late)
    assert [m.template for m in sms(s, borrower)] == ["loan_overdue_1", "loan_pre_listing"]


def test_a_run_after_midnight_holds_its_messages_until_the_morning(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    s = db_session
    _, borrower, _ = disbursed_loan(s, on_day(deps, START))
    # The scheduler closes DUE - 4 at 00:15 on DUE - 3 in Nairobi.
    night = datetime.combine(DUE - 3 * D, time(0, 15), tzinfo=NAIROBI)
    run_close_day(session_factory, on(deps, night), through=DUE - 4 * D)
    [message] = sms(s, borrower)
    morning = datetime.combine(DUE - 3 * D, time(8), tzinfo=NAIROBI)
    assert message.created_at == night and message.next_attempt_at == morning
    # The operator's own hour (NOTICE_SEND_FROM_HOUR).
    assert notices.send_moment(NoticePolicy(send_from_hour=7), DUE, night) == datetime.combine(
        DUE, time(7), tzinfo=NAIROBI
    )
    assert notices.send_moment(NoticePolicy(), DUE - 3 * D, morning + D) == morning + D
