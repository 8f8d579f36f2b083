"""Employer check-off on real PostgreSQL (core.checkoff): a 5,000-line remittance with
matches, unmatched lines and a shortfall posted as one receipt and allocated in one run
through the one repayment and credit paths; the same file twice is once; a file whose
total is not the bank amount, or with a bad line, is refused naming the line; what was
allocated plus what stayed in clearing is the file's total; verify-ledger green."""

from __future__ import annotations

import dataclasses
import threading
import time as clock
from datetime import UTC, date, datetime, time
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.checkoff import files, plans
from core.checkoff import service as co
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.kernel.permissions import Principal, permissions_for_role
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.ledger.verify import verify_ledger
from core.members.registration import member_account_ids
from db.models import Member, StaffUser
from db.models_checkoff import CheckoffLine, CheckoffScheduleLine
from db.models_loans import LoanRepayment
from db.session import make_session_factory, unit_of_work
from tests.loanutil import disbursed_loan
from tests.ussdutil import make_member

KES = 100
PERIOD = "2026-01"


def on(deps: CoreDeps, day: date) -> CoreDeps:
    moment = datetime.combine(day, time(9), tzinfo=UTC)
    return dataclasses.replace(deps, now=lambda: moment)


def staff(s: Session, role: str) -> Principal:
    name = f"{role}.{uuid4().hex[:6]}"
    user = StaffUser(username=name, full_name=name.title(), role=role, password_hash="x")
    s.add(user)
    s.flush()
    return Principal("staff", user.id, name, role, None, permissions_for_role(role))


def system(s: Session, code: SystemAccount) -> int:
    return ledger.get_balance(s, ledger.account_id_by_code(s, code)).balance_cents


def balance(s: Session, member_id: int, purpose: str) -> int:
    return ledger.get_balance(s, member_account_ids(s, member_id)[purpose]).balance_cents


def employer(s: Session, deps: CoreDeps, actor: Principal) -> int:
    e = co.create_employer(s, deps, actor, {
        "code": f"E{uuid4().hex[:6].upper()}", "name": "Kaunti ya Nyeri", "bank_account":
        "01100223344", "contact_email": "payroll@nyeri.example", "pay_day": 25})  # fmt: skip
    return e.id


_ids = iter(range(40_000_000, 49_999_999))


def members(s: Session, deps: CoreDeps, n: int) -> list[Member]:
    out = []
    for i in range(n):
        nid = next(_ids)
        out.append(make_member(s, deps, msisdn=f"+2547{nid % 10**8:08d}", national_id=str(nid),
                               name="Wanjiku Njeri", pin=None))  # fmt: skip
        del i
    return out


def csv_file(rows: list[tuple[str, str, str, int]]) -> bytes:
    """A payroll export: BOM, header in odd case, thousands separators."""
    out = ["\ufeffPayroll Number,National-ID,NAME,Amount"]
    for payroll, nid, name, cents in rows:
        amount = f"{cents // 100:,}.{cents % 100:02d}"
        out.append(f'{payroll},{nid},{name},"{amount}"')
    return "\r\n".join(out).encode()


def upload(
    s: Session, deps: CoreDeps, clerk: Principal, eid: int, data: bytes, total: int
) -> co.Uploaded:
    return co.upload_remittance(
        s, deps, clerk, employer_id=eid, period=PERIOD, data=data, filename="jan.csv",
        bank_reference="FT26032XYZ", bank_amount_cents=total, received_on=date(2026, 1, 30),
        large_threshold_cents=10**12,
    )  # fmt: skip


def approve(s: Session, deps: CoreDeps, manager: Principal, approval_id: int) -> None:
    approvals.decide(s, deps, manager, approval_id, approve=True)


def test_a_5000_line_file_posts_once_in_one_run(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    day = on(deps, date(2026, 1, 31))
    clerk, manager = staff(s, "teller"), staff(s, "manager")
    eid = employer(s, day, manager)
    loan, borrower, _ = disbursed_loan(s, on(deps, date(2025, 12, 20)), amount_cents=120_000 * KES)
    matched = members(s, day, 400)
    every = [borrower, *matched]
    for i, m in enumerate(every):
        co.link_member(s, day, manager, eid, m.id, f"P{i:05d}")
    co.set_instructions(
        s,
        day,
        manager,
        borrower.id,
        [
            {"target": "loan", "loan_id": loan.id},
            {"target": "deposits", "amount_cents": 1_000 * KES},
        ],
    )
    for m in matched:
        co.set_instructions(s, day, manager, m.id, [
            {"target": "shares", "amount_cents": 200 * KES},
            {"target": "deposits", "amount_cents": 1_500 * KES}])  # fmt: skip
    schedule = co.generate_schedule(s, day, eid, PERIOD)
    instalment = int(s.scalar(select(func.sum(CheckoffScheduleLine.amount_cents)).where(
        CheckoffScheduleLine.member_id == borrower.id,
        CheckoffScheduleLine.target == "loan")) or 0)  # fmt: skip
    assert instalment and instalment > 0
    assert schedule.total_cents == instalment + 1_000 * KES + 400 * 1_700 * KES
    assert schedule.due_on == date(2026, 2, 1)  # the 25th + 7 days
    # The file: the borrower in full by national ID (no payroll number), 399 members in
    # full by payroll number, one member short by KES 700, 4,599 lines nobody knows.
    rows = [("", borrower_nid(s, borrower), "Borrower", instalment + 1_000 * KES)]
    rows += [(f"P{i + 1:05d}", "", "Member", 1_700 * KES) for i in range(399)]
    rows += [("P00400", "", "Short", 1_000 * KES)]
    rows += [(f"X{i:05d}", "", "Stranger", 1_234_56) for i in range(4_599)]
    assert len(rows) == 5_000
    data = csv_file(rows)
    total = sum(r[3] for r in rows)
    bank0, clearing0 = system(s, SystemAccount.BANK), system(s, SystemAccount.CHECKOFF_CLEARING)
    started = clock.perf_counter()
    up = upload(s, day, clerk, eid, data, total)
    assert up.created and up.remittance.status == "pending_approval"
    assert up.remittance.approval_id is not None
    approve(s, day, manager, up.remittance.approval_id)
    elapsed = clock.perf_counter() - started
    print(
        f"check-off: 5,000 lines uploaded, matched and posted in {elapsed:.1f} s"
    )  # speed: no assert
    r = co.get_remittance(s, up.remittance.id)
    assert r.status == "posted"
    unmatched = 4_599 * 1_234_56
    assert (r.matched_cents, r.unmatched_cents) == (total - unmatched, unmatched)
    assert system(s, SystemAccount.BANK) - bank0 == total
    assert system(s, SystemAccount.CHECKOFF_CLEARING) - clearing0 == unmatched  # stays, visibly
    assert balance(s, matched[0].id, "shares") == 200 * KES
    assert balance(s, matched[0].id, "deposits") == 1_500 * KES
    short = matched[-1]  # shares first by order (deposits before shares): deposits take it all
    assert balance(s, short.id, "deposits") == 1_000 * KES
    assert balance(s, short.id, "shares") == 0
    repaid = s.scalars(
        select(LoanRepayment).where(
            LoanRepayment.loan_id == loan.id, LoanRepayment.source == "checkoff"
        )
    ).all()
    assert [x.amount_cents for x in repaid] == [instalment]
    report = co.remittance_report(s, r.id)
    assert len(report["unmatched"]) == 4_599 and report["unmatched_cents"] == unmatched
    assert [(x["payroll_number"], x["shortfall_cents"]) for x in report["shortfalls"]] == [
        ("P00400", 700 * KES)
    ]
    assert b"shortfall,,P00400" in co.report_csv(report)
    # The same file again is the same upload: nothing more posted.
    again = upload(s, day, clerk, eid, data, total)
    assert not again.created and again.remittance.id == r.id
    assert system(s, SystemAccount.BANK) - bank0 == total
    assert verify_ledger(s).ok


def borrower_nid(s: Session, m: Member) -> str:
    """funded_member registers national ID 30,000,000 + n, n its phone number's counter."""
    return str(30_000_000 + int(m.msisdn[-8:]))


def test_a_file_whose_total_is_not_the_bank_amount_is_refused(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    clerk, manager = staff(s, "teller"), staff(s, "manager")
    eid = employer(s, deps, manager)
    data = csv_file([("P1", "", "A", 100 * KES), ("P2", "", "B", 50 * KES)])
    with pytest.raises(InvalidInput) as err:
        upload(s, on(deps, date(2026, 2, 2)), clerk, eid, data, 149 * KES)
    assert err.value.reason == "total_mismatch"
    assert s.scalar(select(func.count()).select_from(CheckoffLine)) == 0


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("payroll_number,amount\nP1,100\nP2,-5\n", 3),
        ("payroll_number,amount\nP1,100\nP2,1.234\n", 3),
        ("payroll_number,amount\nP1,100\n,100\n", 3),
        ("payroll_number,amount\nP1,100\nP1,100\n", 3),
        ("payroll_number,national_id,amount\nP1,12ab,100\n", 2),
        ("payroll,sum\nP1,100\n", 1),
    ],
)
def test_a_bad_line_is_refused_naming_it(text: str, line: int) -> None:
    with pytest.raises(files.FileRefused) as err:
        files.read_remittance(text.encode())
    assert err.value.line == line and f"line {line}" in err.value.detail


def test_an_xlsx_file_reads_as_its_csv() -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["PAYROLL NUMBER", "Amount"])
    sheet.append(["P7", 1234.5])
    sheet.append(["P8", "2,000.00"])
    import io

    out = io.BytesIO()
    book.save(out)
    got = files.read_remittance(out.getvalue(), "jan.xlsx")
    assert [(x.payroll_number, x.amount_cents) for x in got] == [("P7", 123_450), ("P8", 200_000)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=1, max_value=10**9), max_size=6),
    st.integers(min_value=0, max_value=10**10),
)
def test_the_parts_of_a_line_sum_to_the_line(expected: list[int], received: int) -> None:
    parts = [
        plans.Part(t, c)
        for t, c in zip(
            ("loan", "deposits", "shares", "savings", "savings", "savings"), expected, strict=False
        )
    ]
    paid = plans.allocate(parts, received)
    assert sum(p.cents for p in paid) == received
    assert all(p.cents > 0 for p in paid)
    assert plans.shortfall_cents(parts, received) == max(0, sum(expected) - received)


def test_two_requests_for_one_parked_line_approved_at_once_move_it_once(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    """Two clerks ask to move the same unmatched line to two members; two managers approve
    at once (real threads): the line leaves clearing once, one request fails."""
    factory = make_session_factory(committed_pg)
    day = on(deps, date(2026, 1, 31))
    with unit_of_work(factory) as s:
        clerk, manager = staff(s, "teller"), staff(s, "manager")
        managers = [staff(s, "manager") for _ in range(2)]
        eid = employer(s, day, manager)
        first, second = members(s, day, 2)
        uploaded = upload(s, day, clerk, eid, csv_file([("X-1", "", "Unknown", 700 * KES)]),
                          700 * KES)  # fmt: skip
        approve(s, day, manager, uploaded.remittance.approval_id or 0)
        remittance_id = uploaded.remittance.id
        asks = [
            approvals.request_approval(
                s, day, staff(s, "teller"), co.REASSIGN_ACTION, member_id=m.id,
                payload={"remittance_id": remittance_id, "line_no": 2, "target": "savings"},
                note="it is theirs", large_threshold_cents=10**12,
            ).id
            for m in (first, second)
        ]  # fmt: skip
        clearing = system(s, SystemAccount.CHECKOFF_CLEARING)
        s.commit()
    assert clearing >= 700 * KES
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(checker: Principal, request_id: int) -> None:
        barrier.wait()
        with unit_of_work(factory) as s:
            req = approvals.decide(s, day, checker, request_id, approve=True)
            s.commit()
            outcomes.append(req.status)

    threads = [
        threading.Thread(target=decide, args=pair) for pair in zip(managers, asks, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["approved", "failed"]
    with unit_of_work(factory) as s:
        assert system(s, SystemAccount.CHECKOFF_CLEARING) == clearing - 700 * KES
        got = [balance(s, m.id, "savings") for m in (first, second)]
        assert sorted(got) == [0, 700 * KES]
        line = s.scalars(select(CheckoffLine).where(
            CheckoffLine.remittance_id == remittance_id)).one()  # fmt: skip
        assert line.member_id == (first, second)[got.index(700 * KES)].id
        r = co.get_remittance(s, remittance_id)
        assert (r.matched_cents, r.unmatched_cents) == (700 * KES, 0)
        assert co.remittance_report(s, remittance_id)["unmatched"] == []
        assert verify_ledger(s).ok
