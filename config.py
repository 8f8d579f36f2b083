"""All settings, from environment variables, typed and validated in one place.

``SACCO_ENV`` picks the profile:

* ``demo`` / ``development``: safe defaults so ``make demo`` runs with nothing
  set (a SQLite file, no Redis, fixed demo-only keys that are refused in
  production).
* ``test``: like development; the test suite points it at PostgreSQL and Redis.
* ``production`` (the default when nothing is set): every secret must be set
  and must not be a demo value, or start-up stops with one clear message
  naming what is missing.

``.env.example`` documents every variable. Money is whole KES in the environment
(what an operator writes, and how the SACCO's own tariffs and limits read) and
integer cents in the code: each ``*_kes`` setting has a ``*_cents`` property, the
one place the two meet. A variable that was renamed is refused at start with its
new name (``RENAMED``), never silently ignored.
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import cached_property
from typing import Any, Literal

from limits import parse_many
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.kernel.deps import DEFAULT_SACCO_NAME, DEFAULT_USSD_CODE
from core.kernel.money import CENTS
from core.payments.mpesa.rules import blocked_url_word

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

# M-Pesa / Africa's Talking values that point at the local stand-ins
# (integrations/mpesa/standin.py, integrations/africastalking/standin.py). Filled in
# for demo/development/test when unset; production never gets them.
DEMO_MPESA = {
    "mpesa_base_url": "http://127.0.0.1:8702",
    "mpesa_consumer_key": "standin-key",
    "mpesa_consumer_secret": "standin-secret",
    "mpesa_shortcode": "174379",
    "mpesa_passkey": "standin-passkey",
    "mpesa_b2c_shortcode": "600000",
    "mpesa_initiator_name": "standin-initiator",
    "mpesa_initiator_password": "Standin#2024",
    "mpesa_callback_base_url": "http://127.0.0.1:8000",
    "mpesa_callback_token": _demo_key("mpesa-callback"),
    "at_insights_url": "http://127.0.0.1:8701",
    "at_username": "sacco",
    "at_api_key": "standin-api-key",
}
MPESA_SECRETS = ("mpesa_consumer_secret", "mpesa_passkey", "mpesa_initiator_password")


# Outside production, Africa's Talking points at the local stand-in
# (python -m integrations.africastalking.standin --port 8701).
AT_STANDIN_DEFAULTS = {
    "at_username": "sacco",
    "at_api_key": "standin-api-key",
    "at_base_url": "http://127.0.0.1:8701",
}


# Gateway callback tokens (USSD, SMS, M-Pesa): the URL secret is the gateway's only proof.
GATEWAY_TOKEN_MIN = 24
_DEMO_VALUES = frozenset(
    {*DEMO_SECRETS.values(), *DEMO_MPESA.values(), *AT_STANDIN_DEFAULTS.values()}
)


# Variables that were renamed: an environment that still sets one is refused at start
# (an operator's old value must not be silently ignored for the default).
RENAMED = {
    "APPROVAL_MANAGER_THRESHOLD_CENTS": (
        "APPROVAL_MANAGER_THRESHOLD_KES",
        "money settings are whole KES (5000000 cents is 50000)",
    ),
}


class SettingsError(RuntimeError):
    """Start-up configuration is wrong; the message says what to set."""


def _cents(kes: int) -> int:
    return kes * CENTS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    sacco_env: Env = "production"
    sacco_name: str = DEFAULT_SACCO_NAME
    ussd_service_code: str = DEFAULT_USSD_CODE
    database_url: str = ""
    # Reports read here when set: a PostgreSQL streaming replica of DATABASE_URL (issue 16;
    # docs/reports/index.md). Money-moving code never gets this engine.
    replica_database_url: str = ""
    redis_url: str = ""
    log_level: str = "INFO"
    # Logs: JSON lines (one object a line, for a log shipper) or text (a person at a
    # terminal). Unset: json in production and test, text in the demo and development.
    log_format: Literal["json", "text"] = "json"
    # /metrics (docs/operators/monitoring.md): the scrape-time reads of PostgreSQL and Redis
    # are cached this long per process; and the addresses the app itself serves /metrics to
    # (comma-separated networks; nginx's monitoring allowlist is the first guard, this the
    # second; empty serves anyone who reaches the app).
    metrics_cache_seconds: float = Field(default=10.0, ge=0, le=300)
    metrics_allowed_networks: str = (
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    )

    # USSD channel (docs/channels/ussd.md).
    ussd_callback_token: str = Field(
        default="", description="secret the gateway's callback URL carries as ?token=; off if empty"
    )
    ussd_session_ttl_seconds: int = Field(default=180, ge=30, le=3600)
    ussd_resume_ttl_seconds: int = Field(default=120, ge=0, le=3600)
    # Hops per phone number (Flask-Limiter syntax, ";" between limits); over it the caller
    # gets a polite END. Stops a forged or runaway caller from hammering one member.
    ussd_rate_limit: str = "30/minute;300/day"
    sacco_help_phone: str = "0700 000 000"
    sacco_terms_url: str = "umoja.example/terms"
    sacco_sms_code: str = "22384"

    # Phone simulator (demo/development only, docs/channels/ussd.md): base URL of the
    # Africa's Talking stand-in whose received SMS the simulator's inbox also shows.
    simulator_sms_standin_url: str = ""

    # Secrets (see .env.example for how to generate each).
    secret_key: str = ""
    jwt_secret_key: str = ""
    pin_pepper: str = ""
    pii_keys: str = Field(default="", description="comma-separated Fernet keys, newest first")
    blind_index_key: str = ""

    # The bank (docs/integrations/banks.md). Empty BANK_BASE_URL = bank transfers off.
    bank_base_url: str = ""
    bank_consumer_key: str = ""
    bank_consumer_secret: str = ""
    bank_company_code: str = ""  # the SACCO's company code at the bank (KCB FT API)
    bank_debit_account: str = ""  # the SACCO's account transfers leave from
    bank_own_code: str = "01"  # the SACCO's bank's code: same bank -> internal transfer
    bank_callback_token: str = ""  # long secret in the callback URL (?token=)
    bank_callback_allowed_networks: str = ""  # comma-separated; empty: any (token only)
    bank_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    bank_pesalink_max_kes: int = Field(default=999_999, ge=1)  # PesaLink's per-transfer cap
    bank_payout_min_kes: int = Field(default=100, ge=1)
    bank_sweep_approval_above_kes: int = Field(default=500_000, ge=0)

    # M-Pesa Daraja (docs/channels/mpesa.md). Empty in production = M-Pesa switched off.
    mpesa_base_url: str = ""
    mpesa_consumer_key: str = ""
    mpesa_consumer_secret: str = ""
    mpesa_shortcode: str = ""  # paybill: STK push and C2B
    mpesa_passkey: str = ""
    mpesa_b2c_shortcode: str = ""
    mpesa_initiator_name: str = ""
    mpesa_initiator_password: str = ""
    mpesa_certificate_path: str = ""  # Safaricom's certificate (PEM or DER) for B2C
    mpesa_callback_base_url: str = ""  # public https origin Daraja calls back
    mpesa_callback_token: str = ""  # long secret in every callback URL (?token=)
    mpesa_timeout_seconds: float = 30.0
    # Member limits, whole KES. Deposits by STK push; withdrawals by B2C (savings only).
    mpesa_deposit_min_kes: int = 10
    mpesa_deposit_max_kes: int = 150_000
    mpesa_withdrawal_min_kes: int = 100
    mpesa_withdrawal_max_kes: int = 70_000
    mpesa_withdrawal_daily_max_kes: int = 150_000
    # One loan disbursement by B2C (a loan payout): Safaricom's per-transaction limit,
    # KES 150,000 since CBK's approval of March 2020 (docs/loans/book.md). Above it, staff
    # disburse to savings.
    mpesa_loan_payout_max_kes: int = Field(default=150_000, ge=1)
    # "up_to_kes:fee_kes,..." ascending; an amount takes the fee of the first band it fits.
    mpesa_withdrawal_fee_tariff: str = "100:0,500:7,1000:13,1500:23,2500:33,3500:53,5000:57,7500:78,10000:90,15000:100,20000:105,35000:108,50000:108,70000:108"
    # Pending STK/B2C older than this are queried by the reconciliation job.
    mpesa_reconcile_after_minutes: int = 3
    # An STK push settled without a receipt (status query) and a paybill payment of the
    # same member and amount paid within this many minutes of it may be one payment: the
    # later of the two is parked in suspense for staff, not credited (docs/channels/mpesa.md).
    mpesa_twin_window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    # SIM-swap guard before a withdrawal (Africa's Talking Insights).
    sim_swap_window_days: int = 7
    sim_swap_on_check_failure: Literal["refuse", "allow", "refuse_above"] = "refuse_above"
    sim_swap_failure_allow_max_kes: int = 1_000  # with refuse_above: allowed up to this
    # Per member and Nairobi day, whatever the setting above: the most let through unverified.
    sim_swap_failure_daily_max_kes: int = Field(default=1_000, ge=0)
    # Short: a good verdict must not hide a swap made right after it (the fraud pattern).
    sim_swap_cache_seconds: int = 60
    at_insights_url: str = ""
    at_username: str = ""
    at_api_key: str = ""
    at_timeout_seconds: float = 5.0
    # Credit reference bureau (issue 15; docs/integrations/bureaus.md). Empty provider: no
    # bureau, scores use the SACCO's own record.
    bureau_provider: Literal["", "metropol", "transunion"] = ""
    bureau_url: str = ""  # Metropol: the API origin; TransUnion: the SOAP service address
    bureau_metropol_public_key: str = ""
    bureau_metropol_private_key: str = ""
    bureau_transunion_username: str = ""
    bureau_transunion_password: str = ""
    bureau_transunion_code: str = ""
    bureau_transunion_infinity_code: str = ""
    # A USSD hop must answer within the gateway's 15 s: keep the bureau's share short.
    bureau_timeout_seconds: float = Field(default=5.0, gt=0, le=10)
    bureau_cache_hours: int = Field(default=720, ge=0)  # 30 days: an answer reused this long
    # Staff back-office API (docs/api/index.md).
    api_cors_origins: str = Field(default="", description="comma-separated allowed origins")
    api_rate_limit: str = "300/minute"
    api_login_rate_limit: str = "10/minute"
    # Failed sign-ins per username from any address (unknown names alike); no lock-out.
    api_login_name_rate_limit: str = "5 per 15 minutes"
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=12, ge=1)
    login_max_failures: int = Field(default=5, ge=1)  # wrong second factors (TOTP)
    login_lockout_minutes: int = Field(default=15, ge=1)
    # Maker-checker requests above this (whole KES) need a manager (approvals:decide_large).
    approval_manager_threshold_kes: int = Field(default=50_000, ge=0)
    # A teller's cash deposit above this (whole KES) waits for another person's approval.
    cash_deposit_till_limit_kes: int = Field(default=100_000, ge=0)
    # Savings with no member-initiated activity for this many months are marked dormant
    # (manage.py mark-dormant, and the scheduler): withdrawals wait for staff to reactivate.
    dormancy_months: int = Field(default=12, ge=1, le=120)
    # How many shards of each hot account (M-Pesa floats, suspense, fee income) new postings
    # spread over (docs/ledger/shards.md); 1 = unsharded. `manage.py ledger-shards` creates
    # the rows up to this number (migration 0040 creates 8).
    ledger_shards: int = Field(default=8, ge=1, le=99)
    document_dir: str = "var/documents"
    document_max_bytes: int = Field(default=1_500_000, ge=1000, le=1_900_000)

    # Africa's Talking SMS (demo/test defaults: the local stand-in on 127.0.0.1:8701).
    at_sender_id: str = ""
    at_base_url: str = ""
    at_sms_timeout_s: float = 10.0
    sms_callback_token: str = ""  # when set, /sms/* callbacks need ?token=<this>

    # Reverse proxies in front of gunicorn whose X-Forwarded-For/-Proto to trust (nginx: 1).
    # 0 trusts none: behind a proxy every client would then look like the proxy itself,
    # which breaks per-address login throttling and the audit log's "from where".
    trusted_proxy_hops: int = Field(default=0, ge=0, le=5)

    # gunicorn (deploy/gunicorn.conf.py reads these from this object too): bind address and
    # port, worker processes (the demo and development profiles always run one), threads each.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    web_concurrency: int = Field(default=4, ge=1)
    gunicorn_threads: int = Field(default=4, ge=1)

    # Background jobs (M-Pesa STK push, B2C, status queries) and their schedule.
    jobs_queue: str = "jobs"
    mpesa_reconcile_interval_s: float = Field(default=60.0, gt=0)
    # How often the scheduler runs close of day for the loan book (issue 13): each run closes
    # whatever dates are over and not closed yet, so yesterday is closed within this long
    # after midnight in Nairobi; a run with nothing to do costs one query.
    close_day_interval_s: float = Field(default=900.0, gt=0)
    # How often the scheduler accrues savings interest (issue 14; savings-accrue): each run
    # accrues whatever dates are over and not accrued yet, like close of day.
    savings_accrual_interval_s: float = Field(default=900.0, gt=0)
    # Close of day's notices (issue 13, part 6): the reminder of an instalment due in this
    # many days (besides the one on the due day), and the hour (Nairobi) before which no
    # reminder or notice is sent: a run after midnight queues them for the morning.
    notice_due_soon_days: int = Field(default=3, ge=1, le=30)
    notice_send_from_hour: int = Field(default=8, ge=0, le=23)
    # Credit-bureau listing hook (part 9): a loan is marked listable as negative information
    # when its arrears are above this many shillings (Banking (Credit Reference Bureau)
    # Regulations, 2020: nothing at or below KES 1,000) and this many days have passed since
    # the member's pre-listing notice (30 days' notice before negative information is sent).
    bureau_listing_threshold_kes: int = Field(default=1_000, ge=0)
    bureau_listing_notice_days: int = Field(default=30, ge=0, le=365)
    # Member exit (issue 14, part 3; docs/members/exit.md): the notice period and what
    # happens to share capital are the SACCO's by-laws' figures, not statutory ones (60 days
    # is issue 14's example; set these to what the registered by-laws say).
    exit_notice_days: int = Field(default=60, ge=0, le=365)
    exit_shares: Literal["refund", "transfer_required"] = "refund"

    # Outbox delivery (workers, retries, sweeper).
    outbox_queue: str = "outbox"
    outbox_max_attempts: int = Field(default=8, ge=1, le=50)
    outbox_backoff_base_s: float = Field(default=30.0, gt=0)
    outbox_backoff_max_s: float = Field(default=3600.0, gt=0)
    outbox_claim_timeout_s: float = Field(default=120.0, gt=0)
    outbox_sweep_interval_s: float = Field(default=5.0, gt=0)
    outbox_requeue_after_s: float = Field(default=300.0, gt=0)
    # A job RQ no longer holds (a worker killed between popping and starting it) is
    # enqueued again by the sweeper once its enqueue mark is this old (issue 17).
    outbox_lost_job_after_s: float = Field(default=10.0, ge=0)
    # A delivery report still matching no message after this long is set aside
    # (``unmatched_at``), so strangers never fill the sweeper's batch (issue 17).
    outbox_report_unmatched_after_s: float = Field(default=3600.0, gt=0)

    # Staff e-mail (SMTP). No SMTP_HOST: e-mails stay pending (visible) until one is set.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "sacco@localhost"
    smtp_starttls: bool = False
    smtp_timeout_s: float = 10.0

    # Partner webhooks.
    webhook_timeout_s: float = 10.0
    # Production refuses to deliver to loopback/private/link-local addresses unless this
    # is set (a partner on the SACCO's own network); demo and tests always allow them.
    webhook_allow_private_networks: bool = False

    @model_validator(mode="before")
    @classmethod
    def _refuse_renamed(cls, data: Any) -> Any:
        given = {str(name).upper() for name in data} if isinstance(data, dict) else set()
        given |= {name.upper() for name in os.environ}
        for old, (new, why) in RENAMED.items():
            if old in given:
                raise ValueError(f"{old} was renamed {new} ({why}): set {new} and remove {old}")
        return data

    @field_validator("metrics_allowed_networks")
    @classmethod
    def _networks_syntax(cls, value: str) -> str:
        import ipaddress

        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"METRICS_ALLOWED_NETWORKS: {part!r} is not a network like 10.20.0.0/24"
                ) from None
        return value

    @field_validator("ussd_rate_limit")
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"USSD_RATE_LIMIT {value!r} is not like 30/minute;300/day") from None
        return value

    @model_validator(mode="after")
    def _fill_and_check(self) -> Settings:
        if self.sacco_env in ("demo", "development") and "log_format" not in self.model_fields_set:
            object.__setattr__(self, "log_format", "text")
        if self.sacco_env != "production":
            for name, value in DEMO_SECRETS.items():
                if not getattr(self, name):
                    object.__setattr__(self, name, value)
            if not self.database_url:
                object.__setattr__(self, "database_url", "sqlite:///var/demo.db")
            for name, value in {**AT_STANDIN_DEFAULTS, **DEMO_MPESA}.items():
                if not getattr(self, name):
                    object.__setattr__(self, name, value)
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
        if self.mpesa_consumer_key:
            needed = ("mpesa_base_url", "mpesa_shortcode", "mpesa_callback_base_url")
            lacking = [n.upper() for n in (*MPESA_SECRETS, *needed) if not getattr(self, n)]
            if len(self.mpesa_callback_token) < GATEWAY_TOKEN_MIN:
                lacking.append(f"MPESA_CALLBACK_TOKEN ({GATEWAY_TOKEN_MIN}+ characters)")
            if lacking:
                raise ValueError(f"M-Pesa is configured but lacks {', '.join(lacking)}")
            if self.mpesa_callback_token == DEMO_MPESA["mpesa_callback_token"]:
                raise ValueError("MPESA_CALLBACK_TOKEN uses the demo-only value; generate one")
            if word := blocked_url_word(self.mpesa_callback_base_url):
                raise ValueError(
                    f"MPESA_CALLBACK_BASE_URL contains {word!r}: Daraja blocks callback URLs "
                    "containing M-Pesa or Safaricom in any spelling; use another host name"
                )
        if self.at_api_key == AT_STANDIN_DEFAULTS["at_api_key"]:
            raise ValueError("AT_API_KEY is the stand-in's key; set the real Africa's Talking key")
        refusals = self._production_refusals()
        if refusals:
            raise ValueError("production refuses to start: " + "; ".join(refusals))
        return self

    def _production_refusals(self) -> list[str]:
        """What a production deployment lacks for its gateways and serving, each refusal
        naming its variable (all at once, so one restart fixes them all)."""
        refusals: list[str] = []
        for name, what in (("ussd_callback_token", "/ussd"), ("sms_callback_token", "/sms/*")):
            value = getattr(self, name)
            if value in _DEMO_VALUES:
                refusals.append(f"{name.upper()} uses a demo-only value; generate one")
            elif len(value) < GATEWAY_TOKEN_MIN:
                refusals.append(
                    f"{name.upper()} must be a secret of {GATEWAY_TOKEN_MIN}+ characters "
                    f"(the gateway's {what} callback URL carries it; without it anyone "
                    "can pose as the gateway)"
                )
        if not self.redis_url:
            refusals.append(
                "REDIS_URL is required (USSD sessions and rate limits must be shared by "
                "every worker)"
            )
        if "trusted_proxy_hops" not in self.model_fields_set:
            refusals.append(
                "TRUSTED_PROXY_HOPS must be set explicitly (1 behind deploy/nginx.conf, "
                "0 with nothing in front)"
            )
        if self.mpesa_consumer_key:
            if not self.mpesa_callback_base_url.startswith("https://"):
                refusals.append("MPESA_CALLBACK_BASE_URL must be an https:// origin")
            # Withdrawals ask the SIM-swap check first: without it every check fails.
            if not self.at_insights_url.startswith("https://"):
                refusals.append(
                    "AT_INSIGHTS_URL must be the SIM-swap provider's https:// URL "
                    "(M-Pesa withdrawals check for a recent SIM swap first)"
                )
            for name in ("at_username", "at_api_key"):
                if not getattr(self, name):
                    refusals.append(f"{name.upper()} is required for the SIM-swap check")
        return refusals

    # Money in cents, converted once here from the whole KES the environment holds.
    @property
    def approval_manager_threshold_cents(self) -> int:
        return _cents(self.approval_manager_threshold_kes)

    @property
    def bureau_listing_threshold_cents(self) -> int:
        return _cents(self.bureau_listing_threshold_kes)

    @property
    def cash_deposit_till_limit_cents(self) -> int:
        return _cents(self.cash_deposit_till_limit_kes)

    @property
    def mpesa_deposit_min_cents(self) -> int:
        return _cents(self.mpesa_deposit_min_kes)

    @property
    def mpesa_deposit_max_cents(self) -> int:
        return _cents(self.mpesa_deposit_max_kes)

    @property
    def mpesa_withdrawal_min_cents(self) -> int:
        return _cents(self.mpesa_withdrawal_min_kes)

    @property
    def mpesa_withdrawal_max_cents(self) -> int:
        return _cents(self.mpesa_withdrawal_max_kes)

    @property
    def mpesa_withdrawal_daily_max_cents(self) -> int:
        return _cents(self.mpesa_withdrawal_daily_max_kes)

    @property
    def mpesa_loan_payout_max_cents(self) -> int:
        return _cents(self.mpesa_loan_payout_max_kes)

    @property
    def sim_swap_failure_allow_max_cents(self) -> int:
        return _cents(self.sim_swap_failure_allow_max_kes)

    @property
    def sim_swap_failure_daily_max_cents(self) -> int:
        return _cents(self.sim_swap_failure_daily_max_kes)

    @property
    def bank_enabled(self) -> bool:
        return bool(self.bank_base_url and self.bank_callback_token)

    @property
    def bank_sweep_approval_above_cents(self) -> int:
        return _cents(self.bank_sweep_approval_above_kes)

    @property
    def bank_pesalink_max_cents(self) -> int:
        return _cents(self.bank_pesalink_max_kes)

    @property
    def bank_payout_min_cents(self) -> int:
        return _cents(self.bank_payout_min_kes)

    @property
    def mpesa_enabled(self) -> bool:
        return bool(self.mpesa_consumer_key and self.mpesa_callback_token)

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
