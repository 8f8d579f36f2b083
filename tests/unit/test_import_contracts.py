"""The import rules bite: a copy of the code with one forbidden import breaks `make lint`'s
lint-imports, and the same copy without it passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "db", "ussd", "sms", "api", "integrations", "workers", "observability")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(tree: Path, module: str, line: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_real_code_keeps_every_contract(tree: Path) -> None:
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/ledger/entries.py", "import flask", "core imports no web framework"),
        # Metrics and logs are counted at the edges: core knows no Prometheus.
        ("core/ledger/entries.py", "import observability.metrics", "core imports no web framework"),
        ("core/members/registration.py", "import ussd.engine", "core imports no web framework"),
        ("ussd/engine.py", "import sms.views", "channels are independent of each other"),
        ("api/v1/__init__.py", "import ussd.menus", "channels are independent of each other"),
        ("core/kernel/money.py", "import core.ledger.entries", "kernel below ledger"),
        ("core/ledger/entries.py", "import core.members.registration", "kernel below ledger"),
        # The approvals engine knows no action: domains register theirs with it.
        ("core/approvals/engine.py", "import core.members.backoffice", "below the domains"),
        # core knows nothing of the process around it: no runtime, Redis or RQ.
        ("core/kernel/deps.py", "from runtime import Runtime", "core imports no web framework"),
        ("core/messaging/outbox.py", "import redis", "core imports no web framework"),
        # The two cycles issue 11 broke stay broken, function-level imports included.
        (
            "workers/mpesa.py",
            "def _late() -> None:\n    from app_factory import create_app",
            "nothing imports the composition root",
        ),
        (
            "api/v1/member_views.py",
            "def _late() -> None:\n    from api.v1.approval_views import approve",
            "API view modules are independent of each other",
        ),
    ],
)
def test_a_forbidden_import_breaks_the_lint(
    tree: Path, module: str, line: str, contract: str
) -> None:
    add_import(tree, module, line)
    done = lint_imports(tree)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if " BROKEN" in line]
    assert [line for line in broken if contract in line], done.stdout
