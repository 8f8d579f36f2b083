"""All settings, from environment variables, typed and validated in one place.

``SACCO_ENV`` picks the profile:

* ``demo`` / ``development``: safe defaults so ``make demo`` runs with nothing
  set (a SQLite file, no Redis, fixed demo-only keys that are refused in
  production).
* ``test``: like development; the test suite points it at PostgreSQL and Redis.
* ``production`` (the default when nothing is set): every secret must be set
  and must not be a demo value, or start-up stops with one clear message
  naming what is missing.

``.env.example`` documents every variable.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cached_property
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Env = Literal["demo", "development", "test", "production"]


def _demo_key(label: str) -> str:
    """Deterministic demo-only key material; production refuses these values."""
    return base64.urlsafe_b64encode(
        hashlib.sha256(f"sacco-demo-{label}".encode()).digest()
    ).decode()


DEMO_SECRETS = {
    "secret_key": _demo_key("secret"),
    "jwt_secret_key": _demo_key("jwt"),
    "pin_pepper": _demo_key("pin-pepper"),
    "pii_keys": _demo_key("pii"),
    "blind_index_key": _demo_key("blind-index"),
}


class SettingsError(RuntimeError):
    """Start-up configuration is wrong; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    sacco_env: Env = "production"
    sacco_name: str = "Umoja SACCO"
    ussd_service_code: str = "*384*44135#"
    database_url: str = ""
    redis_url: str = ""
    log_level: str = "INFO"

    # Secrets (see .env.example for how to generate each).
    secret_key: str = ""
    jwt_secret_key: str = ""
    pin_pepper: str = ""
    pii_keys: str = Field(default="", description="comma-separated Fernet keys, newest first")
    blind_index_key: str = ""

    # Staff back-office API (docs/readme/api.md).
    api_cors_origins: str = Field(default="", description="comma-separated allowed origins")
    api_rate_limit: str = "300/minute"
    api_login_rate_limit: str = "10/minute"
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=12, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    approval_manager_threshold_cents: int = Field(default=5_000_000, ge=0)
    document_dir: str = "var/documents"
    document_max_bytes: int = Field(default=1_500_000, ge=1000, le=1_900_000)

    @model_validator(mode="after")
    def _fill_and_check(self) -> Settings:
        if self.sacco_env != "production":
            for name, value in DEMO_SECRETS.items():
                if not getattr(self, name):
                    object.__setattr__(self, name, value)
            if not self.database_url:
                object.__setattr__(self, "database_url", "sqlite:///var/demo.db")
            return self
        missing = [n.upper() for n in DEMO_SECRETS if not getattr(self, n)]
        if not self.database_url:
            missing.insert(0, "DATABASE_URL")
        if missing:
            raise ValueError(
                f"production needs {', '.join(missing)} set in the environment "
                "(see .env.example), or set SACCO_ENV=demo for a local demo"
            )
        demo = [n.upper() for n, v in DEMO_SECRETS.items() if v in getattr(self, n).split(",")]
        if demo:
            raise ValueError(f"{', '.join(demo)} use demo-only values; generate real ones")
        if self.database_url.startswith("sqlite"):
            raise ValueError("production needs PostgreSQL in DATABASE_URL, not SQLite")
        return self

    @property
    def is_production(self) -> bool:
        return self.sacco_env == "production"

    @cached_property
    def pii_key_list(self) -> list[bytes]:
        return [k.strip().encode() for k in self.pii_keys.split(",") if k.strip()]


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus explicit overrides), or raise ``SettingsError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        reasons = "; ".join(
            str(err.get("ctx", {}).get("error", err["msg"]))
            if err["type"] == "value_error"
            else f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"Invalid configuration: {reasons}") from None
