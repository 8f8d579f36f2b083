"""Money-moving code never reads the replica: only the report edges name the report
session (``Runtime.report_session``) or the replica's sessions
(``Runtime.replica_session_factory``). Checked over the syntax tree of every module, so a
new use of either elsewhere fails here (docs/reports/index.md, "Reading off the primary")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"report_session", "replica_session_factory"}
ALLOWED = {
    "runtime.py",  # defines them
    "manage.py",  # `report`
    "api/v1/report_views.py",
    "workers/reports.py",
}
PACKAGES = ("core", "db", "api", "ussd", "sms", "integrations", "workers", "observability")


def users(root: Path = ROOT) -> set[str]:
    found = set()
    files = [
        p for p in (root / "runtime.py", root / "manage.py", root / "app_factory.py") if p.exists()
    ]
    for package in PACKAGES:
        files += sorted((root / package).rglob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in NAMES or (isinstance(node, ast.keyword) and node.arg in NAMES):
                found.add(path.relative_to(root).as_posix())
    return found


def test_only_the_report_edges_touch_the_replica() -> None:
    found = users()
    assert found <= ALLOWED, f"the replica is for reports only: {sorted(found - ALLOWED)}"
    assert {"api/v1/report_views.py", "workers/reports.py", "manage.py"} <= found


def test_the_guard_sees_a_new_use(tmp_path: Path) -> None:
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "payouts.py").write_text(
        "def pay(rt):\n    with rt.report_session() as s:\n        return s\n"
    )
    (tmp_path / "workers" / "fine.py").write_text("def pay(rt):\n    return rt.session()\n")
    (tmp_path / "runtime.py").write_text("Runtime(replica_session_factory=None)\n")
    assert users(tmp_path) == {"workers/payouts.py", "runtime.py"}
