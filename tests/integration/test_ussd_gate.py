"""What a caller posing as the gateway can do on ``POST /ussd`` (issue 10, part 3): hops are
rate-limited per phone number, and nothing before the PIN reveals a member's money, name
or membership of a national ID. Real PostgreSQL and Redis, the gateway's exact form."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app_factory import create_app
from config import load_settings
from core.deps import CoreDeps
from core.runtime import Runtime
from db.models import Member
from tests.settings import PG_URL, REDIS_URL
from tests.ussdutil import SERVICE_CODE, Phone, make_member

TOO_FAST_EN = (
    "END Too many requests from this phone. Please wait a few minutes, then dial again. "
    "Help: 0700 000 000."
)


def limited_app(runtime: Runtime, limit: str, **more: object) -> Flask:
    settings = load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL, ussd_rate_limit=limit, **more
    )
    app = create_app(settings, runtime)
    app.config["TESTING"] = True
    return app


# ----------------------------------------------------------- rate limit per phone


def test_hops_over_the_limit_get_a_polite_end_with_200_and_other_phones_are_served(
    runtime: Runtime, db_session: Session, deps: CoreDeps
) -> None:
    amina = make_member(db_session, deps)
    client = limited_app(runtime, "3/minute").test_client()
    phone = Phone(client, amina.msisdn)
    assert phone.dial().startswith("CON Umoja SACCO")
    phone.send("1")
    assert phone.send("1111") == "CON Wrong PIN. 2 tries left.\nEnter your PIN:"
    # The fourth hop within the minute: no screen, no PIN check, a polite END (HTTP 200:
    # the gateway shows only 200 answers).
    assert phone.send("2222") == TOO_FAST_EN
    db_session.refresh(amina)
    assert amina.pin_failed_count == 1  # the throttled PIN never reached core
    # The same number written another way shares the budget; another phone has its own.
    assert Phone(client, "0712000001").dial() == TOO_FAST_EN
    assert Phone(client, "+254798765432").dial().startswith("CON Welcome to Umoja SACCO")


def test_the_throttled_answer_speaks_the_sessions_language(
    runtime: Runtime, db_session: Session, deps: CoreDeps
) -> None:
    juma = make_member(db_session, deps, language="sw")
    client = limited_app(runtime, "2/minute").test_client()
    phone = Phone(client, juma.msisdn)
    phone.dial()
    phone.send("1")
    assert phone.send("4826") == (
        "END Maombi mengi mno kutoka simu hii. Tafadhali subiri dakika chache, kisha upige "
        "tena. Msaada: 0700 000 000."
    )


def test_forged_hops_with_a_wrong_token_do_not_spend_the_members_budget(
    runtime: Runtime, db_session: Session, deps: CoreDeps
) -> None:
    amina = make_member(db_session, deps)
    client = limited_app(runtime, "2/minute", ussd_callback_token="t" * 32).test_client()
    form = {"sessionId": "f1", "phoneNumber": amina.msisdn, "serviceCode": SERVICE_CODE}
    for _ in range(5):
        assert client.post("/ussd?token=wrong", data={**form, "text": ""}).status_code == 403
    real = Phone(client, amina.msisdn, path=f"/ussd?token={'t' * 32}")
    assert real.dial().startswith("CON Umoja SACCO")
    assert real.send("1") == "CON Enter your PIN:"
    assert real.send("4826") == TOO_FAST_EN


def test_the_limit_is_a_setting_checked_at_start_up() -> None:
    import pytest

    from config import SettingsError

    assert load_settings(sacco_env="test").ussd_rate_limit == "30/minute;300/day"
    with pytest.raises(SettingsError, match="USSD_RATE_LIMIT"):
        load_settings(sacco_env="test", ussd_rate_limit="lots")


def _member(db_session: Session, msisdn: str) -> Member | None:
    from sqlalchemy import select

    return db_session.scalar(select(Member).where(Member.msisdn == msisdn))
