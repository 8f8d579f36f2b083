"""The check-off commands as an operator runs them (real processes, the demo's SQLite):
the expected deductions generated and written as CSV and XLSX, that very CSV sent back as
the employer's remittance (a bad file refused naming its line, a wrong bank amount
refused, the good one asked for approval once), and late remittances aged."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path

from openpyxl import load_workbook
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.checkoff import service as checkoff
from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM
from db.models import ApprovalRequest, Member, StaffUser
from db.models_checkoff import CheckoffRemittance
from tests.e2e.test_commands import demo_env, run


def test_schedule_upload_and_late_commands_on_the_demo(tmp_path: Path, deps: CoreDeps) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    assert run(["seed-demo"], env).returncode == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    with Session(engine) as s:
        employer = checkoff.create_employer(s, deps, SYSTEM, {
            "code": "DEMO-CO", "name": "Demo County", "bank_account": "0110",
            "contact_email": "payroll@demo.example", "pay_day": 25})  # fmt: skip
        members = s.scalars(select(Member).where(Member.status == "active")
                            .order_by(Member.id).limit(2)).all()  # fmt: skip
        for i, (member, target, cents) in enumerate(
            zip(members, ("savings", "deposits"), (1_000_00, 500_50), strict=True), start=1
        ):
            checkoff.link_member(s, deps, SYSTEM, employer.id, member.id, f"P{i}")
            checkoff.set_instructions(s, deps, SYSTEM, member.id,
                                      [{"target": target, "amount_cents": cents}])  # fmt: skip
        s.add(StaffUser(username="clerk.wanjiru", full_name="Clerk Wanjiru", role="teller",
                        password_hash="x"))  # fmt: skip
        s.commit()
    today = business_date(deps.now())
    month = today.strftime("%Y-%m")

    out = tmp_path / "deductions.csv"
    made = run(["checkoff-schedule", "--employer", "demo-co", "--month", month,
                "--out", str(out)], env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "2 member(s), KES 1,500.50" in made.stdout and f"{month}-25" in made.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["payroll_number"], r["amount"]) for r in rows] == [("P1", "1000.00"),
                                                                  ("P2", "500.50")]  # fmt: skip
    xlsx = tmp_path / "deductions.xlsx"
    assert run(["checkoff-schedule", "--employer", "DEMO-CO", "--month", month,
                "--out", str(xlsx)], env).returncode == 0  # fmt: skip
    sheet = load_workbook(xlsx).worksheets[0]
    assert [row[0] for row in sheet.iter_rows(values_only=True)] == ["payroll_number", "P1", "P2"]
    assert run(["checkoff-schedule", "--employer", "NOPE", "--month", month], env).returncode == 2
    bad_month = run(["checkoff-schedule", "--employer", "DEMO-CO", "--month", "2026-13"], env)
    assert bad_month.returncode == 2 and "YYYY-MM" in bad_month.stderr

    due = date(today.year, today.month, 25) + timedelta(days=7)
    late = run(["checkoff-late", "--date", (due + timedelta(days=3)).isoformat()], env)
    assert late.returncode == 1, late.stderr
    assert "DEMO-CO" in late.stdout and "(1-7)" in late.stdout and "NOT RECEIVED" in late.stdout

    upload = [
        "checkoff-upload",
        "--employer",
        "DEMO-CO",
        "--bank-ref",
        "FT26DEMO1",
        "--received",
        today.isoformat(),
        "--maker",
        "clerk.wanjiru",
        "--month",
        month,
    ]
    broken = tmp_path / "broken.csv"
    broken.write_text("payroll_number,amount\nP1,1000\nP2,five hundred\n")
    refused = run([*upload, "--file", str(broken), "--amount", "1500.50"], env)
    assert refused.returncode == 1 and "line 3" in refused.stderr, refused.stderr
    wrong = run([*upload, "--file", str(out), "--amount", "1,500"], env)
    assert wrong.returncode == 1 and "total_mismatch" not in wrong.stdout
    assert "the bank received 150000" in wrong.stderr
    asked = run([*upload, "--file", str(out), "--amount", "1,500.50"], env)
    assert asked.returncode == 0, asked.stderr
    assert "2 line(s), KES 1,500.50; matched KES 1,500.50, unmatched KES 0" in asked.stdout
    assert "approval request" in asked.stdout
    again = run([*upload, "--file", str(out), "--amount", "1,500.50"], env)
    assert again.returncode == 0 and "uploaded before" in again.stdout
    with Session(engine) as s:
        remittances = s.scalars(select(CheckoffRemittance)).all()
        assert [(r.status, r.total_cents) for r in remittances] == [("pending_approval", 150_050)]
        req = s.get(ApprovalRequest, remittances[0].approval_id)
        assert req is not None and req.action == "checkoff.post" and req.status == "pending"
    # Received before it was due: no longer late; the ledger is untouched until approval.
    on_time = run(["checkoff-late", "--date", (due + timedelta(days=3)).isoformat()], env)
    assert on_time.returncode == 0 and "0 late" in on_time.stdout
    assert run(["verify-ledger"], env).returncode == 0
    engine.dispose()
