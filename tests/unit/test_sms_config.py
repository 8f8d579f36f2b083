"""Africa's Talking and outbox settings: demo defaults point at the stand-in; production
refuses the stand-in's key."""

from __future__ import annotations

import pytest

from config import DEMO_SECRETS, SettingsError, load_settings


def test_demo_points_at_the_standin_gateway() -> None:
    settings = load_settings(sacco_env="demo")
    assert settings.at_base_url == "http://127.0.0.1:8701"
    assert (settings.at_username, settings.at_api_key) == ("sacco", "standin-api-key")
    assert settings.outbox_max_attempts == 8 and settings.sms_callback_token == ""


def test_production_refuses_the_standin_key_and_keeps_the_sdk_host() -> None:
    real = dict.fromkeys(DEMO_SECRETS, "x" * 40)
    base = {
        "sacco_env": "production",
        "database_url": "postgresql://db/sacco",
        "redis_url": "redis://127.0.0.1:6379/0",
        "ussd_callback_token": "u" * 32,
        "sms_callback_token": "s" * 32,
        "trusted_proxy_hops": 1,
        **real,
    }
    with pytest.raises(SettingsError, match="AT_API_KEY"):
        load_settings(**base, at_api_key="standin-api-key")
    ok = load_settings(**base, at_username="umoja", at_api_key="k" * 40)
    assert ok.at_base_url == ""  # the SDK's production host


def test_outbox_limits_are_validated() -> None:
    with pytest.raises(SettingsError, match="OUTBOX_MAX_ATTEMPTS"):
        load_settings(sacco_env="demo", outbox_max_attempts=0)
