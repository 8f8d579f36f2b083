"""Settings: money in one unit (whole KES in, cents out), a renamed variable refused at
start, one default SACCO name, and gunicorn reading the app's settings object."""

from __future__ import annotations

import os
import runpy
import shutil
from pathlib import Path

import pytest

from config import RENAMED, Settings, SettingsError, load_settings
from core.kernel.deps import DEFAULT_SACCO_NAME, CoreDeps
from ussd.service import UssdConfig

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def test_every_money_setting_is_whole_kes_and_has_its_cents() -> None:
    money = [name for name in Settings.model_fields if "_kes" in name or "cents" in name]
    assert money and all(name.endswith("_kes") for name in money), money
    settings = load_settings(sacco_env="demo")
    for name in money:
        cents = getattr(settings, name.removesuffix("_kes") + "_cents")
        assert cents == getattr(settings, name) * 100, name


def test_the_defaults_mean_what_they_meant_in_cents() -> None:
    settings = load_settings(sacco_env="demo")
    assert settings.approval_manager_threshold_cents == 5_000_000  # KES 50,000, as before
    assert settings.cash_deposit_till_limit_cents == 10_000_000  # KES 100,000
    assert settings.mpesa_deposit_max_cents == 15_000_000


def test_an_operator_value_in_kes_reaches_the_code_in_cents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APPROVAL_MANAGER_THRESHOLD_KES", "75000")
    monkeypatch.setenv("CASH_DEPOSIT_TILL_LIMIT_KES", "20000")
    settings = load_settings(sacco_env="demo")
    assert settings.approval_manager_threshold_cents == 7_500_000
    assert settings.cash_deposit_till_limit_cents == 2_000_000


@pytest.mark.parametrize(
    "spelling", ["APPROVAL_MANAGER_THRESHOLD_CENTS", "approval_manager_threshold_cents"]
)
def test_the_renamed_variable_is_refused_at_start_naming_its_new_name(
    monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.setenv(spelling, "5000000")
    with pytest.raises(SettingsError) as err:
        load_settings(sacco_env="demo")
    message = str(err.value)
    assert "APPROVAL_MANAGER_THRESHOLD_CENTS was renamed APPROVAL_MANAGER_THRESHOLD_KES" in message
    assert "\n" not in message


def test_the_renamed_name_is_refused_as_an_override_too() -> None:
    assert set(RENAMED) == {"APPROVAL_MANAGER_THRESHOLD_CENTS"}
    with pytest.raises(SettingsError, match="APPROVAL_MANAGER_THRESHOLD_KES"):
        load_settings(sacco_env="demo", approval_manager_threshold_cents=100)


def test_one_default_sacco_name_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SACCO_NAME", raising=False)
    assert DEFAULT_SACCO_NAME == "Umoja SACCO"
    assert load_settings(sacco_env="demo").sacco_name == DEFAULT_SACCO_NAME
    assert UssdConfig().sacco_name == DEFAULT_SACCO_NAME
    assert CoreDeps.__dataclass_fields__["sacco_name"].default == DEFAULT_SACCO_NAME
    sources = [ROOT / "config.py", ROOT / "ussd" / "service.py", ROOT / "manage.py"]
    sources += (ROOT / "core").rglob("*.py")
    written = [p for p in sources if p.name != "deps.py" and "Umoja SACCO" in p.read_text()]
    assert written == [], "the default name is written once, in core/kernel/deps.py"


def _gunicorn_settings() -> dict[str, object]:
    """gunicorn's config as gunicorn reads it. Reading it makes a metrics directory for
    gunicorn's workers (``PROMETHEUS_MULTIPROC_DIR``, in the environment): put back as it
    was, or the rest of this test process would read metrics from that empty directory."""
    before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    try:
        return runpy.run_path(str(GUNICORN_CONF))
    finally:
        made = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if before is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = before
        elif made:
            shutil.rmtree(made, ignore_errors=True)


def test_gunicorn_takes_bind_workers_and_threads_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SACCO_ENV", "test")
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "6")
    conf = _gunicorn_settings()
    assert (conf["bind"], conf["workers"], conf["threads"]) == ("0.0.0.0:8123", 3, 6)
    monkeypatch.setenv("SACCO_ENV", "demo")  # the demo keeps sessions in memory: one worker
    assert _gunicorn_settings()["workers"] == 1


def test_gunicorn_refuses_a_bad_setting_as_the_app_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SACCO_ENV", "test")
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    with pytest.raises(SystemExit) as stop:
        _gunicorn_settings()
    assert "WEB_CONCURRENCY" in str(stop.value.code)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    monkeypatch.setenv("APPROVAL_MANAGER_THRESHOLD_CENTS", "5000000")
    with pytest.raises(SystemExit, match="renamed APPROVAL_MANAGER_THRESHOLD_KES"):
        _gunicorn_settings()
