"""Employer check-off over the staff API: employers, payroll numbers and standing
instructions; the expected deductions and their CSV/XLSX export; a remittance file
uploaded (bad line named, wrong total refused, the same file once), approved by another
person and posted; its report (unmatched, shortfall) as JSON and CSV; an unmatched line
moved out of clearing to a member by maker-checker; late remittances aged."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.ledger import entries as ledger
from core.ledger.chart import SystemAccount
from core.members.registration import member_account_ids
from db.models import Member
from db.models_loans import Loan, LoanInstalment
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.loanutil import disbursed_loan

URL = "/api/v1/checkoff"
KES = 100


def _balance(session_factory: sessionmaker[Session], member_id: int, purpose: str) -> int:
    with unit_of_work(session_factory) as s:
        account = member_account_ids(s, member_id)[purpose]
        return ledger.get_balance(s, account).balance_cents


def _clearing(session_factory: sessionmaker[Session]) -> int:
    with unit_of_work(session_factory) as s:
        account = ledger.account_id_by_code(s, SystemAccount.CHECKOFF_CLEARING)
        return ledger.get_balance(s, account).balance_cents


def _loan(session_factory: sessionmaker[Session], deps: CoreDeps) -> tuple[Loan, Member, str]:
    """A disbursed loan and the month (YYYY-MM) its first instalment falls due."""
    with unit_of_work(session_factory) as s:
        loan, borrower, _ = disbursed_loan(s, deps, amount_cents=60_000 * KES, term=6)
        first = s.scalar(
            select(LoanInstalment.due_on).where(LoanInstalment.loan_id == loan.id)
            .order_by(LoanInstalment.due_on).limit(1)
        )  # fmt: skip
        s.commit()
    assert first is not None
    return loan, borrower, first.strftime("%Y-%m")


def _file(rows: list[tuple[str, str, str]]) -> bytes:
    return ("Payroll No,Name,Amount\r\n" + "".join(
        f'{p},{n},"{a}"\r\n' for p, n, a in rows)).encode()  # fmt: skip


def _upload(api: FlaskClient, who: Staffer, employer_id: int, data: bytes, **form: Any) -> Any:
    body = {"file": (io.BytesIO(data), "remittance.csv"), "bank_reference": "FT26ABC123",
            **{k: str(v) for k, v in form.items()}}  # fmt: skip
    return api.post(f"{URL}/employers/{employer_id}/remittances", headers=auth(who),
                    data=body, content_type="multipart/form-data")  # fmt: skip


def _approve(api: FlaskClient, manager: Staffer, approval_id: int) -> dict[str, Any]:
    got = api.post(f"/api/v1/approvals/{approval_id}/approve", headers=auth(manager),
                   json={"note": "checked against the bank statement"})  # fmt: skip
    assert got.status_code == 200, got.json
    return got.json or {}


def _employer(api: FlaskClient, who: Staffer, code: str) -> int:
    got = api.post(f"{URL}/employers", headers=auth(who), json={
        "code": code, "name": "Kaunti ya Nyeri", "bank_account": "01100223344",
        "contact_email": "payroll@nyeri.example", "pay_day": 25})  # fmt: skip
    assert got.status_code == 201, got.json
    return int((got.json or {})["id"])


def test_employers_instructions_and_the_expected_deductions_exported(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    officer, teller = make_staff("loan_officer"), make_staff("teller")
    body = {"code": "nyeri-cg", "name": "Kaunti ya Nyeri", "bank_account": "0110",
            "contact_email": "payroll@nyeri.example", "pay_day": 25}  # fmt: skip
    assert api.post(f"{URL}/employers", headers=auth(teller), json=body).status_code == 403
    bad = api.post(f"{URL}/employers", headers=auth(officer),
                   json={**body, "contact_email": "not an address"})  # fmt: skip
    assert bad.status_code == 422 and "contact_email" in (bad.json or {})["errors"]
    made = api.post(f"{URL}/employers", headers=auth(officer), json=body)
    assert made.status_code == 201 and (made.json or {})["code"] == "NYERI-CG"
    employer_id = (made.json or {})["id"]
    again = api.post(f"{URL}/employers", headers=auth(officer), json=body)
    assert again.status_code == 409 and (again.json or {})["code"] == "checkoff_refused"
    listed = api.get(f"{URL}/employers", headers=auth(teller)).json or {}
    assert [e["code"] for e in listed["items"]] == ["NYERI-CG"]
    assert api.get(f"{URL}/employers/{employer_id}", headers=auth(teller)).status_code == 200
    assert api.get(f"{URL}/employers/999999", headers=auth(teller)).status_code == 404

    loan, borrower, period = _loan(session_factory, deps)
    saver = make_member(status="active")
    for member, payroll in ((borrower, "P001"), (saver, "P002")):
        linked = api.post(f"{URL}/employers/{employer_id}/members", headers=auth(officer),
                          json={"member_id": member.id, "payroll_number": payroll})  # fmt: skip
        assert linked.status_code == 200, linked.json
    taken = api.post(f"{URL}/employers/{employer_id}/members", headers=auth(officer),
                     json={"member_id": saver.id, "payroll_number": "P001"})  # fmt: skip
    assert taken.status_code == 409
    assert (api.get(f"{URL}/members/{saver.id}/payroll", headers=auth(teller)).json or {})[
        "payroll_number"] == "P002"  # fmt: skip

    instructions = f"{URL}/members/{borrower.id}/instructions"
    wrong = api.put(instructions, headers=auth(officer), json={"instructions": [
        {"target": "loan", "loan_id": loan.id + 1000}]})  # fmt: skip
    assert wrong.status_code == 422 and "instructions.0" in (wrong.json or {})["errors"]
    # Given deposits first: they still pay after the loan.
    put = api.put(instructions, headers=auth(officer), json={"instructions": [
        {"target": "deposits", "amount_cents": 500 * KES},
        {"target": "loan", "loan_id": loan.id}]})  # fmt: skip
    assert put.status_code == 200, put.json
    got = api.get(instructions, headers=auth(teller)).json or {}
    assert [(i["target"], i["mode"]) for i in got["instructions"]] == [
        ("loan", "instalment_due"), ("deposits", "fixed")]  # fmt: skip
    api.put(
        f"{URL}/members/{saver.id}/instructions",
        headers=auth(officer),
        json={"instructions": [{"target": "shares", "amount_cents": 300 * KES}]},
    )

    assert api.post(f"{URL}/employers/{employer_id}/schedules", headers=auth(officer),
                    json={"period": "2026-13"}).status_code == 422  # fmt: skip
    made = api.post(f"{URL}/employers/{employer_id}/schedules", headers=auth(officer),
                    json={"period": period})  # fmt: skip
    assert made.status_code == 201, made.json
    schedule = made.json or {}
    with unit_of_work(session_factory) as s:
        instalment = s.scalar(
            select(LoanInstalment.principal_cents + LoanInstalment.interest_cents)
            .where(LoanInstalment.loan_id == loan.id).order_by(LoanInstalment.due_on).limit(1)
        )  # fmt: skip
    assert instalment
    rows = {r["payroll_number"]: r for r in schedule["rows"]}
    assert rows["P001"]["loans"] == instalment and rows["P001"]["deposits"] == 500 * KES
    assert rows["P002"]["amount"] == rows["P002"]["shares"] == 300 * KES
    assert schedule["total_cents"] == instalment + 800 * KES and schedule["members"] == 2

    export = f"{URL}/employers/{employer_id}/schedules/{period}/export"
    as_csv = api.get(export, headers=auth(teller))
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    lines = list(csv.DictReader(io.StringIO(as_csv.data.decode())))
    assert [(x["payroll_number"], x["amount"]) for x in lines] == [
        ("P001", f"{(instalment + 500 * KES) // 100}.{(instalment + 500 * KES) % 100:02d}"),
        ("P002", "300.00")]  # fmt: skip
    as_xlsx = api.get(export + "?format=xlsx", headers=auth(teller))
    assert as_xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(as_xlsx.data)).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "payroll_number" and values[2][:1] == ("P002",)
    assert float(values[2][3]) == 300.0
    assert api.get(export + "?format=pdf", headers=auth(teller)).status_code == 422
    assert api.get(f"{URL}/employers/{employer_id}/schedules/2020-01/export",
                   headers=auth(teller)).status_code == 404  # fmt: skip


def test_a_remittance_uploaded_approved_reported_and_its_unmatched_line_reassigned(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    officer, teller, manager = (make_staff(r) for r in ("loan_officer", "teller", "manager"))
    employer_id = _employer(api, officer, "MERU-TSC")
    saver, other = make_member(status="active"), make_member(status="active")
    api.post(
        f"{URL}/employers/{employer_id}/members",
        headers=auth(officer),
        json={"member_id": saver.id, "payroll_number": "T-100"},
    )
    api.put(
        f"{URL}/members/{saver.id}/instructions",
        headers=auth(officer),
        json={"instructions": [{"target": "deposits", "amount_cents": 2_000 * KES}]},
    )
    today = business_date(deps.now())
    period = today.strftime("%Y-%m")
    assert api.post(f"{URL}/employers/{employer_id}/schedules", headers=auth(officer),
                    json={"period": period}).status_code == 201  # fmt: skip
    good = _file([("T-100", "Wanjiku", "1,500.00"), ("T-999", "Nobody Known", "250.50")])
    total = 1_750_50
    form = {"period": period, "bank_amount_cents": total, "received_on": today.isoformat()}

    bad = _upload(api, teller, employer_id, _file([("T-100", "W", "1,500.00"),
                                                  ("T-999", "N", "12.345")]), **form)  # fmt: skip
    assert bad.status_code == 422 and (bad.json or {})["code"] == "checkoff_file_invalid"
    assert "line 3" in (bad.json or {})["detail"]
    short = _upload(api, teller, employer_id, good, **{**form, "bank_amount_cents": total - 1})
    assert short.status_code == 422 and "total" in (short.json or {})["detail"]
    future = _upload(
        api,
        teller,
        employer_id,
        good,
        **{**form, "received_on": (today + timedelta(days=1)).isoformat()},
    )
    assert future.status_code == 422
    no_file = api.post(f"{URL}/employers/{employer_id}/remittances", headers=auth(teller),
                       data=form, content_type="multipart/form-data")  # fmt: skip
    assert no_file.status_code == 422 and "file" in str((no_file.json or {})["errors"])

    up = _upload(api, teller, employer_id, good, **form)
    assert up.status_code == 202, up.json
    answer = up.json or {}
    remittance, approval = answer["remittance"], answer["approval"]
    assert remittance["status"] == "pending_approval" and remittance["unmatched_cents"] == 250_50
    assert approval["action"] == "checkoff.post" and approval["status"] == "pending"
    again = _upload(api, teller, employer_id, good, **form)
    assert again.status_code == 200 and (again.json or {})["created"] is False
    assert (again.json or {})["remittance"]["id"] == remittance["id"]
    # The maker may not approve it; the manager does, and it posts.
    mine = api.post(f"/api/v1/approvals/{approval['id']}/approve", headers=auth(teller),
                    json={"note": ""})  # fmt: skip
    assert mine.status_code == 403
    clearing_before = _clearing(session_factory)
    decided = _approve(api, manager, approval["id"])
    assert decided["status"] == "approved", decided
    got = api.get(f"{URL}/remittances/{remittance['id']}", headers=auth(teller)).json or {}
    assert got["status"] == "posted" and got["matched_cents"] == 1_500_00
    assert _balance(session_factory, saver.id, "deposits") == 1_500_00
    assert _clearing(session_factory) - clearing_before == 250_50  # parked in 2210

    report = api.get(f"{URL}/remittances/{remittance['id']}/report", headers=auth(teller))
    assert report.status_code == 200
    body = report.json or {}
    assert [(x["line_no"], x["payroll_number"], x["reason"]) for x in body["unmatched"]] == [
        (3, "T-999", "no_match")]  # fmt: skip
    assert [(x["payroll_number"], x["shortfall_cents"]) for x in body["shortfalls"]] == [
        ("T-100", 500_00)]  # fmt: skip
    as_csv = api.get(f"{URL}/remittances/{remittance['id']}/report.csv", headers=auth(teller))
    kinds = [r["kind"] for r in csv.DictReader(io.StringIO(as_csv.data.decode()))]
    assert kinds == ["unmatched", "shortfall"]

    # The unmatched line: asked by the clerk, decided by the manager, out of clearing.
    move = f"{URL}/remittances/{remittance['id']}/lines/3/reassignment"
    assert api.post(f"{URL}/remittances/{remittance['id']}/lines/2/reassignment",
                    headers=auth(teller), json={"member_id": other.id, "target": "savings"}
                    ).status_code == 409  # line 2 was allocated  # fmt: skip
    assert api.post(move, headers=auth(teller), json={"member_id": other.id, "target": "loan",
                    "loan_id": 1}).status_code == 422  # fmt: skip
    asked = api.post(
        move,
        headers=auth(teller),
        json={"member_id": other.id, "target": "savings", "note": "T-999 is hers"},
    )
    assert asked.status_code == 202, asked.json
    assert (asked.json or {})["action"] == "checkoff.reassign"
    assert _approve(api, manager, (asked.json or {})["id"])["status"] == "approved"
    assert _balance(session_factory, other.id, "savings") == 250_50
    assert _clearing(session_factory) == clearing_before
    after = api.get(f"{URL}/remittances/{remittance['id']}/report", headers=auth(teller)).json
    assert after is not None and after["unmatched"] == [] and after["unmatched_cents"] == 0
    assert after["remittance"]["matched_cents"] == total
    twice = api.post(move, headers=auth(teller), json={"member_id": other.id, "target": "savings"})
    assert twice.status_code == 409 and "already" in (twice.json or {})["detail"]


def test_late_remittances_are_aged_against_the_seven_days(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    deps: CoreDeps,
) -> None:  # fmt: skip
    officer, auditor = make_staff("loan_officer"), make_staff("auditor")
    employer_id = _employer(api, officer, "EMBU-CG")
    member = make_member(status="active")
    api.post(
        f"{URL}/employers/{employer_id}/members",
        headers=auth(officer),
        json={"member_id": member.id, "payroll_number": "E1"},
    )
    api.put(
        f"{URL}/members/{member.id}/instructions",
        headers=auth(officer),
        json={"instructions": [{"target": "savings", "amount_cents": 100 * KES}]},
    )
    period = business_date(deps.now()).strftime("%Y-%m")
    made = api.post(f"{URL}/employers/{employer_id}/schedules", headers=auth(officer),
                    json={"period": period}).json or {}  # fmt: skip
    due = made["due_on"]
    url = f"{URL}/late-remittances"
    on_time = api.get(f"{url}?date={due}", headers=auth(auditor)).json or {}
    assert [x for x in on_time["items"] if x["employer_id"] == employer_id] == []
    from datetime import date

    ten_late = (date.fromisoformat(due) + timedelta(days=10)).isoformat()
    late = api.get(f"{url}?date={ten_late}", headers=auth(auditor)).json or {}
    mine = [x for x in late["items"] if x["employer_id"] == employer_id]
    assert [(x["days_late"], x["bucket"], x["outstanding"]) for x in mine] == [
        (10, "8-30", True)]  # fmt: skip
    assert api.get(f"{url}?date=yesterday", headers=auth(auditor)).status_code == 422


def test_the_counter_cannot_name_checkoff_as_its_source(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    session_factory: sessionmaker[Session], deps: CoreDeps,
) -> None:  # fmt: skip
    """Money from check-off leaves clearing (2210) only through core.checkoff: a teller's
    deposit or loan repayment fixes its own source (cash) and refuses one named."""
    teller = make_staff("teller")
    member = make_member(status="active")
    loan, _, _ = _loan(session_factory, deps)
    clearing = _clearing(session_factory)
    for url, body in ((f"/api/v1/members/{member.id}/deposits",
                       {"amount_cents": 100 * KES, "source": "checkoff"}),
                      (f"/api/v1/loans/{loan.id}/repayments",
                       {"amount_cents": 100 * KES, "source": "checkoff"})):  # fmt: skip
        got = api.post(url, headers={**auth(teller), "Idempotency-Key": uuid4().hex}, json=body)
        assert got.status_code == 422 and "source" in str((got.json or {})["errors"]), got.json
    assert _balance(session_factory, member.id, "savings") == 0
    assert _clearing(session_factory) == clearing


def test_branch_bound_staff_reach_only_their_branchs_members(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
) -> None:  # fmt: skip
    head = make_staff("loan_officer")
    employer_id = _employer(api, head, "NYERI-WATER")
    member = make_member(branch="Nyeri", status="active")
    meru, nyeri = make_staff("loan_officer", branch="Meru"), make_staff("loan_officer", "Nyeri")
    link = {"member_id": member.id, "payroll_number": "W1"}
    instructions = {"instructions": [{"target": "savings", "amount_cents": 100 * KES}]}
    for who, status in ((nyeri, 200), (meru, 404)):  # Meru: the member exists, linked
        url = f"{URL}/members/{member.id}"
        assert api.post(f"{URL}/employers/{employer_id}/members", headers=auth(who),
                        json=link).status_code == status  # fmt: skip
        assert api.put(f"{url}/instructions", headers=auth(who),
                       json=instructions).status_code == status  # fmt: skip
        assert api.get(f"{url}/instructions", headers=auth(who)).status_code == status
        assert api.get(f"{url}/payroll", headers=auth(who)).status_code == status
