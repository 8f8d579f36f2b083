"""The terminal phone builds exactly the requests the Africa's Talking gateway sends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.phone import (
    GatewayError,
    cumulative_text,
    end_event_form,
    events_url,
    frame,
    hop_form,
    new_session_id,
    parse_reply,
)


def test_text_is_every_input_so_far_joined_by_star() -> None:
    assert cumulative_text([]) == ""
    assert cumulative_text(["1"]) == "1"
    assert cumulative_text(["1", "2"]) == "1*2"
    assert cumulative_text(["3", "5000", "1"]) == "3*5000*1"


def test_an_empty_input_shows_as_a_trailing_star_like_on_the_network() -> None:
    assert cumulative_text(["1", ""]) == "1*"


def test_a_star_typed_by_the_member_stays_inside_text() -> None:
    assert cumulative_text(["1", "12*3"]) == "1*12*3"


@given(st.lists(st.text(alphabet="0123456789#", max_size=8), max_size=12))
def test_each_hop_extends_the_previous_text(inputs: list[str]) -> None:
    for i in range(1, len(inputs) + 1):
        before, now = cumulative_text(inputs[: i - 1]), cumulative_text(inputs[:i])
        assert now == (f"{before}*{inputs[i - 1]}" if i > 1 else inputs[0])


def test_a_hop_carries_exactly_the_gateway_fields() -> None:
    form = hop_form(
        session_id="ATUid_abc",
        service_code="*384*44135#",
        phone_number="+254712000001",
        network_code="63902",
        inputs=["1", "4826"],
    )
    assert form == {
        "sessionId": "ATUid_abc",
        "serviceCode": "*384*44135#",
        "phoneNumber": "+254712000001",
        "networkCode": "63902",
        "text": "1*4826",
    }


def test_every_dial_gets_a_new_session_id() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("ATUid_") for i in ids)


def test_con_waits_for_input_and_end_closes() -> None:
    con = parse_reply(200, "text/plain; charset=utf-8", "CON Welcome\n1. Balances")
    assert (con.ends, con.text) == (False, "Welcome\n1. Balances")
    end = parse_reply(200, "text/plain", "END Goodbye")
    assert (end.ends, end.text) == (True, "Goodbye")


@pytest.mark.parametrize(
    ("status", "ctype", "body"),
    [
        (500, "text/plain", "CON x"),
        (404, "text/html", "<h1>Not Found</h1>"),
        (200, "text/html", "CON x"),
        (200, "text/plain", "Welcome"),
        (200, "text/plain", "con lower case"),
    ],
)
def test_anything_else_is_what_the_gateway_shows_as_an_error(
    status: int, ctype: str, body: str
) -> None:
    with pytest.raises(GatewayError):
        parse_reply(status, ctype, body)


def test_session_end_notification_has_the_gateway_fields() -> None:
    form = end_event_form(
        session_id="ATUid_abc",
        service_code="*384*44135#",
        phone_number="+254712000001",
        network_code="99999",
        inputs=["1", "2"],
        status="Incomplete",
        hops=3,
        duration_ms=4200,
        last_response="CON Choose",
        at=datetime(2026, 11, 27, 9, 30, 5, tzinfo=UTC),
    )
    assert form == {
        "date": "2026-11-27 09:30:05",
        "sessionId": "ATUid_abc",
        "serviceCode": "*384*44135#",
        "networkCode": "99999",
        "phoneNumber": "+254712000001",
        "status": "Incomplete",
        "cost": "0.0",
        "durationInMillis": "4200",
        "hopsCount": "3",
        "input": "1*2",
        "lastAppResponse": "CON Choose",
        "errorMessage": "",
    }


def test_unknown_session_status_is_refused() -> None:
    with pytest.raises(ValueError):
        end_event_form(
            session_id="s",
            service_code="c",
            phone_number="p",
            network_code="n",
            inputs=[],
            status="Done",
            hops=0,
            duration_ms=0,
            last_response="",
            at=datetime.now(UTC),
        )


def test_events_url_sits_beside_the_callback_and_keeps_its_token() -> None:
    assert events_url("http://h:8000/ussd") == "http://h:8000/ussd/events"
    assert events_url("http://h/ussd?token=s3cret") == "http://h/ussd/events?token=s3cret"


def test_a_screen_is_drawn_word_wrapped_in_a_fixed_frame() -> None:
    drawn = frame("Registered. Your member number is 10056.\n1. Check balances", width=20)
    lines = drawn.split("\n")
    assert lines[0] == lines[-1] == "+" + "-" * 22 + "+"
    assert all(len(line) == 24 for line in lines)
    inner = [line[2:-2].rstrip() for line in lines[1:-1]]
    assert inner == ["Registered. Your", "member number is", "10056.", "1. Check balances"]
