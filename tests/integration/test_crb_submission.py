"""The credit-bureau data submission file (issue 15, part 2) from a seeded book on real
PostgreSQL: a loan in every state (performing, in arrears below the threshold, listable,
written off, closed in the month, closed before it) gives the rows and codes the template
wants; negative information only for the loans close of day marked listable; the file
passes its own validator and a bad row refuses the run naming the member and the field;
the same book gives the same bytes; the month must be over and closed."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.approvals import engine
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.permissions import SYSTEM
from core.ledger import entries as ledger
from core.loans import write_off
from core.loans.crb import layout as lay
from core.loans.crb import submission as crb
from core.loans.vocabulary import LoanStatus
from db.models import AuditEvent
from db.models_close_day import LoanDayState
from db.models_crb import CrbSubmission
from db.models_loans import Loan
from tests.integration.test_loan_write_off import staff
from tests.loanutil import disbursed_loan, pay
from workers.close_day import run_close_day

START = date(2026, 1, 10)
DUE = date(2026, 2, 10)
FIRST_INSTALMENT = 888_488  # KES 100,000 at 1 % a month over 12, to the cent
NO_PENALTY: dict[str, Any] = {"penalty_rate_percent": Decimal(0)}


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)  # noon in Nairobi
    return dataclasses.replace(deps, now=lambda: moment)


def close(factory: sessionmaker[Session], deps: CoreDeps, through: date) -> None:
    """Close up to ``through`` the morning after (the last date's notices go)."""
    run_close_day(factory, on(deps, date.fromordinal(through.toordinal() + 1)), through=through)


def rows(content: bytes, record_type: str) -> list[dict[str, str]]:
    layout = lay.current_layout()
    names = layout.names(record_type)
    return [
        dict(zip(names, line.split("|"), strict=True))
        for line in content.decode().splitlines()
        if line.split("|")[0] == record_type
    ]


@pytest.fixture
def book(
    db_session: Session, session_factory: sessionmaker[Session], deps: CoreDeps
) -> dict[str, Any]:
    """Loans of every state, the book closed through 2026-03-31."""
    s = db_session
    made = on(deps, START)
    old, _, _ = disbursed_loan(s, on(deps, date(2025, 1, 10)), **NO_PENALTY)  # written off
    performing, _, _ = disbursed_loan(s, made, **NO_PENALTY)
    below, _, _ = disbursed_loan(s, made, **NO_PENALTY)
    listable, _, guarantor = disbursed_loan(
        s, made, deposits_cents=4_000_000, guarantor_deposits_cents=9_000_000,
        pledge_cents=6_000_000, **NO_PENALTY,
    )  # fmt: skip
    closed_in_month, _, _ = disbursed_loan(s, made, **NO_PENALTY)
    closed_before, _, _ = disbursed_loan(s, made, **NO_PENALTY)
    close(session_factory, deps, date(2025, 2, 11))  # the old loan's pre-listing notice
    pay(s, on(deps, date(2026, 2, 5)), closed_before, 10_500_000, "crb-payoff-before")
    pay(s, on(deps, DUE), performing, FIRST_INSTALMENT, "crb-perf-1")
    pay(s, on(deps, DUE), below, FIRST_INSTALMENT - 50_000, "crb-below-1")  # KES 500 short
    close(session_factory, deps, DUE + (DUE - DUE.replace(day=9)))  # 2026-02-11
    loss = s.scalars(select(LoanDayState).where(LoanDayState.loan_id == old.id)
                     .execution_options(populate_existing=True)).one()  # fmt: skip
    assert loss.category == "loss"
    officer, manager = staff(s, "loan_officer", "otieno"), staff(s, "manager", "wanjiku")
    asked = write_off.propose_write_off(
        s, on(deps, date(2026, 2, 12)), officer, old.id, note="no contact for a year",
        large_threshold_cents=100_000_000,
    )  # fmt: skip
    engine.decide(s, on(deps, date(2026, 2, 12)), manager, asked.id, approve=True)
    close(session_factory, deps, date(2026, 3, 4))
    pay(s, on(deps, date(2026, 3, 5)), closed_in_month, 10_500_000, "crb-payoff-month")
    close(session_factory, deps, date(2026, 3, 9))
    pay(s, on(deps, date(2026, 3, 10)), performing, FIRST_INSTALMENT, "crb-perf-2")
    pay(s, on(deps, date(2026, 3, 10)), below, FIRST_INSTALMENT, "crb-below-2")
    close(session_factory, deps, date(2026, 3, 31))
    for loan in (old, performing, below, listable, closed_in_month, closed_before):
        s.refresh(loan)
    assert (old.status, closed_in_month.status, closed_before.status) == (
        LoanStatus.WRITTEN_OFF, LoanStatus.CLOSED, LoanStatus.CLOSED,
    )  # fmt: skip
    return {
        "old": old, "performing": performing, "below": below, "listable": listable,
        "closed_in_month": closed_in_month, "closed_before": closed_before,
        "guarantor": guarantor,
    }  # fmt: skip


def test_every_loan_state_gets_its_row_and_code(
    db_session: Session, deps: CoreDeps, book: dict[str, Any]
) -> None:
    s = db_session
    run = crb.run_submission(s, on(deps, date(2026, 4, 2)), SYSTEM, "2026-03")
    assert lay.validate(lay.current_layout(), run.content) == []
    assert run.sha256 == hashlib.sha256(run.content).hexdigest()
    assert (run.month, run.as_of, run.layout_version) == ("2026-03", date(2026, 3, 31), "dst-1")
    accounts = {a["account_number"]: a for a in rows(run.content, "A")}
    ref = {k: v.reference for k, v in book.items() if isinstance(v, Loan)}
    # Closed before March: not reported again; every other loan is.
    assert set(accounts) == {ref[k] for k in ("old", "performing", "below", "listable",
                                              "closed_in_month")}  # fmt: skip
    got = {k: (accounts[ref[k]]["account_status"], accounts[ref[k]]["listing_flag"],
               accounts[ref[k]]["overdue_balance"], accounts[ref[k]]["days_in_arrears"])
           for k in ("performing", "below", "listable", "old", "closed_in_month")}  # fmt: skip
    old = book["old"]
    wo = write_off.write_off_of(s, old.id)
    assert wo is not None
    owed = lay.amount(wo.principal_cents + wo.interest_cents)
    old_dpd = s.get_one(LoanDayState, old.id).days_past_due
    assert got == {
        "performing": ("B", "N", "0.00", "0"),
        # KES 500 in arrears: below the KES 1,000 threshold, reported as performing.
        "below": ("B", "N", "0.00", "0"),
        # Nothing paid: pre-listing notice read on 12/02, listable from 14/03; 49 days on 31/03.
        "listable": ("C", "Y", lay.amount(2 * FIRST_INSTALMENT), "49"),
        "old": ("E", "Y", owed, str(old_dpd)),
        "closed_in_month": ("A", "N", "0.00", "0"),
    }
    perf = accounts[ref["performing"]]
    balance = ledger.get_balance(s, book["performing"].account_id).balance_cents
    assert perf["current_balance"] == lay.amount(balance) and balance > 0
    assert perf["date_of_last_payment"] == "20260310" and perf["date_opened"] == "20260110"
    assert perf["original_amount"] == "100000.00" and perf["term_months"] == "12"
    assert perf["instalment_amount"] == lay.amount(FIRST_INSTALMENT)
    assert accounts[ref["old"]]["status_date"] == "20260212"
    assert accounts[ref["old"]]["current_balance"] == owed
    assert accounts[ref["closed_in_month"]]["status_date"] == "20260305"
    assert accounts[ref["closed_in_month"]]["current_balance"] == "0.00"
    # One consumer per borrower reported, linked by national ID; names split.
    consumers = rows(run.content, "C")
    assert len(consumers) == 5 and {c["national_id"] for c in consumers} == {
        a["national_id"] for a in accounts.values()
    }
    assert {(c["surname"], c["forename_1"]) for c in consumers} == {("Wanjiru", "Amina")}
    assert all(c["mobile_number"].startswith("2547") for c in consumers)
    # The listable loan's guarantor, with the pledge.
    [g] = rows(run.content, "G")
    assert (g["account_number"], g["amount_pledged"], g["guarantee_status"]) == (
        ref["listable"], "60000.00", "A",
    )  # fmt: skip
    assert (g["guarantor_surname"], g["guarantor_forename_1"]) == ("Kamau", "Otieno")
    [t] = rows(run.content, "T")
    assert (t["consumer_count"], t["account_count"], t["guarantor_count"]) == ("5", "5", "1")
    assert (
        lay.amount_cents(t["total_current_balance"])
        == run.balance_cents
        == sum(lay.amount_cents(a["current_balance"]) for a in accounts.values())
    )
    assert (run.negative_accounts, run.withheld) == (2, 0)
    # The run is audited without personal data.
    event = s.scalars(select(AuditEvent).where(AuditEvent.action == "crb_submission.run")).one()
    assert event.target_id == str(run.id)
    assert not any(c["national_id"] in str(event.after) for c in consumers)
    # One seeded book (it takes a year of close of day) serves the checks below.
    check_the_same_book_gives_the_same_bytes(s, deps, book)
    check_the_month_must_be_over_and_closed(s, deps, book)
    check_an_invalid_row_refuses_the_run_naming_the_member_and_field(s, deps, book)


def check_the_same_book_gives_the_same_bytes(
    db_session: Session, deps: CoreDeps, book: dict[str, Any]
) -> None:
    first = db_session.scalars(select(CrbSubmission)).one()
    again = crb.run_submission(db_session, on(deps, date(2026, 4, 20)), SYSTEM, "2026-03")
    assert again.id != first.id and again.content == first.content
    assert again.sha256 == first.sha256


def check_an_invalid_row_refuses_the_run_naming_the_member_and_field(
    db_session: Session, deps: CoreDeps, book: dict[str, Any]
) -> None:
    s = db_session
    borrower = s.get_one(type(book["guarantor"]), book["performing"].member_id)
    borrower.full_name = "Wanjiru"  # one name: no forename for the bureau
    s.flush()
    with pytest.raises(crb.SubmissionInvalid) as refused:
        crb.run_submission(s, on(deps, date(2026, 4, 2)), SYSTEM, "2026-03")
    problems = refused.value.context["problems"]
    assert [(p["record"], p["field"], p["reason"]) for p in problems] == [
        (f"consumer {borrower.member_number}", "forename_1", "required")
    ]
    assert f"consumer {borrower.member_number}, forename_1: required" in str(refused.value)
    assert s.scalar(select(func.count()).select_from(CrbSubmission)) == 2  # the earlier runs


def check_the_month_must_be_over_and_closed(
    db_session: Session, deps: CoreDeps, book: dict[str, Any]
) -> None:
    s = db_session
    before = s.scalar(select(func.count()).select_from(CrbSubmission))
    for bad in ("2026-13", "2026-3", "march", "", "2026-03-01"):
        with pytest.raises(InvalidInput):
            crb.run_submission(s, on(deps, date(2026, 4, 2)), SYSTEM, bad)
    with pytest.raises(InvalidInput, match="not over"):
        crb.run_submission(s, on(deps, date(2026, 3, 31)), SYSTEM, "2026-03")
    with pytest.raises(crb.CloseDayBehind):  # April is over but not closed
        crb.run_submission(s, on(deps, date(2026, 5, 2)), SYSTEM, "2026-04")
    assert s.scalar(select(func.count()).select_from(CrbSubmission)) == before
