"""Portfolio quality at any date (issue 16, part 2): three loans disbursed on the same day,
one paid on time, one never paid, one paid once; figures checked by hand from their
schedules."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import reports
from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from core.staff import accounts as staff_core
from db.models import ApprovalRequest, Member
from db.models_close_day import LoanCategoryChange
from db.models_loans import Loan, LoanApplication, LoanInstalment
from tests.loanutil import disbursed_loan, pay
from tests.recoveryutil import on

START = date(2026, 1, 5)


def build(session: Session, name: str, **raw: object) -> reports.Report:
    spec = reports.get(name)
    params = reports.parse_params(spec, raw, today=date(2026, 12, 31))
    return reports.run(session, spec, params, source={"database": "primary", "lag_seconds": None})


def instalments(session: Session, loan: Loan) -> list[LoanInstalment]:
    return list(
        session.scalars(
            select(LoanInstalment)
            .where(LoanInstalment.loan_id == loan.id)
            .order_by(LoanInstalment.number)
        )
    )


def due(i: LoanInstalment) -> int:
    return i.principal_cents + i.interest_cents + i.fee_cents


def seed(s: Session, deps: CoreDeps) -> dict[str, tuple[Loan, Member, list[LoanInstalment]]]:
    then = on(deps, START)
    out = {}
    for name in ("ontime", "never", "once"):
        loan, member, _ = disbursed_loan(s, then, amount_cents=10_000_000, term=12)
        out[name] = (loan, member, instalments(s, loan))
    ontime, never, once = out["ontime"], out["never"], out["once"]
    for n in range(3):
        inst = ontime[2][n]
        pay(s, on(deps, inst.due_on), ontime[0], due(inst), f"ontime-pay-{n}")
    first = once[2][0]
    pay(s, on(deps, first.due_on), once[0], due(first), "once-pay-0")
    never[1].branch = "Nakuru"
    # The "never paid" loan was recommended by a loan officer (the maker of loan.approve).
    officer = staff_core.create_staff(
        s, deps, SYSTEM, username="officer.wanjiku", full_name="Wanjiku Officer",
        role="loan_officer", password="correct horse battery staple", branch=None,
    )  # fmt: skip
    request = ApprovalRequest(
        action="loan.approve", payload="{}", checker_permission="approvals:decide",
        status="approved", maker_id=officer.id, created_at=deps.now(),
    )  # fmt: skip
    s.add(request)
    s.flush()
    s.get(LoanApplication, never[0].application_id).approval_id = request.id  # type: ignore[union-attr]
    once[1].insider = "board"
    s.add(
        LoanCategoryChange(
            loan_id=never[0].id, business_date=date(2026, 3, 8), category_from="watch",
            category_to="substandard", days_past_due=31, missed_instalments=2,
            exposure_cents=10_000_000, band_version=1,
        )
    )  # fmt: skip
    s.flush()
    return out


def principal_paid(insts: list[LoanInstalment], n: int) -> int:
    return sum(i.principal_cents for i in insts[:n])


def test_par_by_product_branch_and_officer_at_two_dates(
    db_session: Session, deps: CoreDeps
) -> None:
    loans = seed(db_session, deps)
    ontime, never, once = loans["ontime"], loans["never"], loans["once"]
    assert [i.due_on for i in never[2][:3]] == [
        date(2026, 2, 5),
        date(2026, 3, 5),
        date(2026, 4, 5),
    ]
    a = 10_000_000 - principal_paid(ontime[2], 3)
    b = 10_000_000
    c = 10_000_000 - principal_paid(once[2], 1)
    par = build(db_session, "portfolio_at_risk", as_of="2026-04-10")
    by_branch = {r[0]: r[1:] for r in par.sections[1].rows}
    # never paid: 64 days past due; paid once: 36 days; on time: 0
    assert by_branch["Total"][:2] == (3, a + b + c)
    assert by_branch["Total"][2] == b + c  # PAR1
    assert by_branch["Total"][4] == b + c  # PAR30
    assert by_branch["Total"][6] == 0  # PAR90
    assert by_branch["Nakuru"] == (
        1,
        b,
        b,
        reports_percent(b, b),
        b,
        reports_percent(b, b),
        0,
        reports_percent(0, b),
    )
    assert by_branch["head office"][1] == a + c
    by_officer = {r[0]: r[1:] for r in par.sections[2].rows}
    assert by_officer["(automatic)"][:2] == (2, a + c)
    assert by_officer["officer.wanjiku"][:3] == (1, b, b)
    assert par.checks == (("the three views add up to the same outstanding", True),)
    later = build(db_session, "portfolio_at_risk", as_of="2026-05-10")
    total = {r[0]: r[1:] for r in later.sections[0].rows}["Total"]
    assert total[6] == b  # never paid: 94 days, now in PAR90
    before = build(db_session, "portfolio_at_risk", as_of="2026-02-05")
    assert {r[0]: r[1:] for r in before.sections[0].rows}["Total"][2] == 0  # due today is not late


def reports_percent(part: int, whole: int) -> object:
    from core.reports.portfolio import percent

    return percent(part, whole)


def test_ageing_classification_flows_top_and_insiders(db_session: Session, deps: CoreDeps) -> None:
    loans = seed(db_session, deps)
    ontime, never, once = loans["ontime"], loans["never"], loans["once"]
    a = 10_000_000 - principal_paid(ontime[2], 3)
    c = 10_000_000 - principal_paid(once[2], 1)
    ageing = {
        r[0]: r[1:3]
        for r in build(db_session, "arrears_ageing", as_of="2026-04-10").sections[0].rows
    }
    assert ageing["current"] == (1, a)
    assert ageing["31-90"] == (2, 10_000_000 + c)
    assert ageing["1-30"] == (0, 0)

    cls = {
        r[0]: r[1:]
        for r in build(db_session, "loan_classification", as_of="2026-04-10").sections[0].rows
    }
    assert cls["substandard"] == (1, 10_000_000, 2_500_000)  # 25 % of the exposure
    assert cls["unclassified"] == (2, a + c, 0)
    early = {
        r[0]: r[1:]
        for r in build(db_session, "loan_classification", as_of="2026-03-07").sections[0].rows
    }
    assert early["substandard"] == (0, 0, 0)  # the change came on 8 March

    flows = build(db_session, "loan_flows", **{"from": "2026-01-01", "to": "2026-04-30"})
    assert {r[0]: r[1:] for r in flows.sections[0].rows}["Total"][:2] == (3, 30_000_000)
    collected = {r[0]: r[1:] for r in flows.sections[1].rows}["Total"]
    assert collected[0] == 4
    assert collected[-1] == sum(due(i) for i in ontime[2][:3]) + due(once[2][0])

    top = build(db_session, "top_exposures", as_of="2026-04-10", limit="2")
    assert [(r[0], r[5]) for r in top.sections[0].rows] == [
        (never[1].member_number, 10_000_000),
        (once[1].member_number, c),
    ]
    insiders = build(db_session, "insider_loans", as_of="2026-04-10").sections[0].rows
    assert [(r[0], r[2], r[3], r[5], r[6]) for r in insiders[:-1]] == [
        (once[1].member_number, "board", once[0].reference, c, 36)
    ]
    assert insiders[-1][5] == c
