"""``POST /sms/inbound`` and ``POST /sms/delivery`` in the gateway's exact form format."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from app_factory import create_app
from config import Settings
from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.members import registration as members
from core.messaging.notifications import notify
from core.savings import accounts as savings
from db.base import utcnow
from db.models import Member, OutboxMessage, SmsDeliveryReport, SmsInbound, SmsOptOut
from runtime import Runtime

SHORTCODE = "22384"


def inbound(client: FlaskClient, sender: str, text: str, gateway_id: str | None = None) -> int:
    form = {
        "from": sender,
        "to": SHORTCODE,
        "text": text,
        "date": "2026-11-27 09:00:00",
        "id": gateway_id or uuid.uuid4().hex,
        "linkId": "",
        "networkCode": "63902",
    }
    return client.post("/sms/inbound", data=form).status_code


def replies(session: Session, to: str) -> list[OutboxMessage]:
    session.expire_all()
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.recipient == to, OutboxMessage.template.like("sms_%"))
            .order_by(OutboxMessage.id)
        )
    )


def last_reply(session: Session, to: str) -> str:
    return replies(session, to)[-1].body


@pytest.fixture
def amina(db_session: Session, deps: CoreDeps) -> Member:
    member = members.register_member(
        db_session,
        deps,
        full_name="Amina Wanjiru",
        msisdn="0712000501",
        national_id="23456801",
        language="en",
        consent=True,
    )
    for i, (target, kes) in enumerate(
        [
            ("savings", 5000),
            ("savings", 1250),
            ("deposits", 20000),
            ("shares", 2000),
            ("savings", 300),
            ("savings", 75),
        ]
    ):
        savings.credit_member(
            db_session,
            deps,
            savings.Credit(
                member_id=member.id,
                target=target,
                amount_cents=Money.of(kes).cents,
                source=savings.CreditSource.MPESA,
                idempotency_key=f"sms-e2e-{i}",
                business_key=f"deposit_received:sms-e2e-{i}",
            ),
        )
    members.set_status(db_session, member.id, "active")
    return member


def test_bal_shows_balances_in_english_and_salio_in_swahili(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    assert inbound(client, amina.msisdn, "bal") == 200
    text = last_reply(db_session, amina.msisdn)
    assert "Savings available KES 6,625. Deposits KES 20,000. Shares KES 2,000." in text
    assert inbound(client, amina.msisdn, "  Salio ") == 200
    assert "Akiba inayopatikana KES 6,625. Amana KES 20,000. Hisa KES 2,000." in last_reply(
        db_session, amina.msisdn
    )


def test_mini_shows_the_last_three_savings_moves_without_counterparties(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    assert inbound(client, amina.msisdn, "MINI") == 200
    text = last_reply(db_session, amina.msisdn)
    lines = text.split("\n")
    assert [line.split(" ")[1] for line in lines[1:4]] == ["+75", "+300", "+1,250"]
    assert lines[-1] == "Available: KES 6,625"
    assert "M-Pesa" not in text and "Ref" not in text
    assert inbound(client, amina.msisdn, "taarifa") == 200
    assert last_reply(db_session, amina.msisdn).endswith("Inayopatikana: KES 6,625")


def test_the_same_gateway_id_twice_gets_one_reply(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    assert inbound(client, amina.msisdn, "BAL", "ATXid_dup") == 200
    assert inbound(client, amina.msisdn, "BAL", "ATXid_dup") == 200
    assert len(replies(db_session, amina.msisdn)) == 1
    assert db_session.scalar(select(SmsInbound.command)) == "balance"


def test_an_unregistered_number_is_told_how_to_join_in_its_language(
    client: FlaskClient, db_session: Session
) -> None:
    assert inbound(client, "0799000999", "BAL") == 200
    assert "this number is not registered. To join, dial" in last_reply(db_session, "+254799000999")
    assert inbound(client, "+254799000999", "salio") == 200
    assert "nambari hii haijasajiliwa" in last_reply(db_session, "+254799000999")


def test_unknown_text_gets_help_in_the_members_language(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    member = members.register_member(
        db_session,
        deps,
        full_name="Otieno Kamau",
        msisdn="0722000502",
        national_id="23456802",
        language="sw",
        consent=True,
    )
    assert inbound(client, member.msisdn, "nataka pesa") == 200
    assert last_reply(db_session, member.msisdn).startswith("Samahani, hatukuelewa")
    assert inbound(client, member.msisdn, "HELP") == 200  # English keyword: English answer
    assert "BAL balance, MINI" in last_reply(db_session, member.msisdn)
    assert inbound(client, member.msisdn, "msaada") == 200
    assert "SALIO salio" in last_reply(db_session, member.msisdn)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LOAN", "you have no loans. Send LIMIT"),
        ("mkopo", "huna mkopo. Tuma KIKOMO"),
        ("limit", "no loan is open to apply for by phone now"),
        ("ACCEPT G7K2", "no pending guarantee request with code G7K2"),
        ("kataa g7k2", "hakuna ombi la udhamini linalosubiri lenye nambari G7K2"),
        ("hlep", "BAL balance"),
    ],
)
def test_loan_commands_answer_a_member_without_loans_or_products(
    client: FlaskClient, db_session: Session, amina: Member, text: str, expected: str
) -> None:
    assert inbound(client, amina.msisdn, text) == 200
    assert expected in last_reply(db_session, amina.msisdn)


def test_stop_ends_promotions_but_not_receipts_and_start_resumes(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    def promo(key: str) -> str:
        message = notify(
            db_session,
            template="sms_start_ok",
            business_key=key,
            now=utcnow(),
            data={"sacco": "U"},
            member=amina,
            category="promotional",
        )
        db_session.commit()
        return message.status

    assert inbound(client, amina.msisdn, "STOP") == 200
    assert "no longer get promotional messages" in last_reply(db_session, amina.msisdn)
    assert promo("promo-1") == "cancelled"
    receipt = notify(
        db_session,
        template="sms_start_ok",
        business_key="receipt-1",
        now=utcnow(),
        data={"sacco": "U"},
        member=amina,
    )
    assert receipt.status == "pending"
    assert inbound(client, amina.msisdn, "anza") == 200
    assert "ujumbe wa matangazo umerudishwa" in last_reply(db_session, amina.msisdn)
    assert promo("promo-2") == "pending"


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"from": "+254712000501"},
        {"id": "x"},
        {"from": "", "id": "", "text": "BAL"},
    ],
)
def test_incomplete_inbound_is_refused_with_a_reason(
    client: FlaskClient, form: dict[str, str]
) -> None:
    answer = client.post("/sms/inbound", data=form)
    assert answer.status_code == 400 and b"missing" in answer.data


@pytest.mark.parametrize(
    "text", ["\x00\xff" * 300, "😀" * 2000, "'; DROP TABLE members; --", "A" * 50_000, ""]
)
def test_garbage_text_never_breaks_the_callback(
    client: FlaskClient, db_session: Session, text: str
) -> None:
    assert inbound(client, "+254712000777", text) == 200
    assert inbound(client, "ALPHA-SENDER", text) == 200  # not a phone: recorded, no reply
    assert (
        client.post("/sms/inbound", data=b"\xff\xfe\x00", content_type="text/plain").status_code
        == 400
    )
    assert replies(db_session, "ALPHA-SENDER") == []


def test_delivery_report_for_an_unknown_id_is_stored_and_garbage_refused(
    client: FlaskClient, db_session: Session
) -> None:
    ok = client.post(
        "/sms/delivery",
        data={
            "id": "ATXid_unknown",
            "status": "Success",
            "phoneNumber": "+254712000501",
            "retryCount": "0",
        },
    )
    assert ok.status_code == 200
    assert db_session.scalar(select(SmsDeliveryReport.provider_message_id)) == "ATXid_unknown"
    for form in (
        {},
        {"id": "x", "status": "Exploded"},
        {"status": "Success"},
        {"id": "x", "status": "Failed", "retryCount": "many"},
        {"id": "a\x00b", "status": "Failed", "failureReason": "\x00" * 100},
    ):
        status = client.post("/sms/delivery", data=form).status_code
        assert status in (200, 400) and status != 500


def test_callbacks_need_the_token_when_one_is_configured(
    settings: Settings, runtime: Runtime
) -> None:
    app: Flask = create_app(
        settings.model_copy(update={"sms_callback_token": "s3cret-token"}), runtime
    )
    client = app.test_client()
    form = {"from": "+254712000888", "text": "BAL", "id": "tok-1"}
    assert client.post("/sms/inbound", data=form).status_code == 403
    assert client.post("/sms/inbound?token=wrong", data=form).status_code == 403
    assert client.post("/sms/delivery", data={"id": "a", "status": "Success"}).status_code == 403
    assert client.post("/sms/inbound?token=s3cret-token", data=form).status_code == 200


def test_a_pin_texted_by_mistake_is_not_stored(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    assert inbound(client, amina.msisdn, "BAL 4826") == 200
    assert db_session.scalar(select(SmsInbound.text)) == "BAL ****"
    assert "Savings available" in last_reply(db_session, amina.msisdn)


@settings_(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    form=st.dictionaries(
        st.sampled_from(["from", "to", "text", "date", "id", "linkId", "networkCode", "junk"]),
        st.text(max_size=200),
    ),
    report=st.dictionaries(
        st.sampled_from(["id", "status", "failureReason", "retryCount", "phoneNumber"]),
        st.one_of(st.text(max_size=80), st.sampled_from(["Success", "Failed", "Rejected"])),
    ),
)
def test_no_form_ever_gets_a_server_error(
    client: FlaskClient, form: dict[str, str], report: dict[str, str]
) -> None:
    assert client.post("/sms/inbound", data=form).status_code in (200, 400)
    assert client.post("/sms/delivery", data=report).status_code in (200, 400)


def test_a_number_gets_at_most_ten_replies_an_hour_but_stop_still_works(
    client: FlaskClient, db_session: Session, amina: Member
) -> None:
    for _ in range(12):
        assert inbound(client, amina.msisdn, "BAL") == 200
    assert len(replies(db_session, amina.msisdn)) == 10
    assert inbound(client, amina.msisdn, "STOP") == 200
    assert db_session.scalar(select(SmsOptOut.msisdn)) == amina.msisdn
    assert len(replies(db_session, amina.msisdn)) == 10
