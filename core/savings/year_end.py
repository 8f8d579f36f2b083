"""Year end: dividends on share capital and rebates (interest) on deposits (issue 14, part 2;
docs/savings/year-end.md).

**Methods as data.** A run carries the board's rates and its methods
(``DividendMethod``, ``RebateMethod``). Each member's shares and deposits over the
financial year (the calendar year) are read from the ledger as an opening balance and the
net change of each value date (``History``); the amounts are worked out exactly
(``Fraction``) by pure functions and rounded **down** to the cent, once per member and
per amount (the SACCO never pays more than the rate allows; what a member's rounding
drops, under a cent, is never declared and stays in retained earnings). The totals are
the sums of the members' rounded amounts, so they always equal them.

* dividend, ``closing_balance``: closing share capital × rate;
* dividend, ``days_held``: Σ each day's closing balance × rate / days in the year;
* rebate, ``monthly_pro_rata``: opening deposits × rate + Σ month *m*'s net contribution ×
  rate × (12 − m) / 12 (January's earns 11 months, December's none this year);
* rebate, ``average_monthly_balance``: the mean of the 12 month-end balances × rate.

Withholding tax: the dated ``withholding_tax_rates`` (``core.savings.interest.withholding_rate``),
``dividend`` on dividends and ``interest`` on rebates (a rebate is interest on deposits),
half up to the cent (``core.savings.interest.tax_cents``); net = gross − tax.

**A run.** Created as a draft (rates frozen with the tax rates in force that day), previewed
at will (every member, the totals, core and institutional capital before and after
against total assets), submitted by a holder of ``year_end:manage`` (the lines are frozen
and fingerprinted, ``digest``; refused when a capital ratio would fall below its minimum),
approved by another person holding ``approvals:decide_large`` (``year_end.post``), and
posted in the approval's transaction, once: the declaration (Dr retained earnings, Dr
interest on deposits / Cr dividends payable), then per member the tax (Dr dividends
payable / Cr withholding tax) and the net through ``credit_member`` (Dr dividends payable
/ Cr the member's savings, shares or deposits per the standing choice; an SMS with gross,
tax and net). Posting recomputes every line and refuses if it differs from what was
approved, so preview = posting. A year is posted at most once (``posted_year`` unique);
posting again returns the first result.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.approvals.engine import request_approval
from core.audit import log as audit
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError, InvalidInput, NotFound
from core.kernel.money import format_cents
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.ledger.chart import AccountType, NormalSide, Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.backoffice import visible_member
from core.members.status import may_deposit
from core.messaging.notifications import notify
from core.savings.accounts import Credit, CreditSource, credit_member
from core.savings.interest import tax_cents, withholding_rate
from core.savings.vocabulary import (
    DividendMethod,
    PayoutChoice,
    RebateMethod,
    TaxKind,
    YearEndStatus,
)
from db.models import Account, JournalEntry, Member, Posting
from db.models_savings import SavingsInterestPosting
from db.models_year_end import MemberPayoutChoice, YearEndLine, YearEndRun

POST_ACTION = "year_end.post"
MAKER_PERMISSION = "year_end:manage"
READ_PERMISSION = "year_end:read"
CHECKER_PERMISSION = "approvals:decide_large"
# The highest rate a run accepts: a guard against a slip of the keyboard, not regulation
# (no Kenyan rule caps a SACCO's dividend; 30% is far above any published one).
MAX_RATE_PERCENT = Decimal(30)
HELD = "held"  # a line whose member may not be paid now: the net stays in dividends payable
MONTHS = 12
# Withholding tax is remitted by the 20th of the month after it was withheld (Income Tax
# Act (Cap. 470), section 35(3); docs/savings/year-end.md).
REMITTANCE_DAY = 20


class CapitalRatioTooLow(DomainError):
    """The run would take a capital ratio below its regulatory minimum."""

    code = "capital_ratio_too_low"


class YearEndRefused(DomainError):
    """A run that cannot move on from where it is (its ``reason`` says why)."""

    code = "year_end_refused"


# ------------------------------------------------------------------ pure: methods


@dataclass(frozen=True)
class History:
    """One member account over the financial year: the balance at the close of the day
    before it opened and the net change of each value date within it (oldest first)."""

    opening_cents: int
    moves: tuple[tuple[date, int], ...] = ()

    @property
    def closing_cents(self) -> int:
        return self.opening_cents + sum(cents for _, cents in self.moves)


def days_in(year: int) -> int:
    return (date(year + 1, 1, 1) - date(year, 1, 1)).days


def balance_days(history: History, year: int) -> int:
    """Σ over the year's days of each day's closing balance (cent-days)."""
    end = date(year, 12, 31)
    total = history.opening_cents * days_in(year)
    for day, cents in history.moves:
        total += cents * ((end - day).days + 1)
    return total


def monthly_contributions(history: History) -> list[int]:
    """Each month's net change, January first."""
    months = [0] * MONTHS
    for day, cents in history.moves:
        months[day.month - 1] += cents
    return months


def month_end_balances(history: History) -> list[int]:
    balances, running = [], history.opening_cents
    for cents in monthly_contributions(history):
        running += cents
        balances.append(running)
    return balances


def dividend_exact(history: History, year: int, method: DividendMethod, rate: Decimal) -> Fraction:
    """A member's dividend, exact, in cents."""
    r = Fraction(rate) / 100
    if method is DividendMethod.CLOSING_BALANCE:
        return history.closing_cents * r
    return Fraction(balance_days(history, year), days_in(year)) * r


def rebate_exact(history: History, method: RebateMethod, rate: Decimal) -> Fraction:
    """A member's rebate on deposits, exact, in cents."""
    r = Fraction(rate) / 100
    if method is RebateMethod.MONTHLY_PRO_RATA:
        weighted = sum(
            Fraction(cents * (MONTHS - month), MONTHS)
            for month, cents in enumerate(monthly_contributions(history), start=1)
        )
        return (history.opening_cents + weighted) * r
    return Fraction(sum(month_end_balances(history)), MONTHS) * r


def to_cents(exact: Fraction) -> int:
    """The rounding rule: down to the cent (never below zero)."""
    return max(exact.numerator // exact.denominator, 0)


@dataclass(frozen=True)
class Terms:
    """What a run pays: the year, the methods, the board's rates, the tax rates."""

    year: int
    dividend_method: DividendMethod
    dividend_rate: Decimal
    rebate_method: RebateMethod
    rebate_rate: Decimal
    dividend_tax_rate: Decimal
    rebate_tax_rate: Decimal


@dataclass(frozen=True)
class MemberFacts:
    member_id: int
    shares: History
    deposits: History
    destination: str  # a PayoutChoice, or HELD


@dataclass(frozen=True)
class Line:
    """One member's amounts in cents."""

    member_id: int
    shares_basis_cents: int  # what the dividend is on (closing, or the average daily balance)
    deposits_basis_cents: int  # what the rebate is on (the weighted or average balance)
    dividend_gross_cents: int
    dividend_tax_cents: int
    rebate_gross_cents: int
    rebate_tax_cents: int
    destination: str

    @property
    def gross_cents(self) -> int:
        return self.dividend_gross_cents + self.rebate_gross_cents

    @property
    def tax_cents(self) -> int:
        return self.dividend_tax_cents + self.rebate_tax_cents

    @property
    def net_cents(self) -> int:
        return self.gross_cents - self.tax_cents

    def amounts(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.member_id, self.dividend_gross_cents, self.dividend_tax_cents,
            self.rebate_gross_cents, self.rebate_tax_cents, self.net_cents,
        )  # fmt: skip


def compute_line(facts: MemberFacts, terms: Terms) -> Line | None:
    """A member's line, or None when there is nothing to pay them."""
    dividend = to_cents(
        dividend_exact(facts.shares, terms.year, terms.dividend_method, terms.dividend_rate)
    )
    rebate = to_cents(rebate_exact(facts.deposits, terms.rebate_method, terms.rebate_rate))
    if dividend == 0 and rebate == 0:
        return None
    if terms.dividend_method is DividendMethod.CLOSING_BALANCE:
        shares_basis = facts.shares.closing_cents
    else:
        shares_basis = balance_days(facts.shares, terms.year) // days_in(terms.year)
    deposits_basis = to_cents(rebate_exact(facts.deposits, terms.rebate_method, Decimal(100)))
    return Line(
        member_id=facts.member_id,
        shares_basis_cents=shares_basis,
        deposits_basis_cents=deposits_basis,
        dividend_gross_cents=dividend,
        dividend_tax_cents=tax_cents(dividend, terms.dividend_tax_rate),
        rebate_gross_cents=rebate,
        rebate_tax_cents=tax_cents(rebate, terms.rebate_tax_rate),
        destination=facts.destination,
    )


def compute_lines(facts: Iterable[MemberFacts], terms: Terms) -> list[Line]:
    lines = [compute_line(f, terms) for f in sorted(facts, key=lambda f: f.member_id)]
    return [line for line in lines if line is not None]


@dataclass(frozen=True)
class Totals:
    members: int = 0
    dividend_gross_cents: int = 0
    dividend_tax_cents: int = 0
    rebate_gross_cents: int = 0
    rebate_tax_cents: int = 0
    net_cents: int = 0
    capitalised_to_shares_cents: int = 0


def totals_of(lines: Sequence[Line]) -> Totals:
    return Totals(
        members=len(lines),
        dividend_gross_cents=sum(x.dividend_gross_cents for x in lines),
        dividend_tax_cents=sum(x.dividend_tax_cents for x in lines),
        rebate_gross_cents=sum(x.rebate_gross_cents for x in lines),
        rebate_tax_cents=sum(x.rebate_tax_cents for x in lines),
        net_cents=sum(x.net_cents for x in lines),
        capitalised_to_shares_cents=sum(
            x.net_cents for x in lines if x.destination == PayoutChoice.SHARES
        ),
    )


def digest_of(lines: Sequence[Line]) -> str:
    """The fingerprint of every member's amounts (not where they go)."""
    body = json.dumps([line.amounts() for line in lines], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


# ------------------------------------------------------------------ pure: capital


@dataclass(frozen=True)
class CapitalMinimum:
    """A regulatory minimum: ``numerator`` ≥ ``minimum_percent`` % of total assets."""

    ratio: str
    numerator: str  # "core" or "institutional"
    minimum_percent: Decimal
    source: str


SASRA_2010 = "Sacco Societies (Deposit-Taking Sacco Business) Regulations, 2010, regulation 9"
CAPITAL_MINIMUMS: tuple[CapitalMinimum, ...] = (
    CapitalMinimum("core_capital_to_total_assets", "core", Decimal(10), SASRA_2010),
    CapitalMinimum(
        "institutional_capital_to_total_assets", "institutional", Decimal(8), SASRA_2010
    ),
)


@dataclass(frozen=True)
class CapitalPosition:
    share_capital_cents: int
    institutional_capital_cents: int  # reserves, retained earnings, the year's surplus
    total_assets_cents: int

    @property
    def core_capital_cents(self) -> int:
        return self.share_capital_cents + self.institutional_capital_cents

    def capital(self, numerator: str) -> int:
        return self.core_capital_cents if numerator == "core" else self.institutional_capital_cents

    def ratio_percent(self, numerator: str) -> Decimal | None:
        """The ratio in percent to two decimals (rounded down); None without assets."""
        if self.total_assets_cents <= 0:
            return None
        exact = Fraction(self.capital(numerator) * 100, self.total_assets_cents)
        hundredths = (exact * 100).numerator // (exact * 100).denominator
        return Decimal(hundredths) / 100


def capital_after(before: CapitalPosition, totals: Totals) -> CapitalPosition:
    """The position once a run is posted: the dividends leave retained earnings and the
    rebates the year's surplus (both institutional capital); what members capitalise into
    shares adds to share capital. Total assets do not change (a liability replaces
    equity); M-Pesa payouts later lower them, which only raises the ratios."""
    return CapitalPosition(
        before.share_capital_cents + totals.capitalised_to_shares_cents,
        before.institutional_capital_cents
        - totals.dividend_gross_cents
        - totals.rebate_gross_cents,
        before.total_assets_cents,
    )


def breaches(position: CapitalPosition) -> list[CapitalMinimum]:
    """The minimums ``position`` is below (exactly: capital × 100 < minimum × assets)."""
    return [
        m
        for m in CAPITAL_MINIMUMS
        if position.capital(m.numerator) * 100 < m.minimum_percent * position.total_assets_cents
    ]


# ------------------------------------------------------------------ reading


def _signed(normal_side: str, account_type: str, balance: int) -> int:
    """A balance on its type's side (a contra account counts against its type)."""
    usual = AccountType(account_type).normal_side
    return balance if NormalSide(normal_side) == usual else -balance


def capital_position(session: Session) -> CapitalPosition:
    """Core and institutional capital and total assets as the ledger stands."""
    share = institutional = assets = 0
    for account_type, purpose, side, cents in session.execute(
        select(
            Account.type, Account.purpose, Account.normal_side, func.sum(Account.balance_cents)
        ).group_by(Account.type, Account.purpose, Account.normal_side)
    ).tuples():
        value = _signed(side, account_type, int(cents or 0))
        if account_type == AccountType.ASSET:
            assets += value
        elif account_type == AccountType.EQUITY and purpose == Purpose.SHARES:
            share += value
        elif account_type in (AccountType.EQUITY, AccountType.INCOME):
            institutional += value
        elif account_type == AccountType.EXPENSE:
            institutional -= value
    return CapitalPosition(share, institutional, assets)


def member_histories(session: Session, year: int) -> dict[int, dict[str, History]]:
    """Each member's shares and deposits over ``year``, from the ledger's postings (one
    grouped query)."""
    first = date(year, 1, 1)
    rows = session.execute(
        select(
            Account.member_id, Account.purpose, Account.normal_side, JournalEntry.value_date,
            func.sum(Posting.amount_cents),
        )
        .join(Posting, Posting.account_id == Account.id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            Account.purpose.in_((Purpose.SHARES, Purpose.DEPOSITS)),
            Account.member_id.is_not(None),
            JournalEntry.value_date <= date(year, 12, 31),
        )
        .group_by(Account.member_id, Account.purpose, Account.normal_side, JournalEntry.value_date)
    ).tuples()  # fmt: skip
    opening: dict[tuple[int, str], int] = defaultdict(int)
    moves: dict[tuple[int, str], list[tuple[date, int]]] = defaultdict(list)
    for member_id, purpose, side, day, debit in rows:
        change = int(debit) if side == NormalSide.DEBIT else -int(debit)
        key = (int(member_id or 0), str(purpose))
        if day < first:
            opening[key] += change
        else:
            moves[key].append((day, change))
    out: dict[int, dict[str, History]] = defaultdict(dict)
    for key in set(opening) | set(moves):
        member_id, purpose = key
        out[member_id][purpose] = History(opening[key], tuple(sorted(moves[key])))
    return out


def member_facts(session: Session, year: int) -> list[MemberFacts]:
    histories = member_histories(session, year)
    if not histories:
        return []
    rows = session.execute(
        select(Member.id, Member.status, MemberPayoutChoice.destination)
        .outerjoin(MemberPayoutChoice, MemberPayoutChoice.member_id == Member.id)
        .where(Member.id.in_(list(histories)))
    ).tuples()
    facts = []
    for member_id, status, choice in rows:
        held = histories[member_id]
        facts.append(
            MemberFacts(
                member_id,
                held.get(Purpose.SHARES, History(0)),
                held.get(Purpose.DEPOSITS, History(0)),
                (choice or PayoutChoice.SAVINGS) if may_deposit(status) else HELD,
            )
        )
    return facts


def terms_of(run: YearEndRun) -> Terms:
    return Terms(
        run.financial_year,
        DividendMethod(run.dividend_method),
        Decimal(run.dividend_rate_percent),
        RebateMethod(run.rebate_method),
        Decimal(run.rebate_rate_percent),
        Decimal(run.dividend_tax_percent),
        Decimal(run.rebate_tax_percent),
    )


def _lines_of(rows: Iterable[YearEndLine]) -> list[Line]:
    return [
        Line(
            r.member_id,
            r.shares_basis_cents,
            r.deposits_basis_cents,
            r.dividend_gross_cents,
            r.dividend_tax_cents,
            r.rebate_gross_cents,
            r.rebate_tax_cents,
            r.destination,
        )  # fmt: skip
        for r in rows
    ]


def frozen_lines(session: Session, run_id: int) -> list[Line]:
    return _lines_of(
        session.scalars(
            select(YearEndLine).where(YearEndLine.run_id == run_id).order_by(YearEndLine.member_id)
        )
    )


# ------------------------------------------------------------------ runs


def _rate(body: Mapping[str, Any], name: str) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f'{name} is a percent written as text, e.g. "12.5"', field=name)
    try:
        rate = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(f"{name} is not a number", field=name) from None
    if not rate.is_finite() or rate < 0 or rate > MAX_RATE_PERCENT:
        raise InvalidInput(f"{name} must be from 0 to {MAX_RATE_PERCENT}", field=name)
    if rate != rate.quantize(Decimal("0.0001")):
        raise InvalidInput(f"{name} has at most four decimals", field=name)
    return rate.quantize(Decimal("0.0001"))


def _method(body: Mapping[str, Any], name: str, kind: type[Any], default: str) -> Any:
    value = body.get(name, default)
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(f"{name} must be one of {allowed}", field=name) from None


def get_run(session: Session, run_id: int, *, lock: bool = False) -> YearEndRun:
    run = session.get(YearEndRun, run_id, with_for_update=lock)
    if run is None:
        raise NotFound("no such year-end run")
    return run


def create_run(
    session: Session, deps: CoreDeps, actor: Principal, body: Mapping[str, Any]
) -> YearEndRun:
    """A draft run for a financial year that is over, with the board's proposed rates."""
    year = body.get("financial_year")
    if isinstance(year, bool) or not isinstance(year, int):
        raise InvalidInput("financial_year is a year, e.g. 2026", field="financial_year")
    today = business_date(deps.now())
    if year >= today.year:
        raise InvalidInput(
            f"the financial year {year} is not over: its run comes after 31 December",
            field="financial_year",
        )
    first_entry = session.scalar(select(func.min(JournalEntry.value_date)))
    if first_entry is None or year < first_entry.year:
        raise NotFound(f"no ledger entries in or before {year}: unknown financial year")
    run = YearEndRun(
        financial_year=year,
        status=YearEndStatus.DRAFT,
        dividend_method=_method(body, "dividend_method", DividendMethod, "closing_balance"),
        dividend_rate_percent=_rate(body, "dividend_rate_percent"),
        rebate_method=_method(body, "rebate_method", RebateMethod, "monthly_pro_rata"),
        rebate_rate_percent=_rate(body, "rebate_rate_percent"),
        dividend_tax_percent=withholding_rate(session, TaxKind.DIVIDEND, today),
        rebate_tax_percent=withholding_rate(session, TaxKind.INTEREST, today),
        members=0, dividend_gross_cents=0, dividend_tax_cents=0, rebate_gross_cents=0,
        rebate_tax_cents=0, net_cents=0,
        created_by=actor.id if actor.kind == "staff" else None,
        created_at=deps.now(),
    )  # fmt: skip
    session.add(run)
    session.flush()
    audit.record(
        session, actor, "year_end.create", target_type="year_end_run", target_id=run.id,
        after=run_dict(run), now=deps.now(),
    )  # fmt: skip
    return run


@dataclass(frozen=True)
class Preview:
    run: YearEndRun
    lines: list[Line]
    totals: Totals
    capital_before: CapitalPosition
    capital_after: CapitalPosition
    below_minimum: list[CapitalMinimum] = field(default_factory=list)


def preview(session: Session, run_id: int) -> Preview:
    """Every member's amounts, the totals and the effect on capital. A posted run shows what
    was posted; any other is worked out from the ledger now."""
    run = get_run(session, run_id)
    if run.status == YearEndStatus.POSTED:
        lines = frozen_lines(session, run.id)
    else:
        lines = compute_lines(member_facts(session, run.financial_year), terms_of(run))
    totals = totals_of(lines)
    before = capital_position(session)
    posted = run.status == YearEndStatus.POSTED  # then the ledger already holds the run
    after = before if posted else capital_after(before, totals)
    return Preview(run, lines, totals, before, after, breaches(after))


def _refuse_below_minimum(found: Sequence[CapitalMinimum], after: CapitalPosition) -> None:
    if found:
        m = found[0]
        raise CapitalRatioTooLow(
            f"{m.ratio} would be {after.ratio_percent(m.numerator)}%, below the minimum "
            f"{m.minimum_percent}% ({m.source})",
            ratio=m.ratio,
            minimum_percent=str(m.minimum_percent),
        )


def _other_run(session: Session, run: YearEndRun) -> YearEndRun | None:
    return session.scalar(
        select(YearEndRun).where(
            YearEndRun.financial_year == run.financial_year,
            YearEndRun.id != run.id,
            YearEndRun.status.in_((YearEndStatus.PENDING_APPROVAL, YearEndStatus.POSTED)),
        )
    )


def submit_run(
    session: Session, deps: CoreDeps, actor: Principal, run_id: int, *, large_threshold_cents: int
) -> Any:
    """Freeze the run's lines and ask a second person to approve its posting
    (``year_end.post``). Refused when a capital ratio would fall below its minimum, or
    another run of the year waits or was posted."""
    run = get_run(session, run_id, lock=True)
    if run.status not in (YearEndStatus.DRAFT, YearEndStatus.PENDING_APPROVAL):
        raise YearEndRefused(f"the run is {run.status}", reason=run.status)
    if run.status == YearEndStatus.PENDING_APPROVAL and _pending(session, run):
        raise YearEndRefused("the run waits for approval", reason="pending_approval")
    other = _other_run(session, run)
    if other is not None:
        raise YearEndRefused(
            f"run {other.id} of {run.financial_year} is {other.status}", reason="year_taken"
        )
    found = preview(session, run.id)
    _refuse_below_minimum(found.below_minimum, found.capital_after)
    if not found.lines:
        raise YearEndRefused("nothing to pay at these rates", reason="nothing_to_pay")
    session.execute(delete(YearEndLine).where(YearEndLine.run_id == run.id))
    for line in found.lines:
        session.add(
            YearEndLine(
                run_id=run.id,
                member_id=line.member_id,
                shares_basis_cents=line.shares_basis_cents,
                deposits_basis_cents=line.deposits_basis_cents,
                dividend_gross_cents=line.dividend_gross_cents,
                dividend_tax_cents=line.dividend_tax_cents,
                rebate_gross_cents=line.rebate_gross_cents,
                rebate_tax_cents=line.rebate_tax_cents,
                net_cents=line.net_cents,
                destination=line.destination,
            )  # fmt: skip
        )
    _set_totals(run, found.totals)
    run.digest = digest_of(found.lines)
    run.status = YearEndStatus.PENDING_APPROVAL
    run.submitted_at = deps.now()
    session.flush()
    req = request_approval(
        session, deps, actor, POST_ACTION,
        payload={"run_id": run.id, "digest": run.digest, "net_cents": found.totals.net_cents},
        note=f"year end {run.financial_year}: dividends and rebates, "
        f"{format_cents(found.totals.net_cents)} net to {found.totals.members} members",
        large_threshold_cents=large_threshold_cents,
    )  # fmt: skip
    run.approval_id = req.id
    session.flush()
    return req


def _pending(session: Session, run: YearEndRun) -> bool:
    from db.models import ApprovalRequest

    if run.approval_id is None:
        return False
    req = session.get(ApprovalRequest, run.approval_id)
    return req is not None and req.status == "pending"


def _set_totals(run: YearEndRun, totals: Totals) -> None:
    run.members = totals.members
    run.dividend_gross_cents = totals.dividend_gross_cents
    run.dividend_tax_cents = totals.dividend_tax_cents
    run.rebate_gross_cents = totals.rebate_gross_cents
    run.rebate_tax_cents = totals.rebate_tax_cents
    run.net_cents = totals.net_cents


def check_post(session: Session, payload: Mapping[str, Any]) -> YearEndRun:
    """What approval checks before and when it posts: the run waits, unchanged."""
    run_id = payload.get("run_id")
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        raise InvalidInput("run_id is required", field="run_id")
    run = get_run(session, run_id, lock=True)
    if run.status == YearEndStatus.POSTED:
        return run
    if run.status != YearEndStatus.PENDING_APPROVAL or run.digest != payload.get("digest"):
        raise YearEndRefused("the run changed since it was submitted", reason="changed")
    return run


def post_run(
    session: Session, deps: CoreDeps, actor: Principal, payload: Mapping[str, Any]
) -> dict[str, Any]:
    """Post an approved run, once (a posted run answers with what it posted)."""
    run = check_post(session, payload)
    if run.status == YearEndStatus.POSTED:
        return {"run_id": run.id, "posted": False, **_totals_dict(run)}
    today = business_date(deps.now())
    terms = terms_of(run)
    if (
        withholding_rate(session, TaxKind.DIVIDEND, today) != terms.dividend_tax_rate
        or withholding_rate(session, TaxKind.INTEREST, today) != terms.rebate_tax_rate
    ):
        raise YearEndRefused(
            "a withholding tax rate changed since the run was made: make a new run",
            reason="tax_rate_changed",
        )
    lines = frozen_lines(session, run.id)
    now_lines = compute_lines(member_facts(session, run.financial_year), terms)
    if digest_of(now_lines) != run.digest or digest_of(lines) != run.digest:
        raise YearEndRefused(
            "the members' amounts differ from the preview approved (entries dated in the "
            "year were posted since): submit the run again", reason="preview_stale",
        )  # fmt: skip
    totals = totals_of(lines)
    before = capital_position(session)
    after = capital_after(before, totals)
    _refuse_below_minimum(breaches(after), after)
    declared = _declare(session, deps, run, totals, today)
    status_now = dict(
        session.execute(
            select(Member.id, Member.status).where(Member.id.in_([x.member_id for x in lines]))
        )
        .tuples()
        .all()
    )
    rows = {
        r.member_id: r
        for r in session.scalars(select(YearEndLine).where(YearEndLine.run_id == run.id))
    }
    for line in lines:
        row = rows[line.member_id]
        if row.destination != HELD and not may_deposit(status_now[line.member_id]):
            row.destination = HELD
        row.credit_entry_id = _pay(session, deps, run, line, row.destination, today)
    run.status = YearEndStatus.POSTED
    run.posted_year = run.financial_year
    run.posted_on = today
    run.posted_at = deps.now()
    run.declare_entry_id = declared
    session.flush()
    audit.record(
        session, actor, POST_ACTION, target_type="year_end_run", target_id=run.id,
        after=run_dict(run), now=deps.now(),
    )  # fmt: skip
    return {"run_id": run.id, "posted": True, **_totals_dict(run)}


def _key(run: YearEndRun, what: str) -> str:
    return f"year_end:{run.financial_year}:{run.id}:{what}"


def _declare(session: Session, deps: CoreDeps, run: YearEndRun, totals: Totals, day: date) -> int:
    """Dr retained earnings (dividends) and interest on deposits (rebates) / Cr payable."""
    code = ledger.account_id_by_code
    legs = [
        ledger.Leg(code(session, SystemAccount.RETAINED_EARNINGS), totals.dividend_gross_cents),
        ledger.Leg(code(session, SystemAccount.INTEREST_ON_DEPOSITS), totals.rebate_gross_cents),
        ledger.Leg(
            code(session, SystemAccount.DIVIDENDS_PAYABLE),
            -(totals.dividend_gross_cents + totals.rebate_gross_cents),
        ),
    ]
    posted = ledger.post_entry(
        session, kind=EntryKind.YEAR_END_DECLARE, legs=[x for x in legs if x.amount_cents],
        idempotency_key=_key(run, "declare"), now=deps.now(), value_date=day,
        memo=f"Dividends and rebates declared for {run.financial_year} (run {run.id})",
    )  # fmt: skip
    return posted.entry_id


def _pay(
    session: Session, deps: CoreDeps, run: YearEndRun, line: Line, destination: str, day: date
) -> int | None:
    """A member's tax to its payable account and the net to their account, with the SMS."""
    payable = ledger.account_id_by_code(session, SystemAccount.DIVIDENDS_PAYABLE)
    if line.tax_cents:
        ledger.post_entry(
            session, kind=EntryKind.YEAR_END_TAX,
            legs=[ledger.Leg(payable, line.tax_cents),
                  ledger.Leg(ledger.account_id_by_code(session, SystemAccount.WITHHOLDING_TAX),
                             -line.tax_cents)],
            idempotency_key=_key(run, f"tax:{line.member_id}"), now=deps.now(), value_date=day,
            memo=f"Withholding tax, dividend and rebate {run.financial_year}",
        )  # fmt: skip
    member = session.get_one(Member, line.member_id)
    notice = {
        "year": str(run.financial_year),
        "dividend": format_cents(line.dividend_gross_cents),
        "rebate": format_cents(line.rebate_gross_cents),
        "tax": format_cents(line.tax_cents),
        "net": format_cents(line.net_cents),
    }
    if destination == HELD or line.net_cents <= 0:
        notify(
            session, template="year_end_held", business_key=_key(run, f"sms:{line.member_id}"),
            now=deps.now(), member=member, data={"sacco": deps.sacco_name, **notice},
        )  # fmt: skip
        return None
    target = Purpose.SAVINGS if destination == PayoutChoice.MPESA else Purpose(destination)
    key = _key(run, f"net:{line.member_id}")
    credited = credit_member(
        session, deps,
        Credit(line.member_id, target.value, line.net_cents, CreditSource.YEAR_END, key, key,
               memo=f"Dividend and rebate {run.financial_year}, net of tax",
               template="year_end_paid", notice=notice),
    )  # fmt: skip
    return credited.posted.entry_id


def reject_run(session: Session, payload: Mapping[str, Any]) -> dict[str, Any]:
    run_id = payload.get("run_id")
    run = session.get(YearEndRun, run_id) if isinstance(run_id, int) else None
    if run is not None and run.status == YearEndStatus.PENDING_APPROVAL:
        run.status = YearEndStatus.REJECTED
        session.flush()
    return {"run_id": run_id}


def _totals_dict(run: YearEndRun) -> dict[str, int]:
    return {
        "members": run.members,
        "dividend_gross_cents": run.dividend_gross_cents,
        "dividend_tax_cents": run.dividend_tax_cents,
        "rebate_gross_cents": run.rebate_gross_cents,
        "rebate_tax_cents": run.rebate_tax_cents,
        "net_cents": run.net_cents,
    }


def run_dict(run: YearEndRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "financial_year": run.financial_year,
        "status": run.status,
        "dividend_method": run.dividend_method,
        "dividend_rate_percent": str(Decimal(run.dividend_rate_percent).normalize()),
        "rebate_method": run.rebate_method,
        "rebate_rate_percent": str(Decimal(run.rebate_rate_percent).normalize()),
        "dividend_tax_percent": str(Decimal(run.dividend_tax_percent).normalize()),
        "rebate_tax_percent": str(Decimal(run.rebate_tax_percent).normalize()),
        **_totals_dict(run),
        "digest": run.digest,
        "approval_id": run.approval_id,
        "posted_on": run.posted_on.isoformat() if run.posted_on else None,
    }


def line_dict(line: Line) -> dict[str, Any]:
    return {**asdict(line), "tax_cents": line.tax_cents, "net_cents": line.net_cents}


def capital_dict(position: CapitalPosition) -> dict[str, Any]:
    return {
        "share_capital_cents": position.share_capital_cents,
        "institutional_capital_cents": position.institutional_capital_cents,
        "core_capital_cents": position.core_capital_cents,
        "total_assets_cents": position.total_assets_cents,
        "ratios": [
            {
                "ratio": m.ratio,
                "percent": None if (p := position.ratio_percent(m.numerator)) is None else str(p),
                "minimum_percent": str(m.minimum_percent),
                "source": m.source,
            }
            for m in CAPITAL_MINIMUMS
        ],
    }


def preview_dict(found: Preview) -> dict[str, Any]:
    return {
        "run": run_dict(found.run),
        "totals": asdict(found.totals),
        "capital_before": capital_dict(found.capital_before),
        "capital_after": capital_dict(found.capital_after),
        "below_minimum": [m.ratio for m in found.below_minimum],
        "lines": [line_dict(x) for x in found.lines],
    }


# ------------------------------------------------------------------ standing choice


def set_payout_choice(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int, destination: Any
) -> str:
    """Set where a member's dividends and rebates go from now on (audited)."""
    try:
        choice = PayoutChoice(destination)
    except ValueError:
        allowed = ", ".join(c.value for c in PayoutChoice)
        raise InvalidInput(f"destination must be one of {allowed}", field="destination") from None
    visible_member(session, actor, member_id)
    row = session.get(MemberPayoutChoice, member_id, with_for_update=True)
    before = row.destination if row is not None else PayoutChoice.SAVINGS.value
    if row is None:
        row = MemberPayoutChoice(member_id=member_id, destination=choice.value,
                                 updated_at=deps.now())  # fmt: skip
        session.add(row)
    row.destination = choice.value
    row.updated_by = actor.id if actor.kind == "staff" else None
    row.updated_at = deps.now()
    session.flush()
    audit.record(
        session, actor, "member.payout_choice", target_type="member", target_id=member_id,
        before={"destination": before}, after={"destination": choice.value}, now=deps.now(),
    )  # fmt: skip
    return choice.value


def payout_choice(session: Session, actor: Principal, member_id: int) -> str:
    visible_member(session, actor, member_id)
    return (
        session.scalar(
            select(MemberPayoutChoice.destination).where(MemberPayoutChoice.member_id == member_id)
        )
        or PayoutChoice.SAVINGS.value
    )


# ------------------------------------------------------------------ tax remittance


@dataclass(frozen=True)
class TaxRow:
    kind: str  # TaxKind
    source: str  # savings_interest, deposit_rebate, dividend
    payments: int
    gross_cents: int
    tax_cents: int


@dataclass(frozen=True)
class TaxReport:
    month: str  # YYYY-MM
    due_on: date
    rows: list[TaxRow]
    total_tax_cents: int
    ledger_withheld_cents: int  # credits to the withholding tax account dated in the month


def due_date(year: int, month: int) -> date:
    """The 20th of the month after."""
    return date(year + month // 12, month % 12 + 1, REMITTANCE_DAY)


def withholding_tax_report(session: Session, year: int, month: int) -> TaxReport:
    """Tax withheld in a month, by kind, and when it is due."""
    if not 1 <= month <= 12 or not 2000 <= year <= 9999:
        raise InvalidInput("month is YYYY-MM", field="month")
    first = date(year, month, 1)
    last = due_date(year, month).replace(day=1) - timedelta(days=1)
    interest = session.execute(
        select(func.count(), func.coalesce(func.sum(SavingsInterestPosting.gross_cents), 0),
               func.coalesce(func.sum(SavingsInterestPosting.tax_cents), 0))
        .where(SavingsInterestPosting.business_date.between(first, last))
    ).one()  # fmt: skip
    posted = (
        select(YearEndLine)
        .join(YearEndRun, YearEndRun.id == YearEndLine.run_id)
        .where(YearEndRun.status == YearEndStatus.POSTED,
               YearEndRun.posted_on.between(first, last))
    )  # fmt: skip
    lines = list(session.scalars(posted))
    rows = [
        TaxRow(TaxKind.INTEREST, "savings_interest", int(interest[0]), int(interest[1]),
               int(interest[2])),
        TaxRow(TaxKind.INTEREST, "deposit_rebate", sum(1 for x in lines if x.rebate_gross_cents),
               sum(x.rebate_gross_cents for x in lines), sum(x.rebate_tax_cents for x in lines)),
        TaxRow(TaxKind.DIVIDEND, "dividend", sum(1 for x in lines if x.dividend_gross_cents),
               sum(x.dividend_gross_cents for x in lines),
               sum(x.dividend_tax_cents for x in lines)),
    ]  # fmt: skip
    wht = ledger.account_id_by_code(session, SystemAccount.WITHHOLDING_TAX)
    withheld = session.scalar(
        select(func.coalesce(func.sum(-Posting.amount_cents), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Posting.account_id == wht, Posting.amount_cents < 0,
               JournalEntry.value_date.between(first, last))
    )  # fmt: skip
    return TaxReport(
        f"{year:04d}-{month:02d}",
        due_date(year, month),
        rows,
        sum(r.tax_cents for r in rows),
        int(withheld or 0),
    )
