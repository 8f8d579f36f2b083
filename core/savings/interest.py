"""Interest on savings: accrued daily by set-based SQL, posted at each product's frequency
with withholding tax (issue 14, part 1; docs/savings/products.md).

**Accrual.** One statement over every account whose product (``core.savings.products``;
a member account belongs to its purpose's default product) bears interest: each
account's closing balance of the day (today's balance less what entries dated after the
day moved) earns ``balance × rate / 100 / 365`` (actual/365). Kept exact in units of
``1 / DENOMINATOR`` cent: a day adds ``balance × rate × 10,000`` units to the account's
carried remainder, whole cents go to its accrued figure and the rest (under one cent) is
carried to the next day, so nothing is lost to rounding. Under the daily balance method a
day whose balance is below the product's minimum to earn adds nothing; under the average
daily balance method every day accrues and a period whose average ends below the minimum
is forfeited at posting. The day's whole cents are booked per product, one entry
(``savings.accrual``: Dr interest on deposits / Cr interest payable) keyed by the date
and the product.

**Posting.** On the last day of a product's period (month, quarter, year) each account's
accrued cents leave interest payable: the net to the member's account, the withholding
tax (``withholding_tax_rates``, the rate in force on the day) to its payable account, one
entry per account (``savings.interest``), a row in ``savings_interest_postings`` and an
SMS with gross, tax and net. What is posted is exactly what was accrued.

**Once per date.** ``savings_accrual_runs`` has one row per business date, written in the
same transaction; a date already run is not run again, and dates run in order
(``dates_to_accrue`` catches up missed ones). The SQL is PostgreSQL's; the SQLite demo
refuses it (``AccrualUnsupported``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError
from core.kernel.money import format_cents
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.vocabulary import EntryKind
from core.messaging.notifications import Term, notify
from core.savings.vocabulary import BalanceMethod, PostingFrequency, TaxKind
from db.models import Member
from db.models_savings import (
    SavingsAccrualRun,
    SavingsInterestPosting,
    SavingsProduct,
    SavingsProductVersion,
    WithholdingTaxRate,
)

# One cent is DENOMINATOR units: 365 days × 100 (a percent) × 10,000 (the rate's four
# decimals). A day's units on ``balance`` cents at ``rate`` % a year: balance × rate × 10^4.
DENOMINATOR = 365 * 100 * 10_000
RATE_SCALE = 10_000
MAX_CATCH_UP_DAYS = 3660


class AccrualUnsupported(DomainError):
    """Savings accrual needs PostgreSQL (the embedded SQLite demo has no set-based run)."""

    code = "accrual_unsupported"


class AccrualOutOfOrder(DomainError):
    """A date asked before the one after the last date accrued, or after a gap."""

    code = "accrual_out_of_order"


@dataclass
class AccrualResult:
    business_date: date
    ran: bool  # False: the date was accrued before; nothing was done
    accounts: int = 0
    accrued_cents: int = 0
    by_product: dict[str, int] = field(default_factory=dict)  # code -> cents accrued
    posted_accounts: int = 0
    posted_gross_cents: int = 0
    posted_tax_cents: int = 0
    forfeited_cents: int = 0
    fd_interest_cents: int = 0  # fixed deposits' gross interest paid (run_day)
    fd_matured: int = 0


# ------------------------------------------------------------------ pure


def rate_units(rate_percent: Decimal) -> int:
    """A rate in ten-thousandths of a percent (``Decimal("7.5")`` -> 75,000)."""
    scaled = rate_percent * RATE_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError("a rate has at most four decimals")
    return int(scaled)


def accrue_one(remainder_units: int, balance_cents: int, rate: int) -> tuple[int, int]:
    """One account's day, as the SQL does it: (whole cents accrued, remainder carried)."""
    total = remainder_units + max(balance_cents, 0) * rate
    return total // DENOMINATOR, total % DENOMINATOR


def tax_cents(gross_cents: int, rate_percent: Decimal) -> int:
    """Withholding tax on ``gross_cents``, to the nearest cent (half up)."""
    units = gross_cents * rate_units(rate_percent)
    return (units + 50 * RATE_SCALE) // (100 * RATE_SCALE)


def period_ends(day: date, frequency: PostingFrequency) -> bool:
    """Whether ``day`` is the last day of a posting period of ``frequency``."""
    following = day + timedelta(days=1)
    if following.day != 1:
        return False
    if frequency is PostingFrequency.MONTHLY:
        return True
    if frequency is PostingFrequency.QUARTERLY:
        return following.month in (1, 4, 7, 10)
    return following.month == 1


# ------------------------------------------------------------------ reading


def withholding_rate(session: Session, kind: TaxKind, day: date) -> Decimal:
    """The rate in force on ``day`` (0 when the table has none yet)."""
    rate = session.scalar(
        select(WithholdingTaxRate.rate_percent)
        .where(WithholdingTaxRate.kind == kind.value, WithholdingTaxRate.effective_from <= day)
        .order_by(WithholdingTaxRate.effective_from.desc())
        .limit(1)
    )
    return rate if rate is not None else Decimal(0)


def last_accrued(session: Session) -> date | None:
    return session.scalar(select(func.max(SavingsAccrualRun.business_date)))


def dates_to_accrue(session: Session, deps: CoreDeps, through: date | None = None) -> list[date]:
    """The dates still to accrue up to ``through`` (default yesterday in Nairobi), oldest
    first; the first run ever accrues ``through`` alone."""
    today = business_date(deps.now())
    through = through or today - timedelta(days=1)
    if through >= today:
        raise AccrualOutOfOrder(
            f"{through} is not over yet: accrue up to {today - timedelta(days=1)}"
        )
    last = last_accrued(session)
    start = through if last is None else last + timedelta(days=1)
    if (through - start).days > MAX_CATCH_UP_DAYS:
        raise AccrualOutOfOrder(f"more than {MAX_CATCH_UP_DAYS} days to catch up: check --date")
    return [start + timedelta(days=n) for n in range((through - start).days + 1)]


# ------------------------------------------------------------------ the run

_ACCRUE = text(
    """
WITH prod AS (
    SELECT p.id AS product_id, p.default_for AS purpose,
           CAST(v.rate_percent * 10000 AS BIGINT) AS rate,
           v.balance_method, v.min_balance_to_earn_cents AS min_earn
    FROM savings_products p
    JOIN savings_product_versions v ON v.product_id = p.id AND v.version = p.current_version
    WHERE v.rate_percent > 0 AND v.kind <> 'fixed_deposit'  -- paid exactly by its own rows
),
later AS (
    SELECT p.account_id, CAST(SUM(p.amount_cents) AS BIGINT) AS debit
    FROM journal_entries e JOIN postings p ON p.entry_id = e.id
    WHERE e.value_date > :day
    GROUP BY p.account_id
),
calc AS (
    SELECT a.id AS account_id, prod.product_id, prod.balance_method, prod.min_earn, prod.rate,
           a.balance_cents - COALESCE(
               CASE WHEN a.normal_side = 'D' THEN l.debit ELSE -l.debit END, 0) AS bal
    FROM accounts a
    JOIN prod ON (a.savings_product_id IS NULL AND prod.purpose = a.purpose)
              OR prod.product_id = a.savings_product_id
    LEFT JOIN later l ON l.account_id = a.id
),
units AS (
    SELECT c.account_id, c.product_id, GREATEST(c.bal, 0) AS bal,
           COALESCE(s.remainder_units, 0) + CASE
               WHEN c.bal <= 0 THEN 0
               WHEN c.balance_method = 'daily_balance' AND c.bal < c.min_earn THEN 0
               ELSE c.bal * c.rate END AS total
    FROM calc c LEFT JOIN savings_accruals s ON s.account_id = c.account_id
),
up AS (
    INSERT INTO savings_accruals AS s (account_id, product_id, period_start, accrued_through,
        remainder_units, accrued_cents, balance_days_cents, days)
    SELECT account_id, product_id, :day, :day, total % :den, total / :den, bal, 1 FROM units
    ON CONFLICT (account_id) DO UPDATE SET
        product_id = EXCLUDED.product_id,
        accrued_through = EXCLUDED.accrued_through,
        remainder_units = EXCLUDED.remainder_units,
        accrued_cents = s.accrued_cents + EXCLUDED.accrued_cents,
        balance_days_cents = s.balance_days_cents + EXCLUDED.balance_days_cents,
        days = s.days + 1
    WHERE s.accrued_through < EXCLUDED.accrued_through
    RETURNING s.account_id
)
SELECT u.product_id, COUNT(*) AS accounts, CAST(SUM(u.total / :den) AS BIGINT) AS cents
FROM units u JOIN up ON up.account_id = u.account_id
GROUP BY u.product_id
"""
)


def _start_run(session: Session, deps: CoreDeps, day: date) -> SavingsAccrualRun | None:
    """The date's run row, new; None when the date was run before. Refuses a date out of
    order (before the last, or after a gap)."""
    if session.get_bind().dialect.name != "postgresql":
        raise AccrualUnsupported("savings accrual runs on PostgreSQL only")
    if session.scalar(select(SavingsAccrualRun.id).where(SavingsAccrualRun.business_date == day)):
        return None
    last = last_accrued(session)
    if last is not None and day != last + timedelta(days=1):
        raise AccrualOutOfOrder(f"the last date accrued is {last}: accrue {last} + 1 day next")
    run = SavingsAccrualRun(
        business_date=day, accounts=0, accrued_cents=0, posted_accounts=0,
        posted_gross_cents=0, posted_tax_cents=0, forfeited_cents=0, created_at=deps.now(),
    )  # fmt: skip
    session.add(run)
    session.flush()  # a second process waits here on the unique date, then fails and retries
    return run


def _book(session: Session, deps: CoreDeps, day: date, key: str, cents: int, memo: str) -> None:
    """Dr interest on deposits / Cr interest payable (the reverse for negative cents)."""
    if cents == 0:
        return
    expense = ledger.account_id_by_code(session, SystemAccount.INTEREST_ON_DEPOSITS)
    payable = ledger.account_id_by_code(session, SystemAccount.INTEREST_PAYABLE)
    ledger.post_entry(
        session, kind=EntryKind.SAVINGS_ACCRUAL,
        legs=[ledger.Leg(expense, cents), ledger.Leg(payable, -cents)],
        idempotency_key=key, now=deps.now(), value_date=day, memo=memo[:160],
    )  # fmt: skip


def accrue_day(session: Session, deps: CoreDeps, day: date) -> AccrualResult:
    """Accrue ``day`` for every interest-bearing account and, where ``day`` ends a
    product's period, post. Run once per date, in order (see the module)."""
    run = _start_run(session, deps, day)
    if run is None:
        return AccrualResult(day, ran=False)
    codes = dict(session.execute(select(SavingsProduct.id, SavingsProduct.code)).tuples().all())
    result = AccrualResult(day, ran=True)
    for product_id, accounts, cents in session.execute(
        _ACCRUE, {"day": day, "den": DENOMINATOR}
    ).tuples():
        result.accounts += int(accounts)
        result.accrued_cents += int(cents)
        result.by_product[codes[product_id]] = int(cents)
        _book(
            session, deps, day, f"savings.accrual:{day.isoformat()}:{product_id}", int(cents),
            f"Interest accrued {day.isoformat()} {codes[product_id]}",
        )  # fmt: skip
    _post_ending(session, deps, day, result)
    run.accounts = result.accounts
    run.accrued_cents = result.accrued_cents
    run.posted_accounts = result.posted_accounts
    run.posted_gross_cents = result.posted_gross_cents
    run.posted_tax_cents = result.posted_tax_cents
    run.forfeited_cents = result.forfeited_cents
    session.flush()
    return result


# ------------------------------------------------------------------ posting

_DUE = text(
    """
SELECT s.account_id, s.product_id, s.period_start, s.accrued_cents, s.balance_days_cents,
       s.days, v.balance_method, v.min_balance_to_earn_cents, a.member_id, a.purpose
FROM savings_accruals s
JOIN savings_products p ON p.id = s.product_id
JOIN savings_product_versions v ON v.product_id = p.id AND v.version = p.current_version
JOIN accounts a ON a.id = s.account_id
WHERE s.product_id = ANY(:products) AND (s.accrued_cents > 0 OR s.days > 0)
ORDER BY s.account_id
FOR UPDATE OF s
"""
)
_RESET = text(
    "UPDATE savings_accruals SET accrued_cents = 0, balance_days_cents = 0, days = 0, "
    "period_start = :next WHERE account_id = ANY(:ids)"
)


def _post_ending(session: Session, deps: CoreDeps, day: date, result: AccrualResult) -> None:
    """Post every account whose product's period ends on ``day``."""
    ending = [
        product_id
        for product_id, frequency in session.execute(
            select(SavingsProduct.id, SavingsProductVersion.posting_frequency).join(
                SavingsProductVersion,
                (SavingsProductVersion.product_id == SavingsProduct.id)
                & (SavingsProductVersion.version == SavingsProduct.current_version),
            )
        ).tuples()
        if period_ends(day, PostingFrequency(frequency))
    ]
    if not ending:
        return
    tax_rate = withholding_rate(session, TaxKind.INTEREST, day)
    forfeited: dict[int, int] = {}
    done: list[int] = []
    for row in session.execute(_DUE, {"products": ending}).mappings():
        done.append(row["account_id"])
        gross = int(row["accrued_cents"])
        average = row["balance_days_cents"] // row["days"] if row["days"] else 0
        if (
            row["balance_method"] == BalanceMethod.AVERAGE_DAILY_BALANCE
            and average < row["min_balance_to_earn_cents"]
        ):
            forfeited[row["product_id"]] = forfeited.get(row["product_id"], 0) + gross
            continue
        if gross > 0:
            _post_account(session, deps, day, dict(row), gross, tax_rate, result)
    for product_id, cents in sorted(forfeited.items()):
        result.forfeited_cents += cents
        _book(
            session, deps, day, f"savings.forfeit:{day.isoformat()}:{product_id}", -cents,
            f"Interest forfeited {day.isoformat()}: average balance below the minimum",
        )  # fmt: skip
    if done:
        session.execute(_RESET, {"next": day + timedelta(days=1), "ids": done})


def _post_account(
    session: Session,
    deps: CoreDeps,
    day: date,
    r: Mapping[str, Any],
    gross: int,
    tax_rate: Decimal,
    result: AccrualResult,
) -> None:
    account_id = int(r["account_id"])
    tax = tax_cents(gross, tax_rate)
    net = gross - tax
    legs = [
        ledger.Leg(ledger.account_id_by_code(session, SystemAccount.INTEREST_PAYABLE), gross),
        ledger.Leg(account_id, -net),
    ]
    if tax:
        wht = ledger.account_id_by_code(session, SystemAccount.WITHHOLDING_TAX)
        legs.append(ledger.Leg(wht, -tax))
    key = f"savings.interest:{day.isoformat()}:{account_id}"
    posted = ledger.post_entry(
        session, kind=EntryKind.SAVINGS_INTEREST, legs=[leg for leg in legs if leg.amount_cents],
        idempotency_key=key, now=deps.now(), value_date=day,
        memo=f"Interest {r['period_start'].isoformat()} to {day.isoformat()}",
    )  # fmt: skip
    session.add(
        SavingsInterestPosting(
            account_id=account_id,
            product_id=r["product_id"],
            business_date=day,
            period_start=r["period_start"],
            gross_cents=gross,
            tax_cents=tax,
            net_cents=net,
            tax_rate_percent=tax_rate,
            entry_id=posted.entry_id,
            created_at=deps.now(),
        )  # fmt: skip
    )
    result.posted_accounts += 1
    result.posted_gross_cents += gross
    result.posted_tax_cents += tax
    member = session.get(Member, r["member_id"]) if r["member_id"] is not None else None
    if member is not None and posted.created:
        notify(
            session, template="savings_interest_posted", business_key=key, now=deps.now(),
            member=member,
            data={
                "sacco": deps.sacco_name, "account": Term(r["purpose"]),
                "date": day.strftime("%d/%m/%Y"), "amount": format_cents(gross),
                "tax": format_cents(tax), "net": format_cents(net),
                "balance": format_cents(ledger.get_balance(session, account_id).balance_cents),
            },
        )  # fmt: skip
