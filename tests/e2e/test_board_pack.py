"""``manage.py board-pack`` as an operator runs it, on the demo's SQLite database: one
PDF, the month's figures as the records hold them, the charts embedded; a bad month is
refused in one line."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

from pypdf import PdfReader

from tests.e2e.test_commands import demo_env, run


def test_board_pack_of_a_month(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    assert run(["seed-demo"], env).returncode == 0
    with sqlite3.connect(tmp_path / "demo.db") as db:
        month, joined = db.execute(
            "SELECT substr(created_at, 1, 7) AS m, COUNT(*) FROM members GROUP BY m ORDER BY m"
        ).fetchall()[0]
    out = tmp_path / "pack.pdf"
    done = run(["board-pack", "--month", month, "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert f"board pack {month}" in done.stdout
    reader = PdfReader(io.BytesIO(out.read_bytes()))
    assert len(reader.pages) == 2
    first = reader.pages[0].extract_text()
    assert "board pack" in first and "Members by deposits" in first
    assert f"Joined in the month {joined}" in first
    assert len(reader.pages[1].images) == 3  # the three charts

    bad = run(["board-pack", "--month", "2026-13", "--out", str(out)], env)
    assert bad.returncode == 2 and "use YYYY-MM" in bad.stderr
