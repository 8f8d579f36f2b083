"""A member's statement for a period: every account they own (savings, deposits, shares,
further savings accounts, loans), each with its opening balance, every movement by its
statement label with the running balance, and its closing balance; as CSV and PDF.

The period is by value date (the business day an entry belongs to), both ends included.
A section's opening balance is the sum of the account's movements before the period, the
running balance adds each movement in posting order, and the closing balance is the
opening plus the period's movements: for a period ending today it is the account's
balance in the ledger, and each running balance is the ledger's ``balance_after_cents``
of that posting (tests/integration/test_member_statement.py checks both).

Amounts are on the account's normal side, as the member reads them: savings, deposits and
shares are what the SACCO holds for the member, a loan is what the member owes.
``build_statement`` reads; ``statement_csv`` and ``statement_pdf`` are pure renderers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, NotFound
from core.kernel.money import format_cents, format_signed
from core.kernel.permissions import Principal
from core.ledger.chart import Purpose
from core.ledger.statements import StatementLabel, statement_label
from core.members.backoffice import visible_member
from core.messaging import statement_mail
from db.models import Account, JournalEntry, Member, OutboxMessage, Posting

MAX_PERIOD_DAYS = 3 * 366  # a statement covers at most about three years
SECTION_ORDER = {
    Purpose.SAVINGS: 0,
    Purpose.DEPOSITS: 1,
    Purpose.SHARES: 2,
    Purpose.PRODUCT_SAVINGS: 3,
    Purpose.LOAN: 4,
}

# The texts of the statement, by language. The movement labels and account names are the
# USSD catalogue's ``kind_<label>`` and ``acct_<purpose>`` (tests/unit/
# test_member_statement_render.py keeps the two equal); core cannot read the USSD package.
TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "title": "Member statement",
        "member": "Member",
        "period": "Period",
        "printed": "Printed",
        "opening": "Opening balance",
        "closing": "Closing balance",
        "date": "Date",
        "reference": "Reference",
        "details": "Details",
        "amount": "Amount",
        "balance": "Balance",
        "none": "No movements in this period.",
        "owed": "(owed by the member)",
        "page": "Page",
        "kind_deposit": "Deposit",
        "kind_withdrawal": "Withdrawal",
        "kind_transfer": "Transfer",
        "kind_loan": "Loan",
        "kind_repayment": "Repayment",
        "kind_recovery": "Recovery",
        "kind_fee": "Fee",
        "kind_interest": "Interest",
        "kind_reversal": "Reversal",
        "kind_adjustment": "Adjustment",
        "kind_suspense": "Held",
        "kind_other": "Other",
        "acct_savings": "Savings",
        "acct_deposits": "Deposits",
        "acct_shares": "Shares",
        "acct_loan": "Loan",
        "acct_other": "Other",
    },
    "sw": {
        "title": "Taarifa ya mwanachama",
        "member": "Mwanachama",
        "period": "Kipindi",
        "printed": "Imechapishwa",
        "opening": "Salio la mwanzo",
        "closing": "Salio la mwisho",
        "date": "Tarehe",
        "reference": "Kumbukumbu",
        "details": "Maelezo",
        "amount": "Kiasi",
        "balance": "Salio",
        "none": "Hakuna miamala katika kipindi hiki.",
        "owed": "(deni la mwanachama)",
        "page": "Ukurasa",
        "kind_deposit": "Weka",
        "kind_withdrawal": "Toa",
        "kind_transfer": "Hamisha",
        "kind_loan": "Mkopo",
        "kind_repayment": "Lipa deni",
        "kind_recovery": "Makato",
        "kind_fee": "Ada",
        "kind_interest": "Riba",
        "kind_reversal": "Rudisha",
        "kind_adjustment": "Marekebisho",
        "kind_suspense": "Imeshikwa",
        "kind_other": "Nyingine",
        "acct_savings": "Akiba",
        "acct_deposits": "Amana",
        "acct_shares": "Hisa",
        "acct_loan": "Mkopo",
        "acct_other": "Nyingine",
    },
}


@dataclass(frozen=True, slots=True)
class StatementRow:
    posting_id: int
    value_date: date
    reference: str
    label: StatementLabel
    amount_cents: int  # + raised the balance, - lowered it
    balance_cents: int  # the running balance right after this movement


@dataclass(frozen=True, slots=True)
class AccountSection:
    account_id: int
    code: str
    purpose: str
    name: str
    opening_cents: int
    rows: tuple[StatementRow, ...]
    closing_cents: int


@dataclass(frozen=True, slots=True)
class MemberStatement:
    member_id: int
    member_number: str | None
    full_name: str
    language: str
    start: date
    end: date
    printed_at: datetime
    sections: tuple[AccountSection, ...]


def check_period(start: date, end: date) -> None:
    if end < start:
        raise InvalidInput("the period ends before it starts", field="to", reason="range")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise InvalidInput(
            f"a statement covers at most {MAX_PERIOD_DAYS} days", field="to", reason="range"
        )


def running(opening_cents: int, moves: list[tuple[int, date, str, str, int]]) -> list[StatementRow]:
    """Pure: the rows of ``moves`` (posting id, value date, reference, kind, signed
    amount, in posting order) with the running balance from ``opening_cents``."""
    rows: list[StatementRow] = []
    balance = opening_cents
    for posting_id, value_date, reference, kind, amount in moves:
        balance += amount
        rows.append(
            StatementRow(posting_id, value_date, reference, statement_label(kind), amount, balance)
        )
    return rows


def build_statement(
    session: Session, member_id: int, start: date, end: date, *, now: datetime
) -> MemberStatement:
    """The member's statement for ``start``..``end`` (value dates, both included)."""
    check_period(start, end)
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"no such member: {member_id}")
    accounts = session.execute(
        select(Account.id, Account.code, Account.purpose, Account.name, Account.normal_side)
        .where(Account.member_id == member_id)
        .order_by(Account.id)
    ).all()
    sections: list[AccountSection] = []
    for account_id, code, purpose, name, side in accounts:
        sign = 1 if side == "D" else -1
        before = session.scalar(
            select(func.coalesce(func.sum(Posting.amount_cents), 0))
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .where(Posting.account_id == account_id, JournalEntry.value_date < start)
        )
        opening = sign * int(before or 0)
        moves = [
            (pid, vdate, ref, kind, sign * int(amount))
            for pid, vdate, ref, kind, amount in session.execute(
                select(
                    Posting.id,
                    JournalEntry.value_date,
                    JournalEntry.reference,
                    JournalEntry.kind,
                    Posting.amount_cents,
                )
                .join(JournalEntry, JournalEntry.id == Posting.entry_id)
                .where(
                    Posting.account_id == account_id,
                    JournalEntry.value_date >= start,
                    JournalEntry.value_date <= end,
                )
                .order_by(Posting.id)
            ).tuples()
        ]
        rows = running(opening, moves)
        closing = rows[-1].balance_cents if rows else opening
        sections.append(
            AccountSection(account_id, code, purpose, name, opening, tuple(rows), closing)
        )
    sections.sort(key=lambda s: (SECTION_ORDER.get(s.purpose, 9), s.account_id))  # type: ignore[call-overload]
    return MemberStatement(
        member_id=member.id,
        member_number=member.member_number,
        full_name=member.full_name,
        language=member.language if member.language in TEXTS else "en",
        start=start,
        end=end,
        printed_at=now,
        sections=tuple(sections),
    )


# ------------------------------------------------------------------------ renderers


def section_title(section: AccountSection, language: str) -> str:
    """``Savings``, ``Loan LN-1234``, or a further account's own name."""
    texts = TEXTS[language]
    if section.purpose in (Purpose.SAVINGS, Purpose.DEPOSITS, Purpose.SHARES):
        return texts[f"acct_{section.purpose}"]
    if section.purpose == Purpose.LOAN:
        return f"{texts['acct_loan']} {section.name}"
    return section.name


def statement_csv(statement: MemberStatement, language: str | None = None) -> str:
    """One row per movement, with opening and closing rows per account; amounts in cents
    and in shillings (a spreadsheet sums the cents exactly)."""
    lang = language or statement.language
    texts = TEXTS[lang]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["account", "date", "reference", "details", "amount_cents", "balance_cents",
                     "amount", "balance"])  # fmt: skip
    for section in statement.sections:
        title = section_title(section, lang)
        writer.writerow([title, statement.start.isoformat(), "", texts["opening"], "",
                         section.opening_cents, "", _kes(section.opening_cents)])  # fmt: skip
        for row in section.rows:
            writer.writerow([
                title, row.value_date.isoformat(), row.reference, texts[f"kind_{row.label}"],
                row.amount_cents, row.balance_cents, _kes(row.amount_cents, signed=True),
                _kes(row.balance_cents),
            ])  # fmt: skip
        writer.writerow([title, statement.end.isoformat(), "", texts["closing"], "",
                         section.closing_cents, "", _kes(section.closing_cents)])  # fmt: skip
    return out.getvalue()


def _kes(cents: int, *, signed: bool = False) -> str:
    if signed:
        return format_signed(cents) or "0"
    return format_cents(cents).removeprefix("KES ")


def _latin1(text: str) -> str:
    """The PDF's core fonts are Latin-1: anything else shows as ``?`` rather than failing."""
    return text.encode("latin-1", "replace").decode("latin-1")


def statement_pdf(statement: MemberStatement, language: str | None = None) -> bytes:
    """The statement as an A4 PDF (fpdf2, core fonts: no font files to ship)."""
    from fpdf import FPDF  # imported here: only the renderers need it

    lang = language or statement.language
    texts = TEXTS[lang]
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(_latin1(f"{texts['title']} {statement.start} - {statement.end}"))
    pdf.set_creator("SACCO")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.alias_nb_pages()

    def footer() -> None:
        pdf.set_y(-12)
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 5, f"{texts['page']} {pdf.page_no()}/{{nb}}", align="C")

    pdf.footer = footer  # type: ignore[method-assign]
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, _latin1(texts["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    who = statement.full_name + (f" ({statement.member_number})" if statement.member_number else "")
    for key, value in (
        ("member", who),
        ("period", f"{statement.start:%d/%m/%Y} - {statement.end:%d/%m/%Y}"),
        ("printed", f"{statement.printed_at:%d/%m/%Y %H:%M} UTC"),
    ):
        pdf.cell(0, 6, _latin1(f"{texts[key]}: {value}"), new_x="LMARGIN", new_y="NEXT")
    widths = (24, 46, 50, 34, 36)
    for section in statement.sections:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 11)
        owed = f" {texts['owed']}" if section.purpose == Purpose.LOAN else ""
        pdf.cell(0, 7, _latin1(section_title(section, lang) + owed), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", 9)
        for width, key in zip(widths, ("date", "reference", "details", "amount", "balance"),
                              strict=True):  # fmt: skip
            pdf.cell(width, 6, _latin1(texts[key]), border="B",
                     align="R" if key in ("amount", "balance") else "L")  # fmt: skip
        pdf.ln()
        pdf.set_font("Helvetica", size=9)
        lines = [(f"{statement.start:%d/%m/%Y}", "", texts["opening"], "",
                  _kes(section.opening_cents))]  # fmt: skip
        lines += [
            (f"{row.value_date:%d/%m/%Y}", row.reference, texts[f"kind_{row.label}"],
             _kes(row.amount_cents, signed=True), _kes(row.balance_cents))
            for row in section.rows
        ]  # fmt: skip
        if not section.rows:
            lines.append(("", "", texts["none"], "", ""))
        lines.append((f"{statement.end:%d/%m/%Y}", "", texts["closing"], "",
                      _kes(section.closing_cents)))  # fmt: skip
        for line in lines:
            for i, (width, value) in enumerate(zip(widths, line, strict=True)):
                pdf.cell(width, 5, _latin1(value), align="R" if i >= 3 else "L")
            pdf.ln()
    return bytes(pdf.output())


# ------------------------------------------------------------------ staff use cases

FORMATS = ("pdf", "csv")


def export_statement(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    start: date,
    end: date,
    *,
    fmt: str,
    language: str | None = None,
) -> tuple[MemberStatement, bytes]:
    """A member's statement for staff to download, as ``pdf`` or ``csv``; the read is
    audited (``member.statement_export``, with the period and format)."""
    if fmt not in FORMATS:
        raise InvalidInput("format must be pdf or csv", field="format")
    if language is not None and language not in TEXTS:
        raise InvalidInput("language must be en or sw", field="language")
    member = visible_member(session, actor, member_id)
    statement = build_statement(session, member.id, start, end, now=deps.now())
    audit.record(
        session, actor, "member.statement_export", target_type="member", target_id=member.id,
        after={"from": start.isoformat(), "to": end.isoformat(), "format": fmt},
        now=deps.now(),
    )  # fmt: skip
    session.flush()
    data = (
        statement_pdf(statement, language)
        if fmt == "pdf"
        else statement_csv(statement, language).encode()
    )
    return statement, data


def email_statement(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    start: date,
    end: date,
    *,
    request_id: str,
) -> OutboxMessage:
    """Queue the statement to the member's registered e-mail (``NoEmail`` if none); the
    outbox worker renders and sends it. Audited (``member.statement_email``)."""
    member = visible_member(session, actor, member_id)
    check_period(start, end)
    message = statement_mail.queue_statement_email(
        session, deps, member, start, end, tag=f"staff:{request_id}"
    )
    audit.record(
        session, actor, "member.statement_email", target_type="member", target_id=member.id,
        after={"from": start.isoformat(), "to": end.isoformat(), "outbox_id": message.id},
        now=deps.now(),
    )  # fmt: skip
    session.flush()
    return message
