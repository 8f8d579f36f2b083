"""``manage.py report`` as an operator runs it, on the demo's SQLite database (the same
SQL the API runs on PostgreSQL): the seeded demo's statements balance and files are written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_commands import demo_env, run


def test_report_command_on_the_seeded_demo(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    assert run(["seed-demo"], env).returncode == 0
    listed = run(["report", "--list"], env)
    assert listed.returncode == 0 and "financial_position" in listed.stdout
    tb = run(["report", "trial_balance", "--format", "csv"], env)
    assert tb.returncode == 0, tb.stderr
    assert "check,debits = credits,ok" in tb.stdout and "database,primary" in tb.stdout
    sfp = run(["report", "financial_position", "--format", "json"], env)
    assert sfp.returncode == 0, sfp.stderr
    body = json.loads(sfp.stdout)
    assert body["checks"] and all(c["ok"] for c in body["checks"])
    rows = {r[0].strip(): r[1] for r in body["sections"][0]["rows"]}
    assert rows["Total assets"] == rows["Total liabilities and equity"] > 0
    out = tmp_path / "par.xlsx"
    par = run(["report", "portfolio_at_risk", "--format", "xlsx", "--out", str(out)], env)
    assert par.returncode == 0, par.stderr
    assert out.read_bytes()[:2] == b"PK"
    flows = run(["report", "loan_flows", "--from", "2020-01-01", "--to", "2030-12-31"], env)
    assert flows.returncode == 0, flows.stderr
    bad = run(["report", "no_such_report"], env)
    assert bad.returncode == 2 and "not_found" in bad.stderr
    bad_date = run(["report", "trial_balance", "--date", "2026-02-30"], env)
    assert bad_date.returncode == 2 and "as_of" in bad_date.stderr
