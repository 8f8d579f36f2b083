import pytest

from config import DEMO_SECRETS, SettingsError, load_settings


def test_production_without_secrets_stops_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SACCO_ENV", raising=False)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    for name in ["DATABASE_URL", "PIN_PEPPER", "PII_KEYS", "BLIND_INDEX_KEY", "JWT_SECRET_KEY"]:
        assert name in message


def test_production_refuses_demo_keys_and_sqlite() -> None:
    real = dict.fromkeys(DEMO_SECRETS, "x" * 40)
    with pytest.raises(SettingsError, match="PIN_PEPPER"):
        load_settings(
            sacco_env="production",
            database_url="postgresql://db/sacco",
            **{**real, "pin_pepper": DEMO_SECRETS["pin_pepper"]},
        )
    with pytest.raises(SettingsError, match="PostgreSQL"):
        load_settings(sacco_env="production", database_url="sqlite:///x.db", **real)
    ok = load_settings(sacco_env="production", database_url="postgresql://db/sacco", **real)
    assert ok.is_production


def test_demo_has_safe_defaults_and_no_services() -> None:
    settings = load_settings(sacco_env="demo")
    assert settings.database_url.startswith("sqlite")
    assert settings.redis_url == ""
    assert settings.pii_key_list


def test_bad_enum_is_reported() -> None:
    with pytest.raises(SettingsError, match="SACCO_ENV"):
        load_settings(sacco_env="staging")


@pytest.mark.parametrize(
    "base",
    ["https://mpesa.umoja.example", "https://umoja.example/M-Pesa", "https://safaricom-x.example"],
)
def test_production_refuses_a_callback_base_daraja_would_block(base: str) -> None:
    real = dict.fromkeys(DEMO_SECRETS, "x" * 40)
    mpesa = {
        "mpesa_consumer_key": "key", "mpesa_consumer_secret": "s", "mpesa_passkey": "p",
        "mpesa_initiator_password": "i", "mpesa_base_url": "https://api.example",
        "mpesa_shortcode": "600100", "mpesa_callback_token": "t" * 32,
    }  # fmt: skip
    production = {"sacco_env": "production", "database_url": "postgresql://db/sacco", **real}
    with pytest.raises(SettingsError, match="Daraja blocks callback URLs"):
        load_settings(**production, **mpesa, mpesa_callback_base_url=base)
    ok = load_settings(**production, **mpesa, mpesa_callback_base_url="https://pay.umoja.example")
    assert ok.mpesa_enabled
