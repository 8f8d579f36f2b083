"""The USSD channel through a real gunicorn process with production settings, over HTTP.

gunicorn runs ``wsgi:app`` with ``SACCO_ENV=production`` (fresh random secrets, a
callback token), the test PostgreSQL database and Redis db. Every request is
the Africa's Talking gateway's exact form (``tests/e2e/gateway.py``). The
database is migrated by the operator's command first; the committed rows are
wiped back to the migrated seed after the module.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis as redis_lib
import requests
from sqlalchemy import Engine, func, select

from config import load_settings
from core.kernel.money import Money
from core.members import registration as members_core
from core.messaging.notifications import messages_for
from core.savings import accounts as savings
from db.models import Member
from db.session import make_session_factory
from runtime import build_runtime
from tests.e2e.gateway import GatewayPhone
from tests.e2e.servers import flush_redis, gunicorn, production_env, run_manage
from tests.settings import REDIS_URL
from ussd.store import session_key

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Server:
    base: str
    env: dict[str, str]
    token: str


@pytest.fixture(scope="module")
def server(pg_engine: Engine) -> Iterator[Server]:
    """gunicorn with production settings on the (already migrated) test database."""
    token = secrets.token_urlsafe(24)
    env = production_env(token, trusted_proxy_hops=0)  # the test talks to gunicorn directly
    pg_engine.info_snapshot.restore()  # type: ignore[attr-defined]
    flush_redis(REDIS_URL)
    run_manage(["migrate"], env)  # the operator's step; a no-op on an up-to-date schema
    try:
        with gunicorn(env) as base:
            yield Server(base, env, token)
    finally:
        flush_redis(REDIS_URL)
        pg_engine.info_snapshot.restore()  # type: ignore[attr-defined]


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def phone(server: Server, http: requests.Session, msisdn: str) -> GatewayPhone:
    return GatewayPhone(http, server.base, msisdn, path=f"/ussd?token={server.token}")


def seed_member(
    server: Server, msisdn: str, name: str, national_id: str, pin: str, deposits_kes: list[int]
) -> str:
    """A member as the back office leaves one: active, with a PIN and deposits (via core/)."""
    runtime = build_runtime(load_settings(**{k.lower(): v for k, v in server.env.items()}))
    try:
        with runtime.unit_of_work() as session:
            member = members_core.register_member(
                session,
                runtime.deps,
                full_name=name,
                msisdn=msisdn,
                national_id=national_id,
                consent=True,
                pin=pin,
            )
            members_core.set_status(session, member.id, "active")
            targets = ["savings", "deposits", "shares"]
            for i, kes in enumerate(deposits_kes):
                savings.credit_member(
                    session,
                    runtime.deps,
                    savings.Credit(
                        member_id=member.id,
                        target=targets[i % 3],
                        amount_cents=Money.of(kes).cents,
                        source=savings.CreditSource.MPESA,
                        idempotency_key=f"e2e-{msisdn}-{i}",
                        business_key=f"deposit_received:e2e-{msisdn}-{i}",
                        memo="M-Pesa deposit",
                    ),
                )
            return str(member.member_number)
    finally:
        runtime.engine.dispose()
        if runtime.redis is not None:
            runtime.redis.close()


def register(p: GatewayPhone, name: str, national_id: str, pin: str) -> str:
    assert "Choose language" in p.dial()
    assert "full name" in p.send("1")
    assert "national ID" in p.send(name)
    assert "1. I agree" in p.send(national_id)
    assert "Choose a 4-digit PIN" in p.send("1")
    assert "PIN again" in p.send(pin)
    return p.send(pin)


def test_the_gateway_must_present_the_callback_token(
    server: Server, http: requests.Session
) -> None:
    form = {
        "sessionId": "ATUid_x",
        "serviceCode": "*384*44135#",
        "phoneNumber": "+254712000001",
        "networkCode": "63902",
        "text": "",
    }
    assert http.post(f"{server.base}/ussd", data=form, timeout=15).status_code == 403
    assert http.post(f"{server.base}/ussd?token=wrong", data=form, timeout=15).status_code == 403
    ok = http.post(f"{server.base}/ussd?token={server.token}", data=form, timeout=15)
    assert ok.status_code == 200 and ok.text.startswith("CON ")
    assert http.get(f"{server.base}/simulator", timeout=15).status_code == 404


def test_a_new_phone_registers_and_gets_a_member_number_and_an_sms(
    server: Server, http: requests.Session, pg_engine: Engine
) -> None:
    p = phone(server, http, "+254701000001")
    done = register(p, "Grace Wairimu", "28765432", "4713")
    assert p.ended
    # The screen is the same whether or not the ID was on file: the number comes by SMS.
    assert "we will SMS your member number" in done

    with make_session_factory(pg_engine)() as session:
        sms = messages_for(session, "+254701000001")
        count = session.scalar(
            select(func.count()).select_from(Member).where(Member.msisdn == "+254701000001")
        )
    assert count == 1
    assert [m.template for m in sms] == ["member_registered"]
    number = re.search(r"member number is (\d+)", sms[0].body)
    assert number and "Grace" in sms[0].body

    menu = p.dial()  # the next dial knows the member
    assert "1. Check balances" in menu
    assert "KYC pending" in menu


def test_the_pin_set_at_registration_works_and_three_wrong_ones_lock_it(
    server: Server, http: requests.Session
) -> None:
    p = phone(server, http, "+254701000002")
    register(p, "Peter Mutua", "28765433", "5829")

    p.dial()
    assert "Enter your PIN" in p.send("1")
    assert "Savings KES 0" in p.send("5829")

    p.dial()
    assert "Enter your PIN" in p.send("1")
    assert "Wrong PIN. 2 tries left." in p.send("1111")
    assert "Wrong PIN. 1 tries left." in p.send("2222")
    locked = p.send("3333")
    assert p.ended and "PIN locked for 30 min" in locked

    p.dial()  # locked even with the right PIN now
    p.send("1")
    assert "PIN locked" in p.send("5829")
    assert p.ended


def test_a_member_changes_the_pin_and_only_the_new_one_opens_balances(
    server: Server, http: requests.Session
) -> None:
    seed_member(server, "+254701000003", "Ruth Nyambura", "28765434", "4826", [700])
    p = phone(server, http, "+254701000003")
    p.dial()
    assert "current PIN" in p.send("4")
    assert "new 4-digit PIN" in p.send("4826")
    assert "PIN again" in p.send("5937")
    assert "PIN changed" in p.send("5937")
    assert p.ended

    p.dial()
    p.send("1")
    assert "Wrong PIN" in p.send("4826")
    assert "Savings KES 700" in p.send("5937")


def test_balances_show_every_account_after_the_pin(server: Server, http: requests.Session) -> None:
    seed_member(server, "+254701000004", "James Kariuki", "28765435", "4826", [5000, 20000, 1500])
    p = phone(server, http, "+254701000004")
    p.dial()
    assert "Enter your PIN" in p.send("1")
    balances = p.send("4826")
    assert not p.ended
    assert "Savings KES 5,000" in balances
    assert "Deposits KES 20,000" in balances
    assert "Shares KES 1,500" in balances
    assert "Loans owed" not in balances  # no loan account, no loans line
    assert len("CON " + balances) <= 160


def test_the_statement_pages_with_98_and_back_and_home_return_to_the_menu(
    server: Server, http: requests.Session
) -> None:
    seed_member(
        server, "+254701000005", "Lucy Achieng", "28765436", "4826", [100, 200, 300, 400, 500, 600]
    )
    p = phone(server, http, "+254701000005")
    p.dial()
    p.send("2")
    first = p.send("4826")
    assert "Statement (KES) 1/3" in first and "98 More" in first
    assert "+600" in first and "+500" in first  # newest first
    second = p.send("98")
    assert "2/3" in second and "+400" in second and "+300" in second
    third = p.send("98")
    assert "3/3" in third and "+200" in third and "98 More" not in third
    assert "+100" not in third  # the mini statement is the last 5 movements
    assert "1. Check balances" in p.send("0")

    assert "Member no" in p.send("3")  # the PIN is asked once per session: not again
    assert "Choose language" in p.send("1")
    assert "1. Check balances" in p.send("00")  # home from two levels down
    assert "Savings KES" in p.send("1")  # balances without a second PIN


def test_the_language_switch_changes_every_later_screen(
    server: Server, http: requests.Session
) -> None:
    seed_member(server, "+254701000006", "Hassan Omar", "28765437", "4826", [1000])
    p = phone(server, http, "+254701000006")
    p.dial()
    assert "Enter your PIN" in p.send("3")  # My account shows the name: behind the PIN
    assert "1. Change language" in p.send("4826")
    p.send("1")
    assert "Lugha imewekwa: Kiswahili." in p.send("2")
    assert p.ended

    menu = p.dial()
    assert "1. Angalia salio" in menu
    assert "Andika PIN yako" in p.send("1")
    assert "Akiba KES 1,000" in p.send("4826")


def test_a_dropped_registration_resumes_with_nothing_lost_and_nothing_twice(
    server: Server, http: requests.Session, pg_engine: Engine
) -> None:
    p = phone(server, http, "+254701000007")
    p.dial()
    p.send("1")
    p.send("Daniel Kiptoo")
    assert "1. I agree" in p.send("28765438")
    p.hang_up()  # the network drops: the gateway reports Incomplete

    offer = p.dial()
    assert "Continue where you left off?" in offer
    assert "1. I agree" in p.send("1")  # name and ID kept
    p.send("1")
    p.send("6041")
    done = p.send("6041")
    assert "we will SMS your member number" in done

    with make_session_factory(pg_engine)() as session:
        member = session.scalars(select(Member).where(Member.msisdn == "+254701000007")).one()
        sms = messages_for(session, "+254701000007")
    assert member.full_name == "Daniel Kiptoo"
    assert len(sms) == 1
    assert "Choose language" not in p.dial() and "Continue" not in p.screen  # no offer left


def test_expired_session_state_replays_menu_choices_but_never_the_pin(
    server: Server, http: requests.Session
) -> None:
    seed_member(server, "+254701000008", "Mercy Chebet", "28765439", "4826", [2500])
    p = phone(server, http, "+254701000008")
    p.dial()
    p.send("1")
    assert "Savings KES 2,500" in p.send("4826")

    client = redis_lib.Redis.from_url(REDIS_URL)
    try:
        assert p.dial_ is not None
        key = "ussd:" + session_key(p.dial_.session_id)
        assert client.pexpire(key, 1)  # the state's TTL runs out
        deadline = time.monotonic() + 10
        while client.exists(key) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not client.exists(key)
    finally:
        client.close()

    # The gateway still sends the whole text "1*4826*0": the balances choice is
    # replayed, the PIN inside text is not: the member is asked again.
    assert "Enter your PIN" in p.send("0")
    assert not p.ended
    assert "Savings KES 2,500" in p.send("4826")
