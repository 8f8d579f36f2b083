"""USSD through the Flask test client with the gateway's exact form fields, on the
real PostgreSQL and the real Redis session store."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select
from sqlalchemy.orm import Session

from app_factory import create_app
from config import load_settings
from core.kernel.deps import CoreDeps
from core.kernel.money import Money, format_cents
from core.ledger import entries as ledger
from core.ledger import statements
from core.ledger.vocabulary import EntryKind
from core.members import registration as members
from core.savings import accounts as savings
from db.base import utcnow
from db.models import Member, OutboxMessage, UssdSessionEvent
from runtime import Runtime
from tests.settings import PG_URL, REDIS_URL
from tests.ussdutil import SERVICE_CODE, Phone, make_member

NEW_PHONE = "+254798765432"
REGISTERED_EN = (
    "END Thank you. If these details are right, we will SMS your member number. "
    "No SMS within an hour? Call 0700 000 000."
)
MAIN_EN = (
    "CON Umoja SACCO\n1. Check balances\n2. Mini statement\n3. My account\n4. Change PIN\n"
    "5. Deposit\n6. Withdraw\n98 More"  # 7. Loans on the next page
)


@pytest.fixture
def amina(db_session: Session, deps: CoreDeps) -> Member:
    return make_member(db_session, deps)


def deposit(
    session: Session, deps: CoreDeps, member: Member, target: str, kes: str, key: str
) -> None:
    savings.credit_member(
        session,
        deps,
        savings.Credit(
            member_id=member.id,
            target=target,
            amount_cents=Money.of(kes).cents,
            source=savings.CreditSource.MPESA,
            idempotency_key=key,
            business_key=f"deposit_received:{key}",
        ),
    )


# ------------------------------------------------------------ registration


def test_registration_end_to_end(client: FlaskClient, db_session: Session, deps: CoreDeps) -> None:
    phone = Phone(client, NEW_PHONE)
    assert phone.dial() == "CON Welcome to Umoja SACCO. Choose language:\n1. English\n2. Kiswahili"
    assert phone.send("1").startswith("CON Register (1/4). Enter your full name")
    assert phone.send("Wanjiru Kamau").startswith("CON Register (2/4)")
    consent = phone.send("12345678")
    assert "Terms: umoja.example/terms or SMS TERMS to 22384." in consent
    assert consent.endswith("1. I agree\n2. I disagree\n0 Back 00 Home")
    assert phone.send("1").startswith("CON Register (4/4). Choose a 4-digit PIN")
    assert phone.send("4826") == "CON Enter the PIN again:"
    done = phone.send("4826")
    member = db_session.scalar(select(Member).where(Member.msisdn == NEW_PHONE))
    assert member is not None
    # The same answer as for an ID already on file (tests/integration/test_ussd_gate.py):
    # the member number comes by SMS, to the phone that registered.
    assert done == REGISTERED_EN
    assert member.status == "pending_kyc" and member.full_name == "Wanjiru Kamau"
    assert members.national_id_of(deps, member) == "12345678"
    sms = db_session.scalars(
        select(OutboxMessage).where(OutboxMessage.recipient == NEW_PHONE)
    ).all()
    assert [(m.template, m.status) for m in sms] == [("member_registered", "pending")]
    assert f"Your member number is {member.member_number}." in sms[0].body
    members.verify_pin(db_session, deps, member.id, "4826")  # the PIN typed is the PIN set
    # the next dial is a member's
    assert Phone(client, NEW_PHONE).dial().startswith("CON Umoja SACCO\nKYC pending")


def test_registration_in_swahili_refuses_bad_input_with_a_reason(
    client: FlaskClient, db_session: Session
) -> None:
    phone = Phone(client, NEW_PHONE)
    phone.dial()
    assert phone.send("2").startswith("CON Usajili (1/4). Andika jina lako kamili")
    assert phone.send("W4nj1ru").startswith(
        "CON Andika jina la kwanza na la mwisho kwa herufi.\nUsajili (1/4)"
    )
    phone.send("Wanjiru Kamau")
    assert phone.send("12ab").startswith("CON Kitambulisho ni tarakimu 6-9.\nUsajili (2/4)")
    phone.send("12345678")
    phone.send("1")
    assert phone.send("1990").startswith("CON Inafanana na mwaka: chagua nyingine.\nUsajili (4/4)")
    assert phone.send("4826") == "CON Andika PIN tena:"
    assert phone.send("4862").startswith("CON PIN hazikulingana. Jaribu tena.\nUsajili (4/4)")
    phone.send("4826")
    assert phone.send("4826").startswith("END Asante. Kama taarifa hizi ni sahihi")
    member = db_session.scalar(select(Member).where(Member.msisdn == NEW_PHONE))
    assert member is not None and member.language == "sw"


def test_declining_consent_registers_nobody(client: FlaskClient, db_session: Session) -> None:
    phone = Phone(client, NEW_PHONE)
    for value in ("", "1", "Wanjiru Kamau", "12345678"):
        phone.send(value) if value else phone.dial()
    assert phone.send("2") == "END You must agree to the terms to register. Dial again any time."
    assert db_session.scalar(select(Member).where(Member.msisdn == NEW_PHONE)) is None


def test_registering_an_id_already_on_file_registers_nobody_and_says_nothing_of_it(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    phone = Phone(client, NEW_PHONE)
    phone.dial()
    for value in ("1", "Wanjiru Kamau", "23456781", "1", "4826", "4826"):
        phone.send(value)
    assert phone.last == REGISTERED_EN  # as for a new member: whose ID is on file stays secret
    assert db_session.scalar(select(Member).where(Member.msisdn == NEW_PHONE)) is None


# --------------------------------------------------------- balances & PIN


def test_balances_match_the_ledger_and_the_pin_is_asked_once(
    client: FlaskClient, db_session: Session, deps: CoreDeps, amina: Member
) -> None:
    deposit(db_session, deps, amina, "savings", "9999999.99", "d1")
    deposit(db_session, deps, amina, "deposits", "20000", "d2")
    deposit(db_session, deps, amina, "shares", "1500.50", "d3")
    accounts = members.member_account_ids(db_session, amina.id)
    phone = Phone(client, amina.msisdn)
    assert phone.dial() == MAIN_EN
    assert phone.send("1") == "CON Enter your PIN:"
    shown = phone.send("4826")
    expected = {
        p: format_cents(ledger.get_balance(db_session, accounts[p]).balance_cents)
        for p in ("savings", "deposits", "shares")
    }
    assert shown == (  # no loan account: no "Loans owed" line
        f"CON Savings {expected['savings']}\nAvailable {expected['savings']}\n"
        f"Deposits {expected['deposits']}\nShares {expected['shares']}\n"
        "0 Back 00 Home"
    )
    assert expected["savings"] == "KES 9,999,999.99"
    assert phone.send("0") == MAIN_EN
    assert phone.send("2").startswith("CON Statement (KES) 1/2")  # no second PIN


def open_loan(session: Session, member: Member, owed_cents: int, n: int = 0) -> None:
    """A loan account with ``owed_cents`` disbursed (as the loans work will post it)."""
    loan = ledger.create_account(
        session,
        code=f"LN-{member.member_number}-{n}",
        name="Loan",
        type_="asset",
        purpose=statements.LOAN_PURPOSE,
        no_overdraft=False,
        member_id=member.id,
        now=utcnow(),
    )
    if owed_cents:
        ledger.post_entry(
            session,
            # No loan entry kinds exist until the loans issue: a manual adjustment moves the
            # money the way a disbursement will (the balances screen reads only balances).
            kind=EntryKind.ADJUSTMENT_MANUAL,
            legs=[
                ledger.Leg(loan.id, owed_cents),
                ledger.Leg(ledger.account_id_by_code(session, "1020"), -owed_cents),
            ],
            idempotency_key=f"loan-{member.id}-{n}",
            now=utcnow(),
        )
    session.commit()


def balances_screen(client: FlaskClient, member: Member) -> str:
    phone = Phone(client, member.msisdn)
    phone.dial()
    phone.send("1")
    return phone.send("4826")


def test_the_loans_line_shows_only_for_a_member_with_a_loan_account(
    client: FlaskClient, db_session: Session, deps: CoreDeps, amina: Member
) -> None:
    assert "Loans" not in balances_screen(client, amina)
    open_loan(db_session, amina, 500_000, 0)
    open_loan(db_session, amina, 250_050, 1)
    assert balances_screen(client, amina) == (
        "CON Savings KES 0\nAvailable KES 0\nDeposits KES 0\nShares KES 0\n"
        "Loans owed KES 7,500.50\n0 Back 00 Home"
    )
    juma = make_member(
        db_session, deps, msisdn="+254722000002", national_id="34567812", language="sw"
    )
    assert "mkopo" not in balances_screen(client, juma)
    open_loan(db_session, juma, 0)  # a loan account repaid (or not yet paid out): KES 0
    assert balances_screen(client, juma).endswith(
        "Hisa KES 0\nDeni la mkopo KES 0\n0 Rudi 00 Mwanzo"
    )


def test_wrong_pins_count_down_then_lock_with_help(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send("1")
    assert phone.send("1111") == "CON Wrong PIN. 2 tries left.\nEnter your PIN:"
    assert phone.send("12") == "CON PIN must be 4 digits.\nEnter your PIN:"  # not counted by core
    assert phone.send("2222") == "CON Wrong PIN. 1 tries left.\nEnter your PIN:"
    assert phone.send("3333") == (
        "END Wrong PIN too many times. PIN locked for 30 min. Help: 0700 000 000."
    )
    db_session.refresh(amina)
    assert amina.pin_locked_until is not None
    # even the right PIN is refused while locked
    again = Phone(client, amina.msisdn)
    again.dial()
    again.send("1")
    assert again.send("4826").startswith("END Wrong PIN too many times. PIN locked for ")


def test_a_second_lockout_blocks_until_the_sacco_resets(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    amina.pin_lockouts = 1  # an earlier lockout that expired
    amina.pin_locked_until = amina.created_at - timedelta(hours=1)
    db_session.commit()
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send("1")
    for pin in ("1111", "2222", "3333"):
        phone.send(pin)
    assert phone.last == (
        "END Your PIN is blocked. Visit the SACCO office or call 0700 000 000 to reset it."
    )


def test_a_member_without_a_pin_is_sent_to_the_office(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    member = make_member(db_session, deps, pin=None)
    phone = Phone(client, member.msisdn)
    phone.dial()
    phone.send("1")
    assert phone.send("4826") == (
        "END You have no PIN yet. Visit the SACCO office or call 0700 000 000."
    )


def test_change_pin(
    client: FlaskClient, db_session: Session, deps: CoreDeps, amina: Member
) -> None:
    phone = Phone(client, amina.msisdn)
    phone.dial()
    assert phone.send("4") == "CON Enter your current PIN:"
    phone.send("1111")
    phone.send("5937")
    assert phone.send("5937") == "CON Wrong PIN. 2 tries left.\nEnter your current PIN:"
    phone.send("4826")
    phone.send("4826")  # new PIN = old PIN: core refuses it when the change runs
    assert phone.send("4826") == "CON PIN refused. Choose another.\nEnter a new 4-digit PIN:"
    phone.send("5937")
    assert phone.send("5937") == "END PIN changed. Use the new PIN from now on."
    db_session.expire_all()  # the app changed the row through its own session
    members.verify_pin(db_session, deps, amina.id, "5937")


# ------------------------------------------------------------- PIN reset

RESET_CODE_EN = "CON Enter the reset code from our SMS:"
RESET_DEAD_EN = "END This reset code no longer works. Call 0700 000 000 to get a new one."


def start_reset(session: Session, deps: CoreDeps, member: Member, key: str = "pr1") -> str:
    """Staff approve a PIN reset; the code is only in the queued SMS: read it there."""
    members.start_pin_reset(session, deps, member.id, business_key=f"pin_reset:{key}")
    session.commit()
    sms = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.member_id == member.id, OutboxMessage.template == "pin_reset_code")
        .order_by(OutboxMessage.id.desc())
    ).first()
    assert sms is not None
    found = re.search(r"\b(\d{6})\b", sms.body)  # en and sw
    assert found is not None, sms.body
    return found.group(1)


def stored_values(redis_client: redis_lib.Redis) -> str:
    return " ".join(
        str(redis_client.get(k))
        for k in redis_client.scan_iter()
        if redis_client.type(k) == b"string"
    )


def test_pin_reset_sets_a_new_pin_on_the_next_dial(
    client: FlaskClient,
    db_session: Session,
    deps: CoreDeps,
    amina: Member,
    redis_client: redis_lib.Redis,
) -> None:
    code = start_reset(db_session, deps, amina)
    phone = Phone(client, amina.msisdn)
    assert phone.dial() == RESET_CODE_EN  # instead of the main menu
    assert phone.send("12345") == "CON The code has 6 digits.\n" + RESET_CODE_EN[4:]
    assert phone.send(code) == "CON Enter a new 4-digit PIN:"
    stored = stored_values(redis_client)
    assert "pr_new" in stored and code not in stored  # kept as its place in the text only
    assert phone.send("00") == RESET_CODE_EN  # home is the reset, not the main menu
    phone.send(code)
    assert phone.send("1234") == "CON Too easy: not 1234 or 9876.\nEnter a new 4-digit PIN:"
    assert phone.send("5937") == "CON Enter the PIN again:"
    assert phone.send("5938") == "CON PINs did not match. Try again.\nEnter a new 4-digit PIN:"
    phone.send("5937")
    assert phone.send("5937") == "END PIN changed. Dial again to use it."
    db_session.expire_all()
    assert amina.pin_reset_hash is None and amina.pin_reset_attempts == 0
    # the next dial is the main menu; the old PIN is refused, the new one works
    again = Phone(client, amina.msisdn)
    assert again.dial() == MAIN_EN
    again.send("1")
    assert again.send("4826") == "CON Wrong PIN. 2 tries left.\nEnter your PIN:"
    assert again.send("5937").startswith("CON Savings KES 0\n")


def test_a_wrong_reset_code_counts_and_the_fifth_kills_it(
    client: FlaskClient, db_session: Session, deps: CoreDeps, amina: Member
) -> None:
    code = start_reset(db_session, deps, amina)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    phone = Phone(client, amina.msisdn)
    phone.dial()
    for left in (4, 3):
        phone.send(wrong)
        phone.send("5937")
        assert phone.send("5937") == f"CON Wrong code. {left} tries left.\n" + RESET_CODE_EN[4:]
    phone = Phone(client, amina.msisdn)  # the count survives a new dial
    assert phone.dial() == RESET_CODE_EN
    for left in (2, 1):
        phone.send(wrong)
        phone.send("5937")
        assert phone.send("5937") == f"CON Wrong code. {left} tries left.\n" + RESET_CODE_EN[4:]
    phone.send(wrong)
    phone.send("5937")
    assert phone.send("5937") == RESET_DEAD_EN
    db_session.expire_all()
    assert amina.pin_reset_hash is None
    # the right code is worthless now: the next dial is the main menu, the old PIN stays
    again = Phone(client, amina.msisdn)
    assert again.dial() == MAIN_EN
    again.send("1")
    assert again.send("4826").startswith("CON Savings ")


def test_a_reset_that_expires_mid_flow_sends_to_the_office(
    client: FlaskClient, db_session: Session, deps: CoreDeps, amina: Member
) -> None:
    code = start_reset(db_session, deps, amina)
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send(code)
    phone.send("5937")
    amina.pin_reset_expires_at = deps.now() - timedelta(seconds=1)
    db_session.commit()
    assert phone.send("5937") == RESET_DEAD_EN
    db_session.expire_all()
    members.verify_pin(db_session, deps, amina.id, "4826")  # the PIN did not change
    assert Phone(client, amina.msisdn).dial() == MAIN_EN  # an expired reset is no reset


def test_the_reset_screens_speak_the_members_language(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    juma = make_member(db_session, deps, language="sw", status="pending_kyc")
    code = start_reset(db_session, deps, juma)
    phone = Phone(client, juma.msisdn)
    assert phone.dial() == "CON Andika nambari ya kubadilisha PIN kutoka kwenye SMS yetu:"
    assert phone.send(code) == "CON Andika PIN mpya ya tarakimu 4:"
    phone.send("5937")
    assert phone.send("5937") == "END PIN imebadilishwa. Piga tena ili uitumie."
    db_session.expire_all()
    members.verify_pin(db_session, deps, juma.id, "5937")


# ------------------------------------------------------------- statement


def test_mini_statement_pages_with_98(
    client: FlaskClient, db_session: Session, deps: CoreDeps, amina: Member
) -> None:
    for i, kes in enumerate(("100", "200", "300", "400", "500", "600")):
        deposit(db_session, deps, amina, "savings", kes, f"s{i}")
    savings.transfer_own(
        db_session,
        deps,
        member_id=amina.id,
        from_purpose="savings",
        to_purpose="shares",
        amount=Money.of(50),
        idempotency_key="t1",
    )
    recent = statements.recent_movements(db_session, amina.id, limit=5)
    assert [m.amount_cents for m in recent] == [5000, -5000, 60000, 50000, 40000]
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send("2")
    page1 = phone.send("4826")
    day = recent[0].created_at.astimezone(statements_tz()).strftime("%d/%m")
    assert page1 == (
        f"CON Statement (KES) 1/3\n{day} Shares Transfer +50\n{day} Savings Transfer -50\n"
        "98 More\n0 Back 00 Home"
    )
    assert phone.send("98") == (
        f"CON Statement (KES) 2/3\n{day} Savings Deposit +600\n{day} Savings Deposit +500\n"
        "98 More\n0 Back 00 Home"
    )
    assert (
        phone.send("98") == f"CON Statement (KES) 3/3\n{day} Savings Deposit +400\n0 Back 00 Home"
    )
    assert phone.send("0") == MAIN_EN


def statements_tz() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Africa/Nairobi")


def test_an_empty_statement_says_so(client: FlaskClient, amina: Member) -> None:
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send("2")
    assert phone.send("4826") == "CON Statement (KES) 1/1\nNo movements yet.\n0 Back 00 Home"


# ----------------------------------------------------- navigation, language


def test_back_and_home(client: FlaskClient, amina: Member) -> None:
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send("3")
    phone.send("4826")  # My account shows the name: behind the PIN
    assert phone.send("1") == "CON Choose language:\n1. English\n2. Kiswahili\n0 Back 00 Home"
    assert phone.send("0").startswith("CON Member no ")
    phone.send("1")
    assert phone.send("00") == MAIN_EN
    assert phone.send("0") == MAIN_EN  # back from the top stays at the top


def test_language_switch_changes_the_next_screen(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    phone = Phone(client, amina.msisdn)
    phone.dial()
    assert phone.send("3") == "CON Enter your PIN:"
    account = phone.send("4826")
    assert account == (
        f"CON Member no {amina.member_number}\nAmina Wanjiru\nStatus: Active\n"
        "1. Change language\n2. Leave the SACCO\n0 Back 00 Home"
    )
    phone.send("1")
    assert phone.send("2") == "END Lugha imewekwa: Kiswahili."
    db_session.refresh(amina)
    assert amina.language == "sw"
    assert Phone(client, amina.msisdn).dial() == (
        "CON Umoja SACCO\n1. Angalia salio\n2. Taarifa fupi\n3. Akaunti yangu\n4. Badilisha PIN\n"
        "5. Weka pesa\n6. Toa pesa\n98 Zaidi"
    )


# ------------------------------------------------------------ by status


def test_pending_member_sees_what_pending_allows(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    member = make_member(db_session, deps, status="pending_kyc")
    assert Phone(client, member.msisdn).dial() == (
        "CON Umoja SACCO\nKYC pending: more services once we check your ID.\n"
        "1. Check balances\n2. My account\n3. Change PIN\n4. Deposit"
    )


def test_suspended_member_sees_balances_only(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    member = make_member(db_session, deps, status="suspended")
    phone = Phone(client, member.msisdn)
    assert phone.dial() == (
        "CON Umoja SACCO\nAccount suspended: balances only. Call 0700 000 000.\n1. Check balances"
    )
    assert phone.send("2").startswith("CON Invalid choice.")
    phone.send("1")
    assert phone.send("4826").startswith("CON Savings KES 0")


def test_exited_member_gets_one_line(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    member = make_member(db_session, deps, status="exited")
    assert Phone(client, member.msisdn).dial() == (
        "END Your membership of Umoja SACCO has ended. For help call 0700 000 000."
    )


# --------------------------------------------------------------- resume


def start_registration(client: FlaskClient) -> Phone:
    phone = Phone(client, NEW_PHONE)
    phone.dial()
    phone.send("2")
    phone.send("Wanjiru Kamau")
    phone.send("12345678")
    return phone


def finish_resumed_registration(client: FlaskClient, db_session: Session) -> None:
    phone = Phone(client, NEW_PHONE)
    assert phone.dial() == (
        "CON Hukumaliza mara iliyopita. Endelea ulipoachia?\n1. Ndiyo, endelea\n2. Hapana, anza upya"
    )
    assert phone.send("1").startswith("CON Usajili (3/4).")  # the consent screen, in Swahili
    phone.send("1")
    phone.send("4826")
    assert phone.send("4826").startswith("END Asante.")
    member = db_session.scalar(select(Member).where(Member.msisdn == NEW_PHONE))
    assert member is not None and member.full_name == "Wanjiru Kamau"


def test_resume_after_an_incomplete_session_end(
    client: FlaskClient, db_session: Session, redis_client: Any
) -> None:
    phone = start_registration(client)
    redis_client.delete(f"ussd:r:{NEW_PHONE}")  # only the notification can offer it now
    assert phone.hang_up("Incomplete") == 200
    event = db_session.scalar(
        select(UssdSessionEvent).where(UssdSessionEvent.session_id == phone.session_id)
    )
    assert event is not None and event.status == "Incomplete" and event.msisdn == NEW_PHONE
    assert 0 < redis_client.ttl(f"ussd:r:{NEW_PHONE}") <= 120
    finish_resumed_registration(client, db_session)


def test_resume_when_dialling_again_within_two_minutes(
    client: FlaskClient, db_session: Session, redis_client: Any
) -> None:
    start_registration(client)  # no notification: the phone just dials again
    assert 0 < redis_client.ttl(f"ussd:r:{NEW_PHONE}") <= 120
    finish_resumed_registration(client, db_session)


def test_no_offer_once_the_resume_record_has_expired(
    client: FlaskClient, redis_client: Any
) -> None:
    start_registration(client)
    redis_client.delete(f"ussd:r:{NEW_PHONE}")  # what the 2-minute TTL does
    assert Phone(client, NEW_PHONE).dial().startswith("CON Welcome to Umoja SACCO")


def test_declining_the_offer_starts_afresh_and_forgets_it(client: FlaskClient) -> None:
    start_registration(client)
    phone = Phone(client, NEW_PHONE)
    phone.dial()
    assert phone.send("2").startswith("CON Welcome to Umoja SACCO")
    assert Phone(client, NEW_PHONE).dial().startswith("CON Welcome to Umoja SACCO")


def test_a_finished_action_is_never_offered_again(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    phone = Phone(client, amina.msisdn)
    phone.dial()
    phone.send("3")
    phone.send("4826")
    phone.send("1")
    phone.send("2")  # language changed: END
    phone.hang_up("Success")
    again = Phone(client, amina.msisdn)
    assert again.dial().startswith("CON Umoja SACCO\n1. Angalia salio")


def test_resume_before_a_pin_restarts_at_the_pin_not_after_it(
    client: FlaskClient, db_session: Session
) -> None:
    phone = start_registration(client)
    phone.send("1")
    phone.send("4826")  # first PIN typed, then the phone drops
    phone.hang_up("Incomplete")
    again = Phone(client, NEW_PHONE)
    again.dial()
    assert again.send("1").startswith("CON Usajili (4/4). Chagua PIN")


# ----------------------------------------------- expired state, direct dial


def test_expired_state_replays_menu_choices_only(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    phone = Phone(client, amina.msisdn)
    phone.session_id = "ATUid_state_lost"
    response = phone.post("1*4826")  # state gone: the PIN in text is never used
    assert response.get_data(as_text=True) == "CON Enter your PIN:"
    db_session.refresh(amina)
    assert amina.pin_failed_count == 0
    assert phone.post("1*4826*4826").get_data(as_text=True).startswith("CON Savings ")


def test_direct_dial_shortcut_opens_the_statement_behind_the_pin(
    client: FlaskClient, amina: Member
) -> None:
    phone = Phone(client, amina.msisdn)
    assert phone.dial("2") == "CON Enter your PIN:"
    assert phone.send("4826").startswith("CON Statement (KES) 1/1")


def test_replay_never_changes_the_language_or_runs_any_action(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    phone = Phone(client, amina.msisdn)
    assert phone.dial("3*1*2") == "CON Enter your PIN:"  # My account is behind the PIN
    db_session.refresh(amina)
    assert amina.language == "en"


# ----------------------------------------------------------- the endpoint


def post(client: FlaskClient, path: str = "/ussd", **form: str) -> tuple[int, str]:
    response = client.post(path, data=form)
    return response.status_code, response.get_data(as_text=True)


def test_missing_or_garbage_fields_get_a_polite_end(client: FlaskClient) -> None:
    generic = (
        "END Sorry, we could not finish that. Nothing was changed. Try again or call 0700 000 000."
    )
    assert post(client) == (200, generic)
    assert post(client, sessionId="x", phoneNumber="not a phone", serviceCode=SERVICE_CODE) == (
        200,
        generic,
    )
    assert post(client, sessionId="x" * 500, phoneNumber=NEW_PHONE, text="") == (200, generic)
    assert post(client, sessionId="y", phoneNumber=NEW_PHONE, serviceCode="*999#") == (200, generic)


def test_a_direct_dial_service_code_is_served(client: FlaskClient) -> None:
    code, body = post(
        client, sessionId="z", phoneNumber=NEW_PHONE, serviceCode="*384*44135*1#", text="1"
    )
    assert code == 200 and body.startswith("CON Register (1/4)")


def test_a_huge_or_odd_text_is_answered_with_a_screen(client: FlaskClient, amina: Member) -> None:
    phone = Phone(client, amina.msisdn)
    phone.dial()
    assert phone.send("9" * 10_000).startswith("CON Too long.\nUmoja SACCO")
    assert phone.send("\u00e9\u2603\U0001f600\x00").startswith("CON Invalid choice.")


@pytest.fixture
def token_client(runtime: Runtime) -> FlaskClient:
    settings = load_settings(
        sacco_env="test",
        database_url=PG_URL,
        redis_url=REDIS_URL,
        ussd_callback_token="s3cret-token",
    )
    app = create_app(settings, runtime)
    app.config["TESTING"] = True
    return app.test_client()


def test_the_callback_token_is_required_when_configured(token_client: FlaskClient) -> None:
    form = {"sessionId": "t1", "phoneNumber": NEW_PHONE, "serviceCode": SERVICE_CODE, "text": ""}
    assert post(token_client, **form)[0] == 403
    assert post(token_client, "/ussd?token=wrong", **form)[0] == 403
    assert (
        post(token_client, "/ussd/events?token=wrong", sessionId="t1", status="Success")[0] == 403
    )
    code, body = post(token_client, "/ussd?token=s3cret-token", **form)
    assert code == 200 and body.startswith("CON Welcome")


def test_session_end_events_are_stored_once_without_the_input(
    client: FlaskClient, db_session: Session
) -> None:
    form = {
        "date": "2026-11-27 21:00:00",
        "sessionId": "ATUid_e1",
        "serviceCode": SERVICE_CODE,
        "networkCode": "63902",
        "phoneNumber": NEW_PHONE,
        "status": "Success",
        "cost": "KES 0.10",
        "durationInMillis": "41000",
        "hopsCount": "5",
        "input": "1*4826",
        "lastAppResponse": "END Savings KES 100",
        "errorMessage": "",
    }
    assert post(client, "/ussd/events", **form) == (200, "OK")
    assert post(client, "/ussd/events", **form) == (200, "OK")
    assert post(client, "/ussd/events") == (200, "OK")  # garbage: acknowledged, not stored
    rows = db_session.scalars(select(UssdSessionEvent)).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.session_id, row.status, row.hops_count, row.duration_ms, row.cost) == (
        "ATUid_e1",
        "Success",
        5,
        41000,
        "KES 0.10",
    )
    assert "4826" not in repr([getattr(row, c.key) for c in UssdSessionEvent.__table__.columns])


def test_an_unreachable_session_store_gets_a_polite_end(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    dead = redis_lib.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    broken = Runtime(
        engine=runtime.engine,
        session_factory=runtime.session_factory,
        deps=runtime.deps,
        redis=dead,
        sacco_name=runtime.sacco_name,
    )
    app = create_app(load_settings(sacco_env="test", database_url=PG_URL), broken)
    code, body = post(
        app.test_client(), sessionId="r1", phoneNumber=NEW_PHONE, serviceCode=SERVICE_CODE, text="1"
    )
    dead.close()
    assert (code, body) == (
        200,
        "END Sorry, we could not finish that. Nothing was changed. Try again or call 0700 000 000.",
    )
    assert any("error=ConnectionError" in r.getMessage() for r in caplog.records)


def test_the_redis_store_keeps_state_and_offer_with_their_ttls(
    client: FlaskClient, redis_client: Any
) -> None:
    phone = start_registration(client)
    assert 0 < redis_client.ttl(f"ussd:s:{phone.session_id}") <= 180
    assert 0 < redis_client.ttl(f"ussd:r:{NEW_PHONE}") <= 120
    stored = redis_client.get(f"ussd:s:{phone.session_id}").decode()
    assert '"screen":"reg_consent"' in stored and "Wanjiru Kamau" in stored
    phone.send("2")  # END: both records go
    assert redis_client.get(f"ussd:s:{phone.session_id}") is None
    assert redis_client.get(f"ussd:r:{NEW_PHONE}") is None
