"""Employer check-off use cases (docs/integrations/check-off.md). Never commit.

* Employers and their members' payroll numbers; members' standing instructions.
* ``generate_schedule``: the deductions expected from an employer for a month, from the
  loan schedules and the instructions, in a handful of set-based statements.
* ``upload_remittance``: read the employer's file, refuse it whole when a line is bad or
  its total is not the bank amount, match each line by payroll number or national ID
  (blind index), keep it, and ask ``checkoff.post`` (maker-checker).
* ``post_remittance`` (on approval): one receipt (Dr bank / Cr check-off clearing with the
  file's total), then each matched line allocated by ``core.checkoff.plans`` through
  ``repay_loan`` and ``credit_member``, the one repayment and credit paths (source
  ``checkoff``: they debit the clearing account). Unmatched lines stay in clearing.
* Reports: a remittance's unmatched lines and shortfalls; late remittances aged against
  the seven days of the Co-operative Societies Act, s. 19A.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from core.approvals.engine import request_approval
from core.audit import log as audit
from core.checkoff import files, plans
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.identity import normalize_national_id
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.loans.repayments import Repayment, repay_loan
from core.loans.vocabulary import LoanStatus, RepaymentSource
from core.members.status import may_deposit
from core.savings.accounts import Credit, CreditSource, credit_member
from db.models import Member
from db.models_checkoff import (
    CheckoffLine,
    CheckoffRemittance,
    CheckoffSchedule,
    CheckoffScheduleLine,
    Employer,
    EmployerMember,
    StandingInstruction,
)
from db.models_loans import Loan, LoanInstalment

POST_ACTION = "checkoff.post"
MAKER_PERMISSION = "checkoff:upload"
CHECKER_PERMISSION = "checkoff:post"
# Co-operative Societies Act (Cap. 490), s. 19A(3): an employer remits what it deducted
# within seven days of the deduction (docs/integrations/check-off.md).
REMIT_WITHIN_DAYS = 7
AGE_BUCKETS = ((7, "1-7"), (30, "8-30"), (90, "31-90"))  # days late; beyond: "over_90"
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{1,15}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PERIOD = re.compile(r"(20[0-9]{2})-(0[1-9]|1[0-2])")


class CheckoffRefused(DomainError):
    """A check-off step refused for the state it finds (``reason``)."""

    code = "checkoff_refused"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


# ------------------------------------------------------------------ employers


def _text(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > limit:
        raise InvalidInput(f"{name}: 1-{limit} characters", field=name)
    return value.strip()


def employer_dict(e: Employer) -> dict[str, Any]:
    return {"id": e.id, "code": e.code, "name": e.name, "bank_account": e.bank_account,
            "contact_email": e.contact_email, "pay_day": e.pay_day}  # fmt: skip


def create_employer(
    session: Session, deps: CoreDeps, actor: Principal, body: dict[str, Any]
) -> Employer:
    code = _text(body, "code", 16).upper()
    if not _CODE.fullmatch(code):
        raise InvalidInput("code: 2-16 of letters, digits, _ and -", field="code")
    email = _text(body, "contact_email", 254)
    if not _EMAIL.fullmatch(email):
        raise InvalidInput("contact_email is not an e-mail address", field="contact_email")
    pay_day = body.get("pay_day", 31)
    if isinstance(pay_day, bool) or not isinstance(pay_day, int) or not 1 <= pay_day <= 31:
        raise InvalidInput("pay_day: 1-31 (31: the month's last day)", field="pay_day")
    if session.scalar(select(Employer.id).where(Employer.code == code)) is not None:
        raise CheckoffRefused(f"employer {code} exists", reason="duplicate_employer")
    employer = Employer(
        code=code, name=_text(body, "name", 120), bank_account=_text(body, "bank_account", 40),
        contact_email=email, pay_day=pay_day, created_at=deps.now(),
    )  # fmt: skip
    session.add(employer)
    session.flush()
    audit.record(session, actor, "checkoff.employer_create", target_type="employer",
                 target_id=employer.id, after=employer_dict(employer), now=deps.now())  # fmt: skip
    return employer


def get_employer(session: Session, employer_id: int) -> Employer:
    employer = session.get(Employer, employer_id)
    if employer is None:
        raise NotFound("no such employer")
    return employer


def list_employers(session: Session) -> list[Employer]:
    return list(session.scalars(select(Employer).order_by(Employer.code)))


def link_member(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    employer_id: int,
    member_id: int,
    payroll_number: str,
) -> EmployerMember:
    """Put a member on an employer's payroll (or change the payroll number); a member is
    on one employer's payroll at a time; a payroll number is unique per employer."""
    employer = get_employer(session, employer_id)
    if session.get(Member, member_id) is None:
        raise NotFound("no such member")
    payroll = _text({"payroll_number": payroll_number}, "payroll_number", 32)
    taken = session.scalar(
        select(EmployerMember).where(
            EmployerMember.employer_id == employer.id, EmployerMember.payroll_number == payroll
        )
    )
    if taken is not None and taken.member_id != member_id:
        raise CheckoffRefused(
            f"payroll number {payroll} is another member's", reason="payroll_number_taken"
        )
    link = session.scalar(select(EmployerMember).where(EmployerMember.member_id == member_id))
    before = None
    if link is None:
        link = EmployerMember(employer_id=employer.id, member_id=member_id,
                              payroll_number=payroll, created_at=deps.now())  # fmt: skip
        session.add(link)
    else:
        before = {"employer_id": link.employer_id, "payroll_number": link.payroll_number}
        link.employer_id, link.payroll_number = employer.id, payroll
    session.flush()
    audit.record(session, actor, "checkoff.member_link", target_type="member",
                 target_id=member_id, before=before,
                 after={"employer_id": employer.id, "payroll_number": payroll},
                 now=deps.now())  # fmt: skip
    return link


def member_link(session: Session, member_id: int) -> EmployerMember:
    link = session.scalar(select(EmployerMember).where(EmployerMember.member_id == member_id))
    if link is None:
        raise NotFound("the member is on no employer's payroll")
    return link


def instruction_dicts(rows: list[StandingInstruction]) -> list[dict[str, Any]]:
    return [{"target": r.target, "loan_id": r.loan_id, "amount_cents": r.amount_cents,
             "mode": "instalment_due" if r.amount_cents is None else "fixed"}
            for r in rows]  # fmt: skip


def get_instructions(session: Session, member_id: int) -> list[StandingInstruction]:
    rows = list(
        session.scalars(
            select(StandingInstruction).where(StandingInstruction.member_id == member_id)
        )
    )
    return sorted(rows, key=lambda r: (plans.ORDER.index(r.target), r.loan_id or 0))


def set_instructions(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    items: list[dict[str, Any]],
) -> list[StandingInstruction]:
    """Replace the member's standing instructions. Each: ``target`` (loan, deposits,
    shares, savings), ``loan_id`` for a loan (the member's, not closed), ``amount_cents``
    (fixed; for a loan, absent or null: the instalment due)."""
    if session.get(Member, member_id) is None:
        raise NotFound("no such member")
    if not isinstance(items, list) or len(items) > 20:
        raise InvalidInput("instructions: a list of at most 20", field="instructions")
    seen: set[tuple[str, int | None]] = set()
    rows = []
    for i, item in enumerate(items):
        where = f"instructions.{i}"
        target = item.get("target") if isinstance(item, dict) else None
        if target not in plans.ORDER:
            raise InvalidInput(f"{where}.target: loan, deposits, shares or savings", field=where)
        loan_id, amount = item.get("loan_id"), item.get("amount_cents")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)
                                   or not 0 < amount <= ledger.MAX_POSTING_CENTS):  # fmt: skip
            raise InvalidInput(f"{where}.amount_cents: a positive whole number", field=where)
        if target == "loan":
            loan = session.get(Loan, loan_id) if isinstance(loan_id, int) else None
            if loan is None or loan.member_id != member_id:
                raise InvalidInput(f"{where}.loan_id: not a loan of this member", field=where)
            if loan.status not in (LoanStatus.ACTIVE,):
                raise InvalidInput(f"{where}.loan_id: the loan is {loan.status}", field=where)
        elif loan_id is not None or amount is None:
            raise InvalidInput(f"{where}: a fixed amount_cents and no loan_id", field=where)
        if (target, loan_id) in seen:
            raise InvalidInput(f"{where}: given twice", field=where)
        seen.add((target, loan_id))
        rows.append(StandingInstruction(member_id=member_id, target=target, loan_id=loan_id,
                                        amount_cents=amount, created_at=deps.now()))  # fmt: skip
    before = instruction_dicts(get_instructions(session, member_id))
    session.execute(delete(StandingInstruction).where(StandingInstruction.member_id == member_id))
    session.add_all(rows)
    session.flush()
    after = get_instructions(session, member_id)
    audit.record(session, actor, "checkoff.instructions", target_type="member",
                 target_id=member_id, before={"instructions": before},
                 after={"instructions": instruction_dicts(after)}, now=deps.now())  # fmt: skip
    return after


# ------------------------------------------------------------------ expected deductions


def parse_period(period: object) -> tuple[int, int]:
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if match is None:
        raise InvalidInput("period: YYYY-MM", field="period")
    return int(match.group(1)), int(match.group(2))


def payday(year: int, month: int, pay_day: int) -> date:
    """The deduction's date: the employer's pay day, or the month's last day if shorter."""
    return date(year, month, min(pay_day, calendar.monthrange(year, month)[1]))


def generate_schedule(
    session: Session, deps: CoreDeps, employer_id: int, period: str
) -> CheckoffSchedule:
    """The deductions expected from ``employer_id`` for ``period`` (YYYY-MM), replacing an
    earlier generation; refused once a remittance for it is posted or waits. A member's
    instructions in paying order; a member with none pays each active loan's instalments
    due in the month. A loan's instalment due: what is unpaid of its instalments due in
    the month (arrears are not deducted again unless a fixed amount says so)."""
    employer = get_employer(session, employer_id)
    year, month = parse_period(period)
    busy = session.scalar(
        select(CheckoffRemittance.id).where(
            CheckoffRemittance.employer_id == employer.id, CheckoffRemittance.period == period,
            CheckoffRemittance.status.in_(("posted", "pending_approval")),
        )
    )  # fmt: skip
    if busy is not None:
        raise CheckoffRefused(f"remittance {busy} for {period} exists", reason="remitted")
    first = date(year, month, 1)
    last = date(year, month, calendar.monthrange(year, month)[1])
    links = dict(session.execute(
        select(EmployerMember.member_id, EmployerMember.payroll_number)
        .where(EmployerMember.employer_id == employer.id)
    ).tuples().all())  # fmt: skip
    instructions: dict[int, list[tuple[str, int | None, int | None]]] = defaultdict(list)
    for member_id, target, loan_id, amount in session.execute(
        select(StandingInstruction.member_id, StandingInstruction.target,
               StandingInstruction.loan_id, StandingInstruction.amount_cents)
        .join(EmployerMember, EmployerMember.member_id == StandingInstruction.member_id)
        .where(EmployerMember.employer_id == employer.id)
    ).tuples():  # fmt: skip
        instructions[member_id].append((target, loan_id, amount))
    unpaid = LoanInstalment.principal_cents + LoanInstalment.interest_cents + \
        LoanInstalment.fee_cents - LoanInstalment.paid_principal_cents - \
        LoanInstalment.paid_interest_cents - LoanInstalment.paid_fee_cents - \
        LoanInstalment.waived_interest_cents  # fmt: skip
    due: dict[int, tuple[int, int]] = {}  # loan -> (member, cents due in the month)
    for loan_id, member_id, cents in session.execute(
        select(Loan.id, Loan.member_id, func.coalesce(func.sum(unpaid), 0))
        .join(EmployerMember, EmployerMember.member_id == Loan.member_id)
        .outerjoin(LoanInstalment, (LoanInstalment.loan_id == Loan.id)
                   & LoanInstalment.due_on.between(first, last))
        .where(EmployerMember.employer_id == employer.id, Loan.status == LoanStatus.ACTIVE)
        .group_by(Loan.id, Loan.member_id)
    ).tuples():  # fmt: skip
        due[loan_id] = (member_id, int(cents))
    loans_of: dict[int, list[int]] = defaultdict(list)
    for loan_id, (member_id, _) in sorted(due.items()):
        loans_of[member_id].append(loan_id)
    rows: list[dict[str, Any]] = []
    for member_id in sorted(links):
        wanted = instructions.get(member_id) or [("loan", x, None) for x in loans_of[member_id]]
        parts = []
        for target, loan_id, amount in wanted:
            if target == "loan":
                if loan_id not in due:
                    continue  # closed or written off since the instruction was given
                cents = amount if amount is not None else due[loan_id][1]
            else:
                cents = amount or 0
            if cents > 0:
                parts.append((plans.ORDER.index(target), loan_id or 0, target, loan_id, cents))
        for position, (_, _, target, loan_id, cents) in enumerate(sorted(parts), start=1):
            rows.append({"member_id": member_id, "payroll_number": links[member_id],
                         "position": position, "target": target, "loan_id": loan_id,
                         "amount_cents": cents})  # fmt: skip
    schedule = session.scalar(
        select(CheckoffSchedule)
        .where(CheckoffSchedule.employer_id == employer.id, CheckoffSchedule.period == period)
        .with_for_update()
    )
    deducted = payday(year, month, employer.pay_day)
    if schedule is None:
        schedule = CheckoffSchedule(employer_id=employer.id, period=period)
        session.add(schedule)
    schedule.deduction_on = deducted
    schedule.due_on = deducted + timedelta(days=REMIT_WITHIN_DAYS)
    schedule.total_cents = sum(r["amount_cents"] for r in rows)
    schedule.members = len({r["member_id"] for r in rows})
    schedule.generated_at = deps.now()
    session.flush()
    session.execute(
        delete(CheckoffScheduleLine).where(CheckoffScheduleLine.schedule_id == schedule.id)
    )
    if rows:
        session.execute(insert(CheckoffScheduleLine), [{**r, "schedule_id": schedule.id}
                                                      for r in rows])  # fmt: skip
    session.flush()
    return schedule


def get_schedule(session: Session, employer_id: int, period: str) -> CheckoffSchedule:
    parse_period(period)
    schedule = session.scalar(
        select(CheckoffSchedule).where(
            CheckoffSchedule.employer_id == employer_id, CheckoffSchedule.period == period
        )
    )
    if schedule is None:
        raise NotFound("no expected deductions for this employer and month: generate them")
    return schedule


def schedule_dict(s: CheckoffSchedule) -> dict[str, Any]:
    return {"id": s.id, "employer_id": s.employer_id, "period": s.period,
            "deduction_on": s.deduction_on.isoformat(), "due_on": s.due_on.isoformat(),
            "total_cents": s.total_cents, "members": s.members}  # fmt: skip


def schedule_rows(session: Session, schedule_id: int) -> list[dict[str, Any]]:
    """One row per member: payroll number, member number, name, the amount to deduct and
    its split by target (the employer's payroll needs only the amount)."""
    out: dict[int, dict[str, Any]] = {}
    for member_id, payroll, target, cents, number, name in session.execute(
        select(CheckoffScheduleLine.member_id, CheckoffScheduleLine.payroll_number,
               CheckoffScheduleLine.target, CheckoffScheduleLine.amount_cents,
               Member.member_number, Member.full_name)
        .join(Member, Member.id == CheckoffScheduleLine.member_id)
        .where(CheckoffScheduleLine.schedule_id == schedule_id)
        .order_by(CheckoffScheduleLine.payroll_number, CheckoffScheduleLine.position)
    ).tuples():  # fmt: skip
        row = out.setdefault(member_id, {
            "payroll_number": payroll, "member_number": number, "name": name, "amount": 0,
            "loans": 0, "deposits": 0, "shares": 0, "savings": 0})  # fmt: skip
        row["amount"] += cents
        row["loans" if target == "loan" else target] += cents
    return list(out.values())


def expected_parts(session: Session, employer_id: int, period: str) -> dict[int, list[plans.Part]]:
    """Each member's expected parts for the month, in paying order ({} when none)."""
    out: dict[int, list[plans.Part]] = defaultdict(list)
    for member_id, target, loan_id, cents in session.execute(
        select(CheckoffScheduleLine.member_id, CheckoffScheduleLine.target,
               CheckoffScheduleLine.loan_id, CheckoffScheduleLine.amount_cents)
        .join(CheckoffSchedule, CheckoffSchedule.id == CheckoffScheduleLine.schedule_id)
        .where(CheckoffSchedule.employer_id == employer_id, CheckoffSchedule.period == period)
        .order_by(CheckoffScheduleLine.member_id, CheckoffScheduleLine.position)
    ).tuples():  # fmt: skip
        out[member_id].append(plans.Part(target, cents, loan_id))
    return out


# ------------------------------------------------------------------ remittances


@dataclass(frozen=True)
class Uploaded:
    remittance: CheckoffRemittance
    created: bool  # False: this file (its checksum) was uploaded before; nothing written


def get_remittance(
    session: Session, remittance_id: int, *, lock: bool = False
) -> CheckoffRemittance:
    stmt = select(CheckoffRemittance).where(CheckoffRemittance.id == remittance_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = session.scalar(stmt)
    if row is None:
        raise NotFound("no such remittance")
    return row


def remittance_dict(r: CheckoffRemittance) -> dict[str, Any]:
    return {"id": r.id, "employer_id": r.employer_id, "period": r.period,
            "checksum": r.checksum, "filename": r.filename, "bank_reference": r.bank_reference,
            "received_on": r.received_on.isoformat(), "total_cents": r.total_cents,
            "lines": r.lines, "matched_cents": r.matched_cents,
            "unmatched_cents": r.unmatched_cents, "status": r.status,
            "approval_id": r.approval_id}  # fmt: skip


def upload_remittance(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    employer_id: int,
    period: str,
    data: bytes,
    filename: str,
    bank_reference: str,
    bank_amount_cents: int,
    received_on: date,
    large_threshold_cents: int,
) -> Uploaded:
    """Keep an employer's remittance file and ask for its posting (``checkoff.post``).
    The same file again (its SHA-256) returns the first upload. Refused whole, before any
    write: a bad line (``checkoff_file_invalid`` naming the line), a total that is not
    ``bank_amount_cents`` (``total_mismatch``), a receipt dated after today."""
    employer = get_employer(session, employer_id)
    parse_period(period)
    checksum = hashlib.sha256(data).hexdigest()
    earlier = session.scalar(
        select(CheckoffRemittance).where(CheckoffRemittance.checksum == checksum)
    )
    if earlier is not None:
        return Uploaded(earlier, created=False)
    reference = _text({"bank_reference": bank_reference}, "bank_reference", 64)
    if received_on > business_date(deps.now()):
        raise InvalidInput("received_on is after today", field="received_on")
    lines = files.read_remittance(data, filename)
    total = sum(x.amount_cents for x in lines)
    if total != bank_amount_cents:
        raise InvalidInput(
            f"the file's lines total {total} cents but the bank received "
            f"{bank_amount_cents}", field="bank_amount_cents", reason="total_mismatch",
        )  # fmt: skip
    if total > ledger.MAX_POSTING_CENTS:
        raise InvalidInput("the file's total is too large", field="bank_amount_cents")
    matched = _match(session, deps, employer.id, lines)
    now = deps.now()
    remittance = CheckoffRemittance(
        employer_id=employer.id, period=period, checksum=checksum,
        filename=(filename or "remittance")[:200], bank_reference=reference,
        received_on=received_on, total_cents=total, lines=len(lines),
        matched_cents=sum(x.amount_cents for x in lines if x.line_no in matched),
        unmatched_cents=sum(x.amount_cents for x in lines if x.line_no not in matched),
        status="pending_approval", uploaded_by=actor.id, uploaded_at=now,
    )  # fmt: skip
    session.add(remittance)
    session.flush()
    session.execute(insert(CheckoffLine), [
        {"remittance_id": remittance.id, "line_no": x.line_no, "payroll_number": x.payroll_number,
         "national_id_index": _index(deps, x.national_id), "name": x.name,
         "amount_cents": x.amount_cents, "member_id": matched.get(x.line_no)}
        for x in lines
    ])  # fmt: skip
    req = request_approval(
        session, deps, actor, POST_ACTION,
        payload={"remittance_id": remittance.id, "checksum": checksum, "total_cents": total},
        note=f"check-off {employer.code} {period}: {len(lines)} lines, {total} cents",
        large_threshold_cents=large_threshold_cents,
    )  # fmt: skip
    remittance.approval_id = req.id
    session.flush()
    return Uploaded(remittance, created=True)


def _index(deps: CoreDeps, national_id: str | None) -> str | None:
    if national_id is None:
        return None
    return deps.vault.blind_index(normalize_national_id(national_id))


def _match(
    session: Session, deps: CoreDeps, employer_id: int, lines: list[files.FileLine]
) -> dict[int, int]:
    """line number -> member id: by the employer's payroll number, else by national ID
    (its blind index); two queries for the whole file."""
    payroll = dict(session.execute(
        select(EmployerMember.payroll_number, EmployerMember.member_id)
        .where(EmployerMember.employer_id == employer_id)
    ).tuples().all())  # fmt: skip
    indexes = {x.line_no: _index(deps, x.national_id) for x in lines if x.national_id}
    by_index: dict[str, int] = {}
    wanted = sorted({i for i in indexes.values() if i})
    for start in range(0, len(wanted), 1000):
        by_index.update(session.execute(
            select(Member.national_id_index, Member.id)
            .where(Member.national_id_index.in_(wanted[start:start + 1000]))
        ).tuples().all())  # fmt: skip
    out = {}
    for x in lines:
        member_id = payroll.get(x.payroll_number or "") or by_index.get(
            indexes.get(x.line_no) or ""
        )
        if member_id is not None:
            out[x.line_no] = member_id
    return out


def check_post(session: Session, payload: dict[str, Any]) -> CheckoffRemittance:
    remittance_id = payload.get("remittance_id")
    if isinstance(remittance_id, bool) or not isinstance(remittance_id, int):
        raise InvalidInput("remittance_id is required", field="remittance_id")
    remittance = get_remittance(session, remittance_id, lock=True)
    if remittance.checksum != payload.get("checksum"):
        raise CheckoffRefused("the remittance changed", reason="changed")
    if remittance.status == "rejected":
        raise CheckoffRefused("the remittance was rejected", reason="rejected")
    return remittance


def post_remittance(
    session: Session, deps: CoreDeps, actor: Principal, payload: dict[str, Any]
) -> dict[str, Any]:
    """Post an approved remittance once: the receipt, then every matched line through the
    one repayment and credit paths. A posted remittance answers with what it posted."""
    remittance = check_post(session, payload)
    if remittance.status == "posted":
        return {"remittance_id": remittance.id, "posted": False, **_totals(remittance)}
    now = deps.now()
    receipt = ledger.post_entry(
        session, kind=EntryKind.CHECKOFF_RECEIPT,
        legs=[ledger.Leg(ledger.account_id_by_code(session, SystemAccount.BANK),
                         remittance.total_cents),
              ledger.Leg(ledger.account_id_by_code(session, SystemAccount.CHECKOFF_CLEARING),
                         -remittance.total_cents)],
        idempotency_key=f"checkoff:{remittance.checksum}", now=now,
        value_date=remittance.received_on,
        memo=f"Check-off {remittance.period} bank ref {remittance.bank_reference}"[:160],
    )  # fmt: skip
    expected = expected_parts(session, remittance.employer_id, remittance.period)
    rows = session.execute(
        select(CheckoffLine.id, CheckoffLine.line_no, CheckoffLine.member_id,
               CheckoffLine.amount_cents, Member.status)
        .join(Member, Member.id == CheckoffLine.member_id)
        .where(CheckoffLine.remittance_id == remittance.id)
        .order_by(CheckoffLine.line_no)
    ).tuples().all()  # fmt: skip
    allocations = []
    unmatched = remittance.unmatched_cents
    for line_id, line_no, member_id, amount, status in rows:
        assert member_id is not None  # the join keeps matched lines only
        if not may_deposit(status):  # an exited or suspended member: left in clearing
            allocations.append({"id": line_id, "allocation": [{"target": "clearing",
                                "cents": amount, "reason": f"member {status}"}]})  # fmt: skip
            unmatched += amount
            continue
        paid = plans.allocate(expected.get(member_id, []), amount)
        allocations.append({"id": line_id, "allocation": [
            _pay(session, deps, remittance, line_no, i, member_id, part)
            for i, part in enumerate(paid)
        ]})  # fmt: skip
    if allocations:
        session.execute(update(CheckoffLine), allocations)  # by primary key, one statement
    remittance.status = "posted"
    remittance.receipt_entry_id = receipt.entry_id
    remittance.unmatched_cents = unmatched
    remittance.matched_cents = remittance.total_cents - unmatched
    remittance.posted_at = now
    session.flush()
    audit.record(session, actor, "checkoff.post", target_type="checkoff_remittance",
                 target_id=remittance.id, after={"entry": receipt.reference, **_totals(remittance)},
                 now=now)  # fmt: skip
    return {"remittance_id": remittance.id, "posted": True, **_totals(remittance)}


def _pay(
    session: Session,
    deps: CoreDeps,
    remittance: CheckoffRemittance,
    line_no: int,
    i: int,
    member_id: int,
    part: plans.Paid,
    *,
    suffix: str = "",
) -> dict[str, Any]:
    key = f"checkoff:{remittance.id}:{line_no}:{i}{':' + suffix if suffix else ''}"
    memo = f"Check-off {remittance.period}"
    if part.target == "loan":
        assert part.loan_id is not None
        repaid = repay_loan(session, deps, Repayment(
            amount_cents=part.cents, source=RepaymentSource.CHECKOFF, idempotency_key=key,
            business_key=key, loan_id=part.loan_id, member_id=member_id,
        ))  # fmt: skip
        return {
            "target": "loan",
            "loan_id": part.loan_id,
            "cents": part.cents,
            "entry": repaid.entry_reference,
            "to_savings_cents": repaid.to_savings_cents,
        }
    credited = credit_member(session, deps, Credit(
        member_id=member_id, target=part.target, amount_cents=part.cents,
        source=CreditSource.CHECKOFF, idempotency_key=key, business_key=key, memo=memo,
    ))  # fmt: skip
    return {"target": part.target, "cents": part.cents, "entry": credited.posted.reference}


def _totals(r: CheckoffRemittance) -> dict[str, Any]:
    return {"total_cents": r.total_cents, "matched_cents": r.matched_cents,
            "unmatched_cents": r.unmatched_cents, "lines": r.lines}  # fmt: skip


def reject_remittance(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    remittance = check_post(session, payload)
    if remittance.status == "pending_approval":
        remittance.status = "rejected"
        session.flush()
    return {"remittance_id": remittance.id, "status": remittance.status}


# ------------------------------------------------------------------ reports


def remittance_report(session: Session, remittance_id: int) -> dict[str, Any]:
    """For the employer: lines that matched no member (or a member who may not take
    money), and each expected member's shortfall (expected vs received; 0 received when
    the file has no line for them)."""
    r = get_remittance(session, remittance_id)
    lines = session.execute(
        select(CheckoffLine.line_no, CheckoffLine.payroll_number, CheckoffLine.name,
               CheckoffLine.amount_cents, CheckoffLine.member_id, CheckoffLine.allocation)
        .where(CheckoffLine.remittance_id == r.id).order_by(CheckoffLine.line_no)
    ).tuples().all()  # fmt: skip
    received: dict[int, int] = defaultdict(int)
    unmatched = []
    for line_no, payroll, name, cents, member_id, allocation in lines:
        first = (allocation or [{}])[0]
        parked = first.get("target") == "clearing"
        if member_id is None or parked:
            unmatched.append(
                {
                    "line_no": line_no,
                    "payroll_number": payroll,
                    "name": name,
                    "amount_cents": cents,
                    "reason": first["reason"] if parked else "no_match",
                }
            )
        else:
            received[member_id] += cents
    expected = expected_parts(session, r.employer_id, r.period)
    payroll_of = dict(session.execute(
        select(EmployerMember.member_id, EmployerMember.payroll_number)
        .where(EmployerMember.employer_id == r.employer_id)
    ).tuples().all())  # fmt: skip
    shortfalls = []
    for member_id, parts in sorted(expected.items()):
        want = sum(p.amount_cents for p in parts)
        got = received.get(member_id, 0)
        if got < want:
            shortfalls.append({"member_id": member_id,
                               "payroll_number": payroll_of.get(member_id),
                               "expected_cents": want, "received_cents": got,
                               "shortfall_cents": want - got})  # fmt: skip
    return {"remittance": remittance_dict(r), "unmatched": unmatched, "shortfalls": shortfalls,
            "unmatched_cents": sum(x["amount_cents"] for x in unmatched),
            "shortfall_cents": sum(x["shortfall_cents"] for x in shortfalls)}  # fmt: skip


def report_csv(report: dict[str, Any]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["kind", "line_no", "payroll_number", "name", "expected", "received", "amount",
                "reason"])  # fmt: skip
    kes = files._kes
    for x in report["unmatched"]:
        w.writerow(["unmatched", x["line_no"], x["payroll_number"] or "", x["name"], "", "",
                    kes(x["amount_cents"]), x["reason"]])  # fmt: skip
    for x in report["shortfalls"]:
        w.writerow(["shortfall", "", x["payroll_number"] or "", "", kes(x["expected_cents"]),
                    kes(x["received_cents"]), kes(x["shortfall_cents"]), "shortfall"])  # fmt: skip
    return out.getvalue().encode()


def late_remittances(session: Session, today: date) -> list[dict[str, Any]]:
    """Each month an employer owed (a schedule with money expected) whose remittance came
    after the seven days, or has not come by ``today``: days late and an age bucket."""
    posted: dict[tuple[int, str], date | None] = {}
    for employer_id, period, first_received in session.execute(
        select(CheckoffRemittance.employer_id, CheckoffRemittance.period,
               func.min(CheckoffRemittance.received_on))
        .where(CheckoffRemittance.status != "rejected")
        .group_by(CheckoffRemittance.employer_id, CheckoffRemittance.period)
    ).tuples():  # fmt: skip
        posted[(employer_id, period)] = first_received
    out = []
    for s, code, name in session.execute(
        select(CheckoffSchedule, Employer.code, Employer.name)
        .join(Employer, Employer.id == CheckoffSchedule.employer_id)
        .where(CheckoffSchedule.total_cents > 0)
        .order_by(Employer.code, CheckoffSchedule.period)
    ).tuples():  # fmt: skip
        received = posted.get((s.employer_id, s.period))
        days = ((received or today) - s.due_on).days
        if days <= 0:
            continue
        bucket = next((label for limit, label in AGE_BUCKETS if days <= limit), "over_90")
        out.append({"employer_id": s.employer_id, "employer_code": code, "employer": name,
                    "period": s.period, "due_on": s.due_on.isoformat(),
                    "received_on": received.isoformat() if received else None,
                    "days_late": days, "bucket": bucket, "expected_cents": s.total_cents,
                    "outstanding": received is None})  # fmt: skip
    return out


# ------------------------------------------------------------------ unmatched lines

REASSIGN_ACTION = "checkoff.reassign"
REASSIGN_TARGETS = ("loan", "savings", "deposits", "shares")


def _parked_line(
    session: Session, remittance_id: object, line_no: object, *, lock: bool = False
) -> tuple[CheckoffRemittance, CheckoffLine]:
    if isinstance(remittance_id, bool) or not isinstance(remittance_id, int):
        raise InvalidInput("remittance_id is required", field="remittance_id")
    if isinstance(line_no, bool) or not isinstance(line_no, int):
        raise InvalidInput("line_no is required", field="line_no")
    remittance = get_remittance(session, remittance_id, lock=lock)
    stmt = select(CheckoffLine).where(
        CheckoffLine.remittance_id == remittance.id, CheckoffLine.line_no == line_no
    )
    if lock:  # the remittance, then its line; read afresh, not from the session's map
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    line = session.scalar(stmt)
    if line is None:
        raise NotFound(f"remittance {remittance.id} has no line {line_no}")
    if remittance.status != "posted":
        raise CheckoffRefused(
            f"remittance {remittance.id} is {remittance.status}: only a posted one's lines "
            "are in clearing", reason="not_posted",
        )  # fmt: skip
    first = (line.allocation or [{}])[0]
    if line.member_id is not None and first.get("target") != "clearing":
        raise CheckoffRefused(
            f"line {line.line_no} is already allocated", reason="already_allocated"
        )
    return remittance, line


def check_reassign(session: Session, member_id: int | None, payload: dict[str, Any]) -> int:
    """A line that stayed in check-off clearing (matched nobody, or a member who may not
    take money) may go to ``member_id``: to savings, deposits, shares, or a ``loan_id`` of
    the member's own active loan. Returns its amount (the request's)."""
    _, line = _parked_line(session, payload.get("remittance_id"), payload.get("line_no"))
    member = session.get(Member, member_id) if member_id is not None else None
    if member is None:
        raise NotFound("no such member")
    if not may_deposit(member.status):
        raise CheckoffRefused(f"the member is {member.status}", reason="member_not_allowed")
    target = payload.get("target")
    if target not in REASSIGN_TARGETS:
        raise InvalidInput("target: loan, savings, deposits or shares", field="target")
    if target == "loan":
        loan_id = payload.get("loan_id")
        loan = session.get(Loan, loan_id) if isinstance(loan_id, int) else None
        if loan is None or loan.member_id != member.id:
            raise InvalidInput("loan_id: not a loan of this member", field="loan_id")
        if loan.status != LoanStatus.ACTIVE:
            raise InvalidInput(f"loan_id: the loan is {loan.status}", field="loan_id")
    elif payload.get("loan_id") is not None:
        raise InvalidInput("loan_id only with target loan", field="loan_id")
    return line.amount_cents


def reassign_line(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    payload: dict[str, Any],
    *,
    approval_id: int,
) -> dict[str, Any]:
    """On approval of ``checkoff.reassign``: the parked line's money leaves clearing (2210)
    for the member through ``repay_loan`` or ``credit_member`` (source ``checkoff``), the
    line now names the member and what it paid, the remittance's matched and unmatched
    totals move with it. Once: the line is locked and checked again."""
    check_reassign(session, member_id, payload)
    remittance, line = _parked_line(
        session, payload["remittance_id"], payload["line_no"], lock=True
    )
    before = {"member_id": line.member_id, "allocation": line.allocation}
    part = plans.Paid(payload["target"], line.amount_cents, payload.get("loan_id"))
    key_line = f"r{approval_id}"  # the line's own keys are taken by a parked line's posting
    paid = _pay(session, deps, remittance, line.line_no, 0, member_id, part, suffix=key_line)
    paid["reassigned_by_approval"] = approval_id
    line.member_id, line.allocation = member_id, [paid]
    remittance.matched_cents += line.amount_cents
    remittance.unmatched_cents -= line.amount_cents
    session.flush()
    audit.record(session, actor, "checkoff.reassign", target_type="checkoff_remittance",
                 target_id=remittance.id, before={"line_no": line.line_no, **before},
                 after={"line_no": line.line_no, "member_id": member_id, "allocation": [paid]},
                 now=deps.now())  # fmt: skip
    return {"remittance_id": remittance.id, "line_no": line.line_no, "member_id": member_id,
            **paid}  # fmt: skip
