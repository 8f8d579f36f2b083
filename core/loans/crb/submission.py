"""The credit-bureau data submission file, built from the book and kept (issue 15, part 2;
docs/integrations/crb-submission.md).

``run_submission`` reports every loan paid out by the end of a month that was not closed
before the month began: closed, performing, in arrears, written off. Figures are the close
of day's, as of the latest date it closed (which must be the month's last day or later):
the loan account's balance, the arrears and days past due of ``loan_day_states``, and the
listing mark of ``loan_bureau_marks`` (``core.loans.notices``). Negative information —
arrears, days in arrears, a status C, D or E — is reported only for a loan the mark calls
listable (arrears above the threshold after the pre-listing notice); any other active loan
is reported as performing (B) with no arrears. A written-off loan never marked listable is
withheld (counted, not reported). The file is checked by its own layout's validator before
it is kept: an invalid row refuses the whole run, naming the loan or member and the field.
The same book gives the same bytes (no clock in the file; rows in a fixed order), and the
SHA-256 of the bytes is kept with them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.loans.crb import layout as lay
from core.loans.vocabulary import CloseDayStatus, GuaranteeStatus, LoanStatus
from db.models import Member
from db.models_close_day import CloseDayRun, LoanDayState
from db.models_crb import CrbSubmission
from db.models_loans import (
    Loan,
    LoanGuarantee,
    LoanInstalment,
    LoanProduct,
    LoanProductVersion,
    LoanRepayment,
    LoanWriteOff,
)
from db.models_notices import LoanBureauMark

NON_PERFORMING_DAYS = 90  # more than this many days past due: status D, not C
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class SubmissionInvalid(DomainError):
    """The file failed its own validation: nothing was kept."""

    code = "crb_file_invalid"


class CloseDayBehind(DomainError):
    """Close of day has not yet closed the month's last day: its figures are not there."""

    code = "close_day_behind"


# ----------------------------------------------------------------------- pure


@dataclass(frozen=True, slots=True)
class LoanFacts:
    """What the file says of one loan, as the book holds it on ``as_of``."""

    reference: str
    product_code: str
    status: str  # LoanStatus
    disbursed_on: date
    principal_cents: int
    term: int
    instalment_cents: int
    balance_cents: int  # principal outstanding (the loan account), or what stays written off
    arrears_cents: int  # close of day's arrears (instalments and penalty due, unpaid)
    days_past_due: int
    listable: bool
    closed_on: date | None
    written_off_on: date | None
    last_payment_on: date | None


def parse_month(text: str, today: date) -> tuple[date, date]:
    """``YYYY-MM`` -> (first day, last day) of a month that is over by ``today``."""
    m = _MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
        raise InvalidInput("month: YYYY-MM", field="month", reason="format")
    first = date(int(m.group(1)), int(m.group(2)), 1)
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    if last >= today:
        raise InvalidInput(f"month: {text} is not over yet", field="month", reason="not_over")
    return first, last


def split_name(full_name: str) -> tuple[str, str, str]:
    """(surname, forename 1, other names): the last word is the surname, the first the
    first forename (a one-word name leaves the forename empty, which the validator refuses)."""
    words = full_name.split()
    if not words:
        return "", "", ""
    if len(words) == 1:
        return words[0], "", ""
    return words[-1], words[0], " ".join(words[1:-1])


def account_row(f: LoanFacts, as_of: date) -> dict[str, str] | None:
    """The account record's figures for a loan (without the consumer's ID), or None for a
    written-off loan that was never listable (withheld)."""
    overdue, dpd, listing = 0, 0, "N"
    balance = f.balance_cents
    if f.status == LoanStatus.CLOSED:
        code, status_on, balance = "A", f.closed_on or as_of, 0
    elif f.status == LoanStatus.WRITTEN_OFF:
        if not f.listable:
            return None
        code, status_on = "E", f.written_off_on or as_of
        overdue, dpd, listing = balance, f.days_past_due, "Y"
    elif f.listable:
        code = "D" if f.days_past_due > NON_PERFORMING_DAYS else "C"
        status_on, overdue, dpd, listing = as_of, f.arrears_cents, f.days_past_due, "Y"
    else:
        code, status_on = "B", as_of
    return {
        "record_type": "A",
        "account_number": f.reference,
        "account_type": "L",
        "product_code": f.product_code,
        "date_opened": lay.day(f.disbursed_on),
        "original_amount": lay.amount(f.principal_cents),
        "term_months": str(f.term),
        "instalment_amount": lay.amount(f.instalment_cents),
        "current_balance": lay.amount(max(balance, 0)),
        "overdue_balance": lay.amount(max(overdue, 0)),
        "days_in_arrears": str(max(dpd, 0)),
        "account_status": code,
        "status_date": lay.day(status_on),
        "date_of_last_payment": lay.day(f.last_payment_on),
        "listing_flag": listing,
        "currency": "KES",
    }


def trailer(consumers: int, accounts: Sequence[dict[str, str]], guarantors: int) -> dict[str, str]:
    return {
        "record_type": "T",
        "consumer_count": str(consumers),
        "account_count": str(len(accounts)),
        "guarantor_count": str(guarantors),
        "total_current_balance": lay.amount(
            sum(lay.amount_cents(a["current_balance"]) for a in accounts)
        ),
        "total_overdue_balance": lay.amount(
            sum(lay.amount_cents(a["overdue_balance"]) for a in accounts)
        ),
    }


# ----------------------------------------------------------------------- the book


@dataclass(frozen=True, slots=True)
class Built:
    content: bytes
    consumers: int
    accounts: int
    guarantors: int
    negative: int
    withheld: int
    balance_cents: int


def _as_of(session: Session, last: date) -> date:
    closed = session.scalar(
        select(func.max(CloseDayRun.business_date)).where(CloseDayRun.status == CloseDayStatus.DONE)
    )
    if closed is None or closed < last:
        raise CloseDayBehind(
            f"close of day has closed up to {closed or 'no date'}, not yet {last}: run it first",
        )
    return closed


def _msisdn_digits(msisdn: str) -> str:
    return msisdn.lstrip("+")


def build(
    session: Session, deps: CoreDeps, month: str, first: date, last: date, as_of: date,
    institution: str,
) -> Built:  # fmt: skip
    """The file's bytes for the month (see the module), validated. Raises
    ``SubmissionInvalid`` naming each bad record and field."""
    layout = lay.current_layout()
    loans = list(
        session.scalars(select(Loan).where(Loan.disbursed_on <= last).order_by(Loan.reference))
    )
    loans = [
        ln for ln in loans
        if not (ln.status == LoanStatus.CLOSED and ln.closed_at is not None
                and business_date(ln.closed_at) < first)
    ]  # fmt: skip
    ids = [ln.id for ln in loans]
    states = {s.loan_id: s for s in session.scalars(
        select(LoanDayState).where(LoanDayState.loan_id.in_(ids)))}  # fmt: skip
    marks = {m.loan_id: m for m in session.scalars(
        select(LoanBureauMark).where(LoanBureauMark.loan_id.in_(ids)))}  # fmt: skip
    write_offs = {w.loan_id: w for w in session.scalars(
        select(LoanWriteOff).where(LoanWriteOff.loan_id.in_(ids)))}  # fmt: skip
    codes: dict[int, str] = dict(
        session.execute(
            select(LoanProductVersion.id, LoanProduct.code)
            .join(LoanProduct, LoanProduct.id == LoanProductVersion.product_id)
        ).all()  # type: ignore[arg-type]
    )  # fmt: skip
    last_paid: dict[int, date] = dict(
        session.execute(
            select(LoanRepayment.loan_id, func.max(LoanRepayment.value_date))
            .where(LoanRepayment.loan_id.in_(ids), LoanRepayment.value_date <= as_of)
            .group_by(LoanRepayment.loan_id)
        ).all()  # type: ignore[arg-type]
    )  # fmt: skip
    first_instalment: dict[int, int] = {}
    for i in session.scalars(
        select(LoanInstalment).where(LoanInstalment.loan_id.in_(ids))
        .order_by(LoanInstalment.loan_id, LoanInstalment.number)
    ):  # fmt: skip
        first_instalment.setdefault(i.loan_id, i.due_cents)
    members = {m.id: m for m in session.scalars(select(Member).where(Member.id.in_(
        {ln.member_id for ln in loans})))}  # fmt: skip

    accounts: list[dict[str, str]] = []
    borrowers: dict[int, Member] = {}
    reported: dict[int, str] = {}
    withheld = 0
    for ln in loans:
        state, mark, wo = states.get(ln.id), marks.get(ln.id), write_offs.get(ln.id)
        if ln.status == LoanStatus.WRITTEN_OFF and wo is not None:
            balance = max(wo.principal_cents + wo.interest_cents - wo.recovered_cents, 0)
        else:
            balance = ledger.get_balance(session, ln.account_id).balance_cents
        facts = LoanFacts(
            reference=ln.reference, product_code=codes.get(ln.product_version_id, ""),
            status=ln.status, disbursed_on=ln.disbursed_on, principal_cents=ln.principal_cents,
            term=ln.term, instalment_cents=first_instalment.get(ln.id, 0),
            balance_cents=balance, arrears_cents=mark.arrears_cents if mark else 0,
            days_past_due=state.days_past_due if state else 0,
            listable=bool(mark and mark.listable),
            closed_on=business_date(ln.closed_at) if ln.closed_at else None,
            written_off_on=wo.written_off_on if wo else None,
            last_payment_on=last_paid.get(ln.id),
        )  # fmt: skip
        row = account_row(facts, as_of)
        if row is None:
            withheld += 1
            continue
        member = members[ln.member_id]
        national_id = deps.vault.decrypt(member.national_id_ciphertext)
        accounts.append({"national_id": national_id, **row})
        borrowers[member.id] = member
        reported[ln.id] = ln.reference

    consumers = []
    for member in sorted(borrowers.values(), key=lambda m: (m.member_number or "", m.id)):
        surname, forename, others = split_name(member.full_name)
        born = (
            deps.vault.decrypt(member.date_of_birth_ciphertext).replace("-", "")
            if member.date_of_birth_ciphertext else ""
        )  # fmt: skip
        consumers.append({
            "record_type": "C", "surname": surname, "forename_1": forename,
            "forename_2": others, "national_id": deps.vault.decrypt(member.national_id_ciphertext),
            "date_of_birth": born, "gender": "", "mobile_number": _msisdn_digits(member.msisdn),
            "postal_address": "", "member_number": member.member_number or "",
        })  # fmt: skip

    pledges = list(
        session.execute(
            select(LoanGuarantee, Member)
            .join(Member, Member.id == LoanGuarantee.guarantor_id)
            .where(LoanGuarantee.loan_id.in_(list(reported)),
                   LoanGuarantee.status.in_((GuaranteeStatus.ACCEPTED, GuaranteeStatus.CALLED)))
        ).all()
    )  # fmt: skip
    guarantors = []
    for g, gm in sorted(pledges, key=lambda p: (reported[p[0].loan_id], p[1].member_number or "",
                                                 p[0].id)):  # fmt: skip
        surname, forename, _ = split_name(gm.full_name)
        guarantors.append({
            "record_type": "G", "account_number": reported[g.loan_id],
            "guarantor_national_id": deps.vault.decrypt(gm.national_id_ciphertext),
            "guarantor_surname": surname, "guarantor_forename_1": forename,
            "amount_pledged": lay.amount(g.amount_cents),
            "guarantee_status": "C" if g.status == GuaranteeStatus.CALLED else "A",
        })  # fmt: skip

    header = {
        "record_type": "H", "institution_name": institution,
        "reporting_month": month.replace("-", ""), "reporting_date": lay.day(as_of),
        "layout_version": layout.version,
    }  # fmt: skip
    records = [header, *consumers, *accounts, *guarantors,
               trailer(len(consumers), accounts, len(guarantors))]  # fmt: skip
    content = lay.render(layout, records)
    problems = lay.validate(layout, content)
    if problems:
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise SubmissionInvalid(
            f"the file fails its own rules: {shown}{more}",
            problems=[{"line": p.line, "record": p.record, "field": p.field, "reason": p.reason}
                      for p in problems],
        )  # fmt: skip
    return Built(
        content=content, consumers=len(consumers), accounts=len(accounts),
        guarantors=len(guarantors),
        negative=sum(1 for a in accounts if a["listing_flag"] == "Y"), withheld=withheld,
        balance_cents=sum(lay.amount_cents(a["current_balance"]) for a in accounts),
    )  # fmt: skip


def run_submission(session: Session, deps: CoreDeps, actor: Principal, month: str) -> CrbSubmission:
    """Build the month's file (see the module), keep it with its checksum and audit the run.
    Never commits. Refused: a malformed month or one not over (``InvalidInput``), close of
    day behind the month's end (``CloseDayBehind``), an invalid file (``SubmissionInvalid``)."""
    now = deps.now()
    first, last = parse_month(month, business_date(now))
    month = first.strftime("%Y-%m")
    as_of = _as_of(session, last)
    built = build(session, deps, month, first, last, as_of, deps.sacco_name)
    layout = lay.current_layout()
    row = CrbSubmission(
        month=month, as_of=as_of, layout_version=layout.version,
        file_name=f"crb-{first:%Y%m}-{layout.version}.txt",
        consumers=built.consumers, accounts=built.accounts, guarantors=built.guarantors,
        negative_accounts=built.negative, withheld=built.withheld,
        balance_cents=built.balance_cents, sha256=hashlib.sha256(built.content).hexdigest(),
        content=built.content, actor_type=actor.kind,
        actor_id=actor.id if actor.kind == "staff" else None, created_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "crb_submission.run", target_type="crb_submission", target_id=row.id,
        after=summary(row), now=now,
    )  # fmt: skip
    return row


def summary(row: CrbSubmission) -> dict[str, Any]:
    """What a run is, without its content (no personal data)."""
    return {
        "id": row.id, "month": row.month, "as_of": row.as_of.isoformat(),
        "layout_version": row.layout_version, "file_name": row.file_name,
        "consumers": row.consumers, "accounts": row.accounts, "guarantors": row.guarantors,
        "negative_accounts": row.negative_accounts, "withheld": row.withheld,
        "balance_cents": row.balance_cents, "sha256": row.sha256,
    }  # fmt: skip


def list_submissions(
    session: Session, *, limit: int, before_id: int | None = None
) -> list[CrbSubmission]:
    query = select(CrbSubmission).order_by(CrbSubmission.id.desc()).limit(limit)
    if before_id:
        query = query.where(CrbSubmission.id < before_id)
    return list(session.scalars(query))


def get_submission(session: Session, submission_id: int) -> CrbSubmission:
    row = session.get(CrbSubmission, submission_id)
    if row is None:
        raise NotFound(f"no submission {submission_id}")
    return row


def download(
    session: Session, deps: CoreDeps, actor: Principal, submission_id: int
) -> CrbSubmission:
    """The kept file, its reading audited (it holds members' personal data)."""
    row = get_submission(session, submission_id)
    audit.record(
        session, actor, "crb_submission.download", target_type="crb_submission",
        target_id=row.id, after={"sha256": row.sha256}, now=deps.now(),
    )  # fmt: skip
    return row
