"""``manage.py sasra-return`` as an operator runs it (a real process on the demo's SQLite
book): the XLSX and the CSV written, their total assets the ledger's, the ratios printed;
Form 4 without a close of day and a future date refused with exit 1 and the reason."""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openpyxl import load_workbook

from core.kernel.calendar import business_date
from tests.e2e.test_commands import demo_env, run


def test_sasra_return_writes_the_demo_books_return(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    assert run(["seed-demo"], env).returncode == 0
    today = business_date(datetime.now(UTC)).isoformat()
    with sqlite3.connect(tmp_path / "demo.db") as db:
        (assets,) = db.execute(
            "SELECT SUM(CASE normal_side WHEN 'D' THEN balance_cents ELSE -balance_cents END)"
            " FROM accounts WHERE type = 'asset'"
        ).fetchone()
    out = tmp_path / "ca.xlsx"
    done = run(["sasra-return", "capital_adequacy", "--date", today, "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert f"as at {today}: written to {out}" in done.stdout
    assert "core_capital_to_total_assets" in done.stdout
    ws = load_workbook(out)["Capital adequacy return"]
    cells = {row[0]: row for row in ws.iter_rows(min_row=7, values_only=True) if row[0]}
    assert round(cells["total_assets"][2] * 100) == assets > 0

    csv_out = tmp_path / "liq.csv"
    done = run(["sasra-return", "liquidity", "--date", today, "--format", "csv",
                "--out", str(csv_out)], env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {r[0]: r for r in csv.reader(csv_out.read_text().splitlines()) if r}
    assert rows["liquidity_ratio"][3] == "%"

    form4 = run(["sasra-return", "risk_classification", "--date", today], env)
    assert form4.returncode == 1 and "sasra_no_classification" in form4.stderr
    future = business_date(datetime.now(UTC)) + timedelta(days=2)
    later = run(["sasra-return", "liquidity", "--date", future.isoformat()], env)
    assert later.returncode == 1 and "invalid_input" in later.stderr
