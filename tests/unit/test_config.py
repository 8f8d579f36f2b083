import pytest

from config import DEMO_MPESA, DEMO_SECRETS, Settings, SettingsError, load_settings

REAL = dict.fromkeys(DEMO_SECRETS, "x" * 40)
TOKEN = "Zq8" * 10  # 30 characters
# A complete production configuration besides the secrets: each refusal test below
# removes or spoils one setting.
SERVING = {
    "database_url": "postgresql://db/sacco",
    "redis_url": "redis://127.0.0.1:6379/0",
    "ussd_callback_token": TOKEN + "u",
    "sms_callback_token": TOKEN + "s",
    "trusted_proxy_hops": 1,
}
MPESA = {
    "mpesa_consumer_key": "key", "mpesa_consumer_secret": "s", "mpesa_passkey": "p",
    "mpesa_initiator_password": "i", "mpesa_base_url": "https://api.example",
    "mpesa_shortcode": "600100", "mpesa_callback_token": "t" * 32,
    "mpesa_callback_base_url": "https://pay.umoja.example",
    "at_insights_url": "https://insights.example", "at_username": "umoja",
    "at_api_key": "k" * 40,
}  # fmt: skip


def production(**changes: object) -> Settings:
    values: dict[str, object] = {"sacco_env": "production", **REAL, **SERVING, **changes}
    return load_settings(**{k: v for k, v in values.items() if v is not None})


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
    ok = production(database_url="postgresql://db/sacco")
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
    with pytest.raises(SettingsError, match="Daraja blocks callback URLs"):
        production(**{**MPESA, "mpesa_callback_base_url": base})
    assert production(**MPESA).mpesa_enabled


def test_production_with_every_setting_starts() -> None:
    assert production().is_production
    ok = production(**MPESA)
    assert ok.mpesa_enabled and ok.at_insights_url == "https://insights.example"


@pytest.mark.parametrize("name", ["ussd_callback_token", "sms_callback_token"])
@pytest.mark.parametrize(
    "value",
    [None, "", "short-token-23-chars-xy", DEMO_SECRETS["secret_key"], DEMO_MPESA["mpesa_callback_token"]],
    ids=["unset", "empty", "23-chars", "demo-secret", "demo-mpesa-token"],
)  # fmt: skip
def test_production_refuses_a_missing_short_or_demo_gateway_token(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name.upper()) as err:
        production(**{name: value})
    assert "24+ characters" in str(err.value) or "demo" in str(err.value)


def test_production_refuses_to_start_without_redis() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        production(redis_url=None)


def test_production_refuses_a_defaulted_trusted_proxy_hops() -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXY_HOPS"):
        production(trusted_proxy_hops=None)
    assert production(trusted_proxy_hops=0).trusted_proxy_hops == 0  # explicit 0 is a choice


def test_production_refuses_a_plain_http_mpesa_callback_base() -> None:
    with pytest.raises(SettingsError, match="MPESA_CALLBACK_BASE_URL.*https"):
        production(**{**MPESA, "mpesa_callback_base_url": "http://pay.umoja.example"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("at_insights_url", None), ("at_insights_url", "http://insights.example"),
     ("at_username", None), ("at_api_key", None)],
)  # fmt: skip
def test_production_with_mpesa_refuses_to_start_without_the_sim_swap_check(
    name: str, value: str | None
) -> None:
    with pytest.raises(SettingsError, match=name.upper()):
        production(**{**MPESA, name: value})


def test_each_refusal_names_its_variable_and_all_are_listed_at_once() -> None:
    with pytest.raises(SettingsError) as err:
        production(ussd_callback_token=None, sms_callback_token=None, redis_url=None,
                   trusted_proxy_hops=None)  # fmt: skip
    message = str(err.value)
    for name in ["USSD_CALLBACK_TOKEN", "SMS_CALLBACK_TOKEN", "REDIS_URL", "TRUSTED_PROXY_HOPS"]:
        assert name in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("env", ["demo", "development", "test"])
def test_demo_development_and_test_need_none_of_the_production_settings(env: str) -> None:
    settings = load_settings(sacco_env=env)
    assert settings.ussd_callback_token == "" and settings.trusted_proxy_hops == 0
