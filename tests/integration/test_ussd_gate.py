"""What a caller posing as the gateway can do on ``POST /ussd`` (issue 10, part 3): hops are
rate-limited per phone number, and nothing before the PIN reveals a member's money, name
or membership of a national ID. Real PostgreSQL and Redis, the gateway's exact form."""

from __future__ import annotations

from collections import deque

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app_factory import create_app
from config import SettingsError, load_settings
from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.savings import accounts as savings
from db.models import Member, OutboxMessage
from runtime import Runtime
from tests.settings import PG_URL, REDIS_URL
from tests.ussdutil import SERVICE_CODE, Phone, make_member
from ussd.menus import TREE
from ussd.screens import Choose, Confirm, Fork, Menu, Page, Prompt
from ussd.store import resume_key

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
    assert load_settings(sacco_env="test").ussd_rate_limit == "30/minute;300/day"
    with pytest.raises(SettingsError, match="USSD_RATE_LIMIT"):
        load_settings(sacco_env="test", ussd_rate_limit="lots")


# ------------------------------------------- nothing before the PIN reveals money

PIN_SCREEN = "CON Enter your PIN:"
# Typed by a caller who has the member's phone number but not the PIN: every menu choice,
# amounts below, above and far above the savings, confirm, and the navigation keys.
FORGED_INPUTS = ("1", "2", "3", "4", "5", "6", "150", "20000", "99999999", "0", "98")


@pytest.fixture
def rich_member(db_session: Session, deps: CoreDeps) -> Member:
    member = make_member(db_session, deps, name="Amina Wanjiru")
    for target, kes in (("savings", "12345.67"), ("deposits", "23456.78"), ("shares", "3456.89")):
        savings.credit_member(
            db_session,
            deps,
            savings.Credit(
                member_id=member.id,
                target=target,
                amount_cents=Money.of(kes).cents,
                source=savings.CreditSource.MPESA,
                idempotency_key=f"gate-{target}",
                business_key=f"deposit_received:gate-{target}",
            ),
        )
    return member


def secrets_of(member: Member) -> list[str]:
    """What a screen must not show before the PIN: the name, the member number, every
    balance (as the screens format them) and the words that come with a balance."""
    return [
        "Amina", "Wanjiru", str(member.member_number), "12,345", "23,456", "3,456",
        "available", "Not enough savings", "Daily limit", "left today", "Member no",
    ]  # fmt: skip


def walk_without_pin(
    client: FlaskClient, redis_client: redis_lib.Redis, msisdn: str, depth: int = 5
) -> dict[str, str]:
    """Every screen reachable by a caller who never types the PIN: breadth first over
    ``FORGED_INPUTS``, each new screen expanded once (a fresh dial replays its path; the
    "continue where you left off" offer the last walk left is dropped first: resuming is
    tested on its own). Returns the path typed (``6*150``) -> the screen it showed."""
    shown: dict[str, str] = {}
    expanded: set[str] = set()
    todo: deque[list[str]] = deque([[]])
    while todo:
        path = todo.popleft()
        redis_client.delete(f"ussd:{resume_key(msisdn)}")
        phone = Phone(client, msisdn)
        screen = phone.dial()
        for typed in path:
            screen = phone.send(typed)
        shown["*".join(path)] = screen
        if screen in expanded or screen.startswith("END ") or screen == PIN_SCREEN:
            continue  # a PIN screen is as far as a forger gets
        expanded.add(screen)
        if len(path) < depth:
            todo.extend([*path, typed] for typed in FORGED_INPUTS)
    return shown


def test_a_forged_caller_without_the_pin_learns_no_balance_name_or_number(
    client: FlaskClient,
    db_session: Session,
    rich_member: Member,
    redis_client: redis_lib.Redis,
) -> None:
    shown = walk_without_pin(client, redis_client, rich_member.msisdn)
    leaks = {
        path: screen
        for path, screen in shown.items()
        if any(secret in screen for secret in secrets_of(rich_member))
    }
    assert leaks == {}
    # The walk did reach every door: each of the six options is behind the PIN, except
    # Change PIN (which asks for the current one) and Deposit (which shows nothing owned).
    for option in ("1", "2", "3", "6"):
        assert shown[option] == PIN_SCREEN, option
    assert shown["5*150*1"].startswith("CON Deposit KES 150 to Savings\nFee: none")
    db_session.refresh(rich_member)
    assert rich_member.pin_failed_count == 0


def test_a_withdrawal_asks_the_pin_before_the_amount_and_refuses_with_the_balance_after(
    client: FlaskClient, rich_member: Member
) -> None:
    phone = Phone(client, rich_member.msisdn)
    phone.dial()
    assert phone.send("6") == PIN_SCREEN
    assert phone.send("4826") == "CON Withdraw savings to M-Pesa. Enter amount in KES:"
    assert phone.send("20000").startswith(
        "CON Not enough savings: KES 12,345.67 available, fee included.\n"
    )
    assert phone.send("1000").startswith("CON Withdraw KES 1,000\nFee: KES 13\n")


def test_my_account_is_behind_the_pin(client: FlaskClient, rich_member: Member) -> None:
    phone = Phone(client, rich_member.msisdn)
    phone.dial()
    assert phone.send("3") == PIN_SCREEN
    assert phone.send("4826").startswith(
        f"CON Member no {rich_member.member_number}\nAmina Wanjiru\nStatus: Active\n"
    )


def test_a_resumed_withdrawal_asks_the_pin_again_before_the_quote(
    client: FlaskClient, rich_member: Member
) -> None:
    member = Phone(client, rich_member.msisdn)
    member.dial()
    for typed in ("6", "4826", "1000"):
        member.send(typed)
    assert member.last.startswith("CON Withdraw KES 1,000\n")
    member.hang_up("Incomplete")  # the real member's call drops at the confirmation
    forger = Phone(client, rich_member.msisdn)
    assert forger.dial().startswith("CON You did not finish last time.")
    assert forger.send("1") == PIN_SCREEN
    assert forger.send("4826").startswith("CON Withdraw KES 1,000\nFee: KES 13\n")


def test_every_screen_that_loads_member_data_needs_the_pin() -> None:
    # Loaders that read what a member owns or who they are; a new one belongs here.
    revealing = {"balances", "statement", "account", "withdraw_quote"}
    revealing |= {  # loans: limits, amounts owed, names of borrowers and guarantors
        "loan_limits", "loan_products", "loan_product", "loan_amount", "loan_quote",
        "guarantor_need", "guarantor_check", "guarantor_quote", "guarantee_requests",
        "guarantee_request", "my_loans", "my_loan",
    }  # fmt: skip
    unguarded = [
        sid
        for sid, scr in TREE.screens.items()
        if isinstance(scr, Menu | Page | Prompt | Confirm | Choose | Fork)
        and ({scr.load, getattr(scr, "check", None)} & revealing)
        and not scr.needs_pin
    ]
    assert unguarded == []


# --------------------------------------- registration never confirms an ID on file

REGISTERED_EN = (
    "END Thank you. If these details are right, we will SMS your member number. "
    "No SMS within an hour? Call 0700 000 000."
)


def register(client: FlaskClient, msisdn: str, national_id: str) -> str:
    phone = Phone(client, msisdn)
    phone.dial()
    for typed in ("1", "Wanjiru Kamau", national_id, "1", "4826"):
        phone.send(typed)
    return phone.send("4826")


def sms_to(db_session: Session, msisdn: str) -> list[OutboxMessage]:
    return list(db_session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == msisdn)))


def test_registering_an_id_on_file_looks_like_any_registration_and_tells_its_owner(
    client: FlaskClient, db_session: Session, rich_member: Member
) -> None:
    fresh = register(client, "+254798765432", "12345678")
    forged = register(client, "+254798765433", "23456781")  # rich_member's national ID
    assert fresh == forged == REGISTERED_EN
    assert db_session.scalar(select(Member).where(Member.msisdn == "+254798765433")) is None
    assert sms_to(db_session, "+254798765433") == []  # the caller learns nothing by SMS either
    [welcome] = sms_to(db_session, "+254798765432")
    assert welcome.template == "member_registered"
    # The ID's owner hears of it on the phone on file (once a day, however often it is tried).
    register(client, "+254798765434", "23456781")
    alerts = [  # beside what its setup sent (the welcome, the receipts of its deposits)
        m
        for m in sms_to(db_session, rich_member.msisdn)
        if m.template not in ("member_registered", "deposit_received")
    ]
    assert [m.template for m in alerts] == ["registration_attempt"]
    assert "+2547*****433" in alerts[0].body and "ID number" in alerts[0].body


def test_registration_in_swahili_gives_the_same_neutral_answer(
    client: FlaskClient, db_session: Session, rich_member: Member
) -> None:
    phone = Phone(client, "+254798765432")
    phone.dial()
    for typed in ("2", "Wanjiru Kamau", "23456781", "1", "4826"):
        phone.send(typed)
    assert phone.send("4826") == (
        "END Asante. Kama taarifa hizi ni sahihi, tutakutumia SMS yenye nambari yako ya "
        "uanachama. Hukupata SMS ndani ya saa moja? Piga 0700 000 000."
    )
