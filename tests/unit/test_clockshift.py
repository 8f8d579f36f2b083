"""``make test-clock``'s clock mover: offsets and instants, handed down to child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.clockshift import offset_for

ROOT = Path(__file__).resolve().parents[2]
REAL = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)


def test_offsets_and_instants() -> None:
    assert offset_for("+365d", REAL) == timedelta(days=365)
    assert offset_for("-12h", REAL) == timedelta(hours=-12)
    assert offset_for("+90.5s", REAL) == timedelta(seconds=90.5)
    assert REAL + offset_for("@2028-02-29T20:59:00Z", REAL) == datetime(
        2028, 2, 29, 20, 59, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="SACCO_TEST_CLOCK"):
        offset_for("next tuesday", REAL)


def test_a_process_and_its_children_see_the_moved_clock() -> None:
    """The first process turns the instant into an offset and hands that down, so a child
    started later runs at the same offset instead of being set back to the instant."""
    child = (
        "from tests import clockshift; clockshift.start(); import os; "
        "from datetime import datetime, UTC; "
        "print(datetime.now(UTC).year, os.environ['SACCO_TEST_CLOCK'])"
    )
    code = (
        "import os, subprocess, sys\n"
        "from datetime import datetime, UTC\n"
        "from tests import clockshift\n"
        "clockshift.start()\n"
        "print(datetime.now(UTC).isoformat()[:16], os.environ['SACCO_TEST_CLOCK'])\n"
        f"out = subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True)\n"
        "print(out.stdout.strip())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SACCO_TEST_CLOCK": "@2028-02-29T20:59:00Z"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    parent, child_line = done.stdout.splitlines()[:2]
    parent_now, handed_down = parent.split()
    assert parent_now == "2028-02-29T20:59" and handed_down.startswith("+")
    assert child_line == f"2028 {handed_down}"


def test_a_parent_that_reads_the_clock_late_does_not_lag_behind_its_children() -> None:
    """time-machine starts ticking at the first read: start() reads at once, so a process
    that first looks at the clock half a second later agrees with a child started then."""
    code = (
        "import subprocess, sys, time\n"
        "from tests import clockshift\n"
        "clockshift.start()\n"
        "time.sleep(0.5)\n"
        "before = time.time()\n"
        "child = subprocess.run([sys.executable, '-c', "
        "'from tests import clockshift; clockshift.start(); import time; print(time.time())'], "
        "capture_output=True, text=True).stdout\n"
        "after = time.time()\n"
        "print(before <= float(child) <= after)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SACCO_TEST_CLOCK": "+365d"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
