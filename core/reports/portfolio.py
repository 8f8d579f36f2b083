"""Portfolio quality at any date (issue 16, part 2): PAR, arrears ageing, classification
and provisions, disbursements and collections, top exposures, insider loans.

What "at D" means here, each from a record that has history:

* **outstanding**: the loan account's balance from the ledger, postings with value date on
  or before D (as the financial statements); a loan is in the book at D when it was
  disbursed on or before D and that balance is above zero (a loan repaid or written off
  has none).
* **days past due**: D minus the due date of the oldest instalment due *before* D that the
  repayments made by D (``loan_repayments.value_date``, principal + interest + fees, in
  instalment order) had not covered: close of day's rule (``core.loans.close_of_day``)
  replayed from the repayments, so any past date gives the same answer the book gave then.
* **category**: close of day's history (``loan_category_changes``: the latest change on or
  before D); a loan close of day never classified is ``unclassified``. The provision
  required is the outstanding at D times that category's percent in the band version the
  change used (``loan_risk_bands``); the ledger's provision (account 1300 at D) is shown
  beside it.
* **loan officer**: the staff member who asked for the loan's approval (the maker of its
  ``loan.approve`` request: the one who recommended it); a loan approved automatically
  has none and shows ``(automatic)``.

PAR N is the outstanding of loans more than N-1 days past due (PAR1: at least one day,
PAR30: more than 30 days, PAR90: more than 90) over the whole outstanding: thresholds
``PAR_DAYS``, buckets ``AGEING_BUCKETS`` (after the SASRA classification bands:
Regulation 39 of the SACCO Societies (Deposit-taking Sacco Business) Regulations, 2010,
and the CGAP/MIX definition of portfolio at risk; docs/reports/portfolio.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Date, and_, func, literal, select
from sqlalchemy.orm import Session

from core.ledger.chart import Purpose, SystemAccount
from core.reports.registry import Column, Kind, Param, Report, ReportParams, Section, report
from core.risk.classification import Band, provision_cents
from core.risk.vocabulary import LoanCategory
from db.models import Account, ApprovalRequest, JournalEntry, Member, Posting, StaffUser
from db.models_close_day import LoanCategoryChange, LoanRiskBand
from db.models_loans import (
    Loan,
    LoanApplication,
    LoanInstalment,
    LoanProduct,
    LoanProductVersion,
    LoanRepayment,
)

# (label, minimum days past due): PAR1 >= 1 day, PAR30 > 30 days, PAR90 > 90 days.
PAR_DAYS: tuple[tuple[str, int], ...] = (("PAR1", 1), ("PAR30", 31), ("PAR90", 91))
# (label, first day, last day or None): the SASRA bands' day limits.
AGEING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("current", 0, 0),
    ("1-30", 1, 30),
    ("31-90", 31, 90),
    ("91-180", 91, 180),
    ("181-360", 181, 360),
    ("over 360", 361, None),
)
AUTOMATIC = "(automatic)"
UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class LoanAt:
    loan_id: int
    reference: str
    member_number: str
    member_name: str
    branch: str
    insider: str | None
    product: str
    officer: str
    outstanding_cents: int
    days_past_due: int
    category: str
    provision_required_cents: int


# ----------------------------------------------------------------------------- pure


def par(loans: Iterable[LoanAt], key: str) -> list[tuple[object, ...]]:
    """Per group (``key``: product, branch or officer) and a total: loans, outstanding, and
    for each PAR threshold the amount at risk and its percent of the outstanding."""
    groups: dict[str, list[LoanAt]] = defaultdict(list)
    everything: list[LoanAt] = []
    for loan in loans:
        groups[str(getattr(loan, key))].append(loan)
        everything.append(loan)
    rows = []
    for name, members in [*sorted(groups.items()), ("Total", everything)]:
        total = sum(x.outstanding_cents for x in members)
        row: list[object] = [name, len(members), total]
        for _, days in PAR_DAYS:
            at_risk = sum(x.outstanding_cents for x in members if x.days_past_due >= days)
            row += [at_risk, percent(at_risk, total)]
        rows.append(tuple(row))
    return rows


def percent(part: int, whole: int) -> Decimal:
    """``part`` of ``whole`` in percent, 2 places half up (0 when the whole is 0)."""
    if whole == 0:
        return Decimal("0.00")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def bucket_of(days: int) -> str:
    for label, first, last in AGEING_BUCKETS:
        if days >= first and (last is None or days <= last):
            return label
    raise ValueError(f"days past due {days} in no bucket")


def ageing(loans: Iterable[LoanAt]) -> list[tuple[object, ...]]:
    counts = {label: [0, 0] for label, _, _ in AGEING_BUCKETS}
    for loan in loans:
        c = counts[bucket_of(loan.days_past_due)]
        c[0] += 1
        c[1] += loan.outstanding_cents
    total = sum(c[1] for c in counts.values())
    rows: list[tuple[object, ...]] = [
        (label, n, cents, percent(cents, total)) for label, (n, cents) in counts.items()
    ]
    rows.append(("Total", sum(c[0] for c in counts.values()), total, percent(total, total)))
    return rows


# ----------------------------------------------------------------------------- reads


def _balances_at(as_of: date):  # type: ignore[no-untyped-def]
    """Loan accounts' debit-positive balances at ``as_of`` (a subquery)."""
    return (
        select(Posting.account_id, func.sum(Posting.amount_cents).label("balance"))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .where(Account.purpose == Purpose.LOAN, JournalEntry.value_date <= literal(as_of, Date))
        .group_by(Posting.account_id)
        .subquery()
    )


def days_past_due(session: Session, as_of: date) -> dict[int, int]:
    """Loan id -> days past due at ``as_of`` (loans not past due are absent)."""
    paid = (
        select(
            LoanRepayment.loan_id,
            func.sum(
                LoanRepayment.principal_cents
                + LoanRepayment.interest_cents
                + LoanRepayment.fee_cents
            ).label("paid"),
        )
        .where(LoanRepayment.value_date <= literal(as_of, Date))
        .group_by(LoanRepayment.loan_id)
        .subquery()
    )
    due = (
        LoanInstalment.principal_cents
        + LoanInstalment.interest_cents
        + LoanInstalment.fee_cents
        - LoanInstalment.waived_interest_cents
    )
    inst = (
        select(
            LoanInstalment.loan_id,
            LoanInstalment.due_on,
            func.sum(due)
            .over(partition_by=LoanInstalment.loan_id, order_by=LoanInstalment.number)
            .label("cum"),
        )
        .where(LoanInstalment.due_on < literal(as_of, Date))
        .subquery()
    )
    query = (
        select(inst.c.loan_id, func.min(inst.c.due_on))
        .outerjoin(paid, paid.c.loan_id == inst.c.loan_id)
        .where(inst.c.cum > func.coalesce(paid.c.paid, 0))
        .group_by(inst.c.loan_id)
    )
    out = {}
    for loan_id, first_due in session.execute(query).all():
        first = first_due if isinstance(first_due, date) else date.fromisoformat(str(first_due))
        out[int(loan_id)] = (as_of - first).days
    return out


def categories_at(session: Session, as_of: date) -> dict[int, tuple[str, int]]:
    """Loan id -> (category, band version) from close of day's history at ``as_of``."""
    latest = (
        select(
            LoanCategoryChange.loan_id,
            func.max(LoanCategoryChange.business_date).label("day"),
        )
        .where(LoanCategoryChange.business_date <= literal(as_of, Date))
        .group_by(LoanCategoryChange.loan_id)
        .subquery()
    )
    query = select(
        LoanCategoryChange.loan_id, LoanCategoryChange.category_to, LoanCategoryChange.band_version
    ).join(
        latest,
        and_(
            latest.c.loan_id == LoanCategoryChange.loan_id,
            latest.c.day == LoanCategoryChange.business_date,
        ),
    )
    return {int(i): (c, int(v)) for i, c, v in session.execute(query).all()}


def bands(session: Session) -> dict[tuple[int, str], Band]:
    return {
        (b.version, b.category): Band(
            LoanCategory(b.category), b.rank, b.min_days, b.min_missed, b.provision_percent
        )
        for b in session.scalars(select(LoanRiskBand))
    }


def loans_at(session: Session, as_of: date) -> list[LoanAt]:
    """Every loan in the book at ``as_of`` with its figures at that date."""
    bal = _balances_at(as_of)
    query = (
        select(
            Loan.id,
            Loan.reference,
            Member.member_number,
            Member.full_name,
            Member.branch,
            Member.insider,
            LoanProduct.code,
            StaffUser.username,
            bal.c.balance,
        )
        .join(bal, bal.c.account_id == Loan.account_id)
        .join(Member, Member.id == Loan.member_id)
        .join(LoanProductVersion, LoanProductVersion.id == Loan.product_version_id)
        .join(LoanProduct, LoanProduct.id == LoanProductVersion.product_id)
        .join(LoanApplication, LoanApplication.id == Loan.application_id)
        .outerjoin(ApprovalRequest, ApprovalRequest.id == LoanApplication.approval_id)
        .outerjoin(StaffUser, StaffUser.id == ApprovalRequest.maker_id)
        .where(Loan.disbursed_on <= literal(as_of, Date), bal.c.balance > 0)
        .order_by(Loan.id)
    )
    dpd = days_past_due(session, as_of)
    cats = categories_at(session, as_of)
    band_table = bands(session)
    out = []
    for loan_id, ref, number, name, branch, insider, product, officer, balance in session.execute(
        query
    ).all():
        outstanding = int(balance)
        category, version = cats.get(loan_id, (UNCLASSIFIED, 0))
        band = band_table.get((version, category))
        out.append(
            LoanAt(
                loan_id=loan_id,
                reference=ref,
                member_number=number or "",
                member_name=name,
                branch=branch or "head office",
                insider=insider,
                product=product,
                officer=officer or AUTOMATIC,
                outstanding_cents=outstanding,
                days_past_due=dpd.get(loan_id, 0),
                category=category,
                provision_required_cents=provision_cents(outstanding, band) if band else 0,
            )
        )
    return out


def ledger_provision_at(session: Session, as_of: date) -> int:
    """The loan-loss provision account's credit balance at ``as_of``."""
    total = session.scalar(
        select(func.coalesce(func.sum(Posting.amount_cents), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .where(
            Account.code == SystemAccount.LOAN_LOSS_PROVISION.value,
            JournalEntry.value_date <= literal(as_of, Date),
        )
    )
    return -int(total or 0)


# ----------------------------------------------------------------------------- reports

_PAR_COLUMNS = tuple(
    c
    for label, _ in PAR_DAYS
    for c in (Column(f"{label} amount", Kind.CENTS), Column(f"{label} %", Kind.PERCENT))
)


def _as_of(params: ReportParams) -> date:
    assert params.as_of is not None
    return params.as_of


@report(
    "portfolio_at_risk",
    "Portfolio at risk",
    "PAR 1, 30 and 90 at the date, by product, by branch and by loan officer.",
    {Param.AS_OF},
)
def portfolio_at_risk(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    loans = loans_at(session, as_of)
    sections = tuple(
        Section(
            f"By {title}",
            (
                Column(title),
                Column("loans", Kind.INT),
                Column("outstanding", Kind.CENTS),
                *_PAR_COLUMNS,
            ),
            tuple(par(loans, key)),
        )
        for key, title in (
            ("product", "product"),
            ("branch", "branch"),
            ("officer", "loan officer"),
        )
    )
    totals = {s.rows[-1][2] for s in sections}
    return Report(
        "portfolio_at_risk",
        f"Portfolio at risk at {as_of}",
        sections,
        checks=(("the three views add up to the same outstanding", len(totals) == 1),),
    )


@report(
    "arrears_ageing",
    "Arrears ageing",
    "Loans and outstanding by days past due at the date, in the SASRA bands' day limits.",
    {Param.AS_OF},
)
def arrears_ageing(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    rows = ageing(loans_at(session, as_of))
    return Report(
        "arrears_ageing",
        f"Arrears ageing at {as_of}",
        (
            Section(
                "Days past due",
                (
                    Column("bucket"),
                    Column("loans", Kind.INT),
                    Column("outstanding", Kind.CENTS),
                    Column("share %", Kind.PERCENT),
                ),
                tuple(rows),
            ),
        ),
    )


@report(
    "loan_classification",
    "Loan classification and provisions",
    "Outstanding by SASRA category at the date (close of day's history), the provision "
    "those categories require and the provision the ledger holds.",
    {Param.AS_OF},
)
def loan_classification(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    loans = loans_at(session, as_of)
    order = [c.value for c in LoanCategory] + [UNCLASSIFIED]
    agg = {c: [0, 0, 0] for c in order}
    for loan in loans:
        a = agg[loan.category]
        a[0] += 1
        a[1] += loan.outstanding_cents
        a[2] += loan.provision_required_cents
    total = [sum(a[i] for a in agg.values()) for i in range(3)]
    rows: list[tuple[object, ...]] = [(c, *agg[c]) for c in order]
    rows.append(("Total", *total))
    held = ledger_provision_at(session, as_of)
    rows.append(("Provision in the ledger (account 1300)", None, None, held))
    rows.append(("Difference (ledger - required)", None, None, held - total[2]))
    return Report(
        "loan_classification",
        f"Loan classification and provisions at {as_of}",
        (
            Section(
                "Categories",
                (
                    Column("category"),
                    Column("loans", Kind.INT),
                    Column("outstanding", Kind.CENTS),
                    Column("provision required", Kind.CENTS),
                ),
                tuple(rows),
                ("Categories as close of day last set them on or before the date.",),
            ),
        ),
    )


@report(
    "loan_flows",
    "Disbursements and collections",
    "Loans disbursed and repayments collected in a period, by product.",
    {Param.PERIOD},
)
def loan_flows(session: Session, params: ReportParams) -> Report:
    assert params.date_from and params.date_to
    start, end = literal(params.date_from, Date), literal(params.date_to, Date)
    product = (
        select(LoanProductVersion.id.label("vid"), LoanProduct.code.label("code"))
        .join(LoanProduct, LoanProduct.id == LoanProductVersion.product_id)
        .subquery()
    )
    disbursed = session.execute(
        select(
            product.c.code,
            func.count(Loan.id),
            func.sum(Loan.principal_cents),
            func.sum(Loan.deducted_fee_cents),
        )
        .join(product, product.c.vid == Loan.product_version_id)
        .where(Loan.disbursed_on >= start, Loan.disbursed_on <= end)
        .group_by(product.c.code)
        .order_by(product.c.code)
    ).all()
    collected = session.execute(
        select(
            product.c.code,
            func.count(LoanRepayment.id),
            func.sum(LoanRepayment.principal_cents),
            func.sum(LoanRepayment.interest_cents),
            func.sum(LoanRepayment.fee_cents),
            func.sum(LoanRepayment.penalty_cents),
        )
        .join(Loan, Loan.id == LoanRepayment.loan_id)
        .join(product, product.c.vid == Loan.product_version_id)
        .where(LoanRepayment.value_date >= start, LoanRepayment.value_date <= end)
        .group_by(product.c.code)
        .order_by(product.c.code)
    ).all()
    d_rows = _with_total([(c, int(n), int(p), int(f)) for c, n, p, f in disbursed])
    c_rows = _with_total(
        [
            (c, int(n), int(p), int(i), int(f), int(pen), int(p) + int(i) + int(f) + int(pen))
            for c, n, p, i, f, pen in collected
        ]
    )
    return Report(
        "loan_flows",
        f"Disbursements and collections {params.date_from} to {params.date_to}",
        (
            Section(
                "Disbursements",
                (
                    Column("product"),
                    Column("loans", Kind.INT),
                    Column("principal", Kind.CENTS),
                    Column("fees deducted", Kind.CENTS),
                ),
                tuple(d_rows),
            ),
            Section(
                "Collections",
                (
                    Column("product"),
                    Column("repayments", Kind.INT),
                    Column("principal", Kind.CENTS),
                    Column("interest", Kind.CENTS),
                    Column("fees", Kind.CENTS),
                    Column("penalties", Kind.CENTS),
                    Column("total", Kind.CENTS),
                ),
                tuple(c_rows),
            ),
        ),
    )


def _with_total(rows: Sequence[tuple[object, ...]]) -> list[tuple[object, ...]]:
    width = len(rows[0]) if rows else 0
    if not rows:
        return []
    total = ["Total", *(sum(int(r[i]) for r in rows) for i in range(1, width))]  # type: ignore[call-overload]
    return [*rows, tuple(total)]


@report(
    "top_exposures",
    "Top exposures",
    "The members who owe the most at the date (all their loans), with their share of the book.",
    {Param.AS_OF, Param.LIMIT},
)
def top_exposures(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    loans = loans_at(session, as_of)
    per: dict[str, list[LoanAt]] = defaultdict(list)
    for loan in loans:
        per[loan.member_number].append(loan)
    book = sum(x.outstanding_cents for x in loans)
    ranked = sorted(per.items(), key=lambda kv: (-sum(x.outstanding_cents for x in kv[1]), kv[0]))
    rows = []
    for number, mine in ranked[: params.limit]:
        owed = sum(x.outstanding_cents for x in mine)
        worst = max(mine, key=lambda x: x.days_past_due)
        rows.append(
            (
                number,
                mine[0].member_name,
                mine[0].branch,
                mine[0].insider or "",
                len(mine),
                owed,
                percent(owed, book),
                worst.days_past_due,
            )
        )
    return Report(
        "top_exposures",
        f"Top {params.limit} exposures at {as_of}",
        (
            Section(
                "Borrowers",
                (
                    Column("member"),
                    Column("name"),
                    Column("branch"),
                    Column("insider"),
                    Column("loans", Kind.INT),
                    Column("outstanding", Kind.CENTS),
                    Column("share of book %", Kind.PERCENT),
                    Column("worst days past due", Kind.INT),
                ),
                tuple(rows),
            ),
        ),
        meta={"book_outstanding_cents": book},
    )


@report(
    "insider_loans",
    "Insider loans",
    "Loans to members flagged as staff or board members, at the date.",
    {Param.AS_OF},
)
def insider_loans(session: Session, params: ReportParams) -> Report:
    as_of = _as_of(params)
    loans = [x for x in loans_at(session, as_of) if x.insider]
    rows: list[tuple[object, ...]] = [
        (
            x.member_number,
            x.member_name,
            x.insider,
            x.reference,
            x.product,
            x.outstanding_cents,
            x.days_past_due,
            x.category,
        )
        for x in sorted(loans, key=lambda x: (x.insider or "", x.member_number, x.reference))
    ]
    total = sum(x.outstanding_cents for x in loans)
    rows.append(("Total", "", "", "", "", total, None, ""))
    return Report(
        "insider_loans",
        f"Insider loans at {as_of}",
        (
            Section(
                "Loans",
                (
                    Column("member"),
                    Column("name"),
                    Column("insider"),
                    Column("loan"),
                    Column("product"),
                    Column("outstanding", Kind.CENTS),
                    Column("days past due", Kind.INT),
                    Column("category"),
                ),
                tuple(rows),
            ),
        ),
    )
