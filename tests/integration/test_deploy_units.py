"""The systemd units in deploy/ as an operator installs them (docs/operators/install.md):
every ``sacco-*.service`` with the ``sacco-.service.d/`` sandbox drop-in in one unit
directory. ``systemd-analyze verify`` must read every line of them without a complaint, and
``systemd-analyze security --offline`` must rate each long-running unit "OK" or better
(it rated the shipped units 8.8 "EXPOSED" before the drop-in). The units' absolute paths
under /opt/sacco are pointed at a temporary copy whose programs exist (verify checks that
ExecStart names an executable); nothing else is changed. Needs Debian's systemd package
(``systemd-analyze``; listed in ``make system-deps``); never skipped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ANALYZE = shutil.which("systemd-analyze", path=os.environ.get("PATH", "") + ":/usr/bin:/bin")
UNITS = sorted(p.name for p in DEPLOY.glob("sacco-*.service"))
TIMERS = sorted(p.name for p in DEPLOY.glob("sacco-*.timer"))
# Run to completion by the operator or a timer (migrations, backups): never restarted.
ONESHOT = [u for u in UNITS if "Type=oneshot" in (DEPLOY / u).read_text()]
LONG_RUNNING = [u for u in UNITS if u not in ONESHOT]
# What the units run from deploy/ (copied as /opt/sacco/deploy/... by the install guide).
SCRIPTS = ["backup.sh", "pitr/base-backup.sh", "pitr/prune.sh"]
WORST_RATING = 2.0  # systemd's scale: < 2 "OK", 2-5 "MEDIUM", > 9 "UNSAFE"


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if ANALYZE is None:
        pytest.fail("systemd-analyze is not installed: run `make system-deps` (Debian's systemd)")
    base = tmp_path_factory.mktemp("systemd")
    opt = base / "opt" / "sacco"
    (opt / ".venv" / "bin").mkdir(parents=True)
    for program in ("python", "gunicorn"):
        shutil.copy("/bin/true", opt / ".venv" / "bin" / program)
    for script in SCRIPTS:
        (opt / "deploy" / script).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy("/bin/true", opt / "deploy" / script)
    units = base / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for name in UNITS + TIMERS:
        text = (DEPLOY / name).read_text().replace("/opt/sacco", str(opt))
        (units / name).write_text(text)
    shutil.copytree(DEPLOY / "sacco-.service.d", units / "sacco-.service.d")
    return units


def test_there_are_units_and_a_sandbox_for_them() -> None:
    assert {"sacco-web.service", "sacco-scheduler.service", "sacco-worker@.service",
            "sacco-migrate.service"} <= set(UNITS)  # fmt: skip
    assert (DEPLOY / "sacco-.service.d" / "hardening.conf").is_file()


@pytest.mark.parametrize("unit", UNITS + TIMERS)
def test_systemd_reads_every_line_of_the_unit_and_its_drop_in(unit_dir: Path, unit: str) -> None:
    name = unit.replace("@.", "@1.")
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"}
    done = subprocess.run(
        [str(ANALYZE), "verify", name], env=env, capture_output=True, text=True, timeout=60
    )
    # An unknown or misspelt key is only a warning: any output at all fails the test.
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


@pytest.mark.parametrize("unit", LONG_RUNNING)
def test_each_service_runs_in_a_sandbox(unit_dir: Path, unit: str) -> None:
    name = unit.replace("@.", "@1.")
    root = unit_dir.parents[2]
    done = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", f"--root={root}", "--no-pager", name],
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rating = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert rating is not None, done.stdout + done.stderr
    assert float(rating.group(1)) <= WORST_RATING, done.stdout
    # The defect that crash-looped gunicorn: a read-only file system and no private /tmp.
    assert re.search(r"✓ PrivateTmp=", done.stdout), done.stdout


def test_nothing_migrates_on_a_restart() -> None:
    for unit in LONG_RUNNING:
        assert "migrate" not in (DEPLOY / unit).read_text().split("[Service]")[1], unit
    migrate = (DEPLOY / "sacco-migrate.service").read_text()
    assert "Type=oneshot" in migrate and "manage.py migrate" in migrate
    assert "[Install]" not in migrate  # started by the operator, never by boot


@pytest.mark.parametrize("unit", LONG_RUNNING)
def test_every_long_running_service_is_restarted_however_often_it_stops(unit: str) -> None:
    text = (DEPLOY / unit).read_text()
    unit_section, service = text.split("[Service]")
    assert re.search(r"^Restart=always$", service, re.M), unit
    assert re.search(r"^RestartSec=\d+", service, re.M), unit
    # without it systemd stops restarting after 5 failures in 10 s (a Redis or PostgreSQL
    # outage at start), and the unit stays down once they are back
    assert re.search(r"^StartLimitIntervalSec=0$", unit_section, re.M), unit


def test_backups_run_on_timers_and_their_scripts_ship() -> None:
    assert {"sacco-backup.timer", "sacco-basebackup.timer"} <= set(TIMERS)
    for timer in TIMERS:
        service = timer.replace(".timer", ".service")
        assert service in ONESHOT, timer
        assert "Persistent=true" in (DEPLOY / timer).read_text()  # a missed night runs at boot
        for script in SCRIPTS:
            if f"/opt/sacco/deploy/{script}" in (DEPLOY / service).read_text():
                assert os.access(DEPLOY / script, os.X_OK), script
    backup = (DEPLOY / "sacco-backup.service").read_text()
    assert "BACKUP_VERIFY_DATABASE_URL" in backup and "ReadWritePaths=/var/backups/sacco" in backup
