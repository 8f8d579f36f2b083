"""``GET /simulator`` and its inbox: present in demo/development only, never in production."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy.orm import Session

from app_factory import create_app
from config import load_settings
from core.kernel.deps import CoreDeps
from core.members.registration import register_member
from core.messaging.notifications import messages_for, notify
from db.base import utcnow
from runtime import Runtime
from tests.e2e.servers import free_port
from tests.settings import PG_URL, REDIS_URL


def _app(env: str, runtime: Runtime, **more: object) -> Flask:
    extra: dict[str, object] = dict(more)
    if env == "production":
        extra = {
            "secret_key": secrets.token_urlsafe(32),
            "jwt_secret_key": secrets.token_urlsafe(32),
            "pin_pepper": secrets.token_urlsafe(32),
            "pii_keys": Fernet.generate_key().decode(),
            "blind_index_key": secrets.token_urlsafe(32),
            "ussd_callback_token": secrets.token_urlsafe(24),
            "sms_callback_token": secrets.token_urlsafe(24),
            "trusted_proxy_hops": 0,
            **more,
        }
    settings = load_settings(sacco_env=env, database_url=PG_URL, redis_url=REDIS_URL, **extra)
    app = create_app(settings, runtime)
    app.config["TESTING"] = True
    return app


@pytest.mark.parametrize("env", ["production", "test"])
def test_the_simulator_does_not_exist_outside_demo_and_development(
    env: str, runtime: Runtime
) -> None:
    client = _app(env, runtime).test_client()
    for path in (
        "/simulator",
        "/simulator/inbox?phone=%2B254712000001",
        "/simulator/static/simulator/phone.js",
    ):
        assert client.get(path).status_code == 404, path


@pytest.mark.parametrize("env", ["demo", "development"])
def test_the_simulator_page_is_a_phone_that_posts_to_the_gateway_callback(
    env: str, runtime: Runtime
) -> None:
    client = _app(env, runtime).test_client()
    resp = client.get("/simulator")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'data-ussd-url="/ussd"' in html
    assert 'data-events-url="/ussd/events"' in html
    assert 'data-service-code="*384*44135#"' in html
    for key in "0123456789*#":
        assert f'data-key="{key}"' in html
    for button in ("call", "send", "end"):
        assert f'id="{button}"' in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    script = client.get("/simulator/static/simulator/phone.js")
    assert script.status_code == 200
    js = script.get_data(as_text=True)
    script.close()
    assert 'inputs.join("*")' in js  # cumulative text, as the gateway sends it


def test_with_a_callback_token_the_page_posts_to_the_token_url(runtime: Runtime) -> None:
    client = _app("development", runtime, ussd_callback_token="s3cret/+x").test_client()
    html = client.get("/simulator").get_data(as_text=True)
    assert 'data-ussd-url="/ussd?token=s3cret%2F%2Bx"' in html
    assert 'data-events-url="/ussd/events?token=s3cret%2F%2Bx"' in html


def test_the_inbox_shows_what_was_queued_for_that_number_only(
    runtime: Runtime, db_session: Session, deps: CoreDeps
) -> None:
    member = register_member(
        db_session,
        deps,
        full_name="Wanjiku Njeri",
        msisdn="0712345678",
        national_id="31234567",
        consent=True,
    )
    notify(
        db_session,
        template="member_registered",
        business_key="other",
        now=utcnow(),
        msisdn="+254722111222",
        data={"sacco": "X", "first_name": "Other", "member_number": "1", "ussd_code": "*1#"},
    )
    db_session.commit()
    client = _app("demo", runtime).test_client()

    data = client.get("/simulator/inbox?phone=0712 345 678").get_json()

    assert data["phone"] == "+254712345678"
    assert [m["template"] for m in data["messages"]] == ["member_registered"]
    body = data["messages"][0]["body"]
    assert "Wanjiku" in body and member.member_number in body
    assert "Other" not in body


def test_the_inbox_answers_a_bad_number_with_a_reason(runtime: Runtime) -> None:
    client = _app("demo", runtime).test_client()
    for raw in ("", "abc", "+1 202 555 0100"):
        resp = client.get("/simulator/inbox", query_string={"phone": raw})
        assert resp.status_code == 400
        assert resp.get_json()["error"] == "invalid_phone"
        assert resp.get_json()["reason"]


def test_messages_for_lists_the_newest_first_and_stops_at_the_limit(db_session: Session) -> None:
    for i in range(5):
        notify(
            db_session,
            template="member_registered",
            business_key=f"k{i}",
            now=utcnow(),
            msisdn="+254733000111",
            data={"sacco": "S", "first_name": f"N{i}", "member_number": "1", "ussd_code": "*1#"},
        )
    db_session.commit()
    found = messages_for(db_session, "+254733000111", limit=3)
    assert ["N4" in m.body for m in found] == [True, False, False]
    assert [m.id for m in found] == sorted((m.id for m in found), reverse=True)
    assert len(found) == 3
    assert messages_for(db_session, "+254799999999") == []


# The Africa's Talking stand-in's inbox listing (``GET /_messages?to=``), as it answers.
STANDIN_MESSAGES = [
    {
        "id": "ATXid_1",
        "to": "+254712345678",
        "from": None,
        "message": "Delivered copy of your welcome SMS",
        "cost": "KES 0.8000",
        "sentAt": "2099-01-01T10:00:00+00:00",
        "deliveryStatus": "Success",
    },
    {
        "id": "ATXid_2",
        "to": "+254799000000",
        "from": None,
        "message": "someone else's",
        "cost": "KES 0.8000",
        "sentAt": "2099-01-01T10:00:00+00:00",
        "deliveryStatus": None,
    },
]


class _StandinHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        to = parse_qs(url.query).get("to", [""])[0]
        found = [m for m in STANDIN_MESSAGES if not to or m["to"] == to]
        body = json.dumps({"messages": found}).encode()
        self.send_response(200 if url.path == "/_messages" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def sms_standin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandinHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_inbox_adds_what_the_sms_gateway_stand_in_received(
    runtime: Runtime, db_session: Session, deps: CoreDeps, sms_standin: str
) -> None:
    register_member(
        db_session,
        deps,
        full_name="Wanjiku Njeri",
        msisdn="+254712345678",
        national_id="31234567",
        consent=True,
    )
    client = _app("demo", runtime, simulator_sms_standin_url=sms_standin).test_client()

    data = client.get("/simulator/inbox?phone=%2B254712345678").get_json()

    assert [(m["source"], m["status"]) for m in data["messages"]] == [
        ("gateway", "Success"),  # newest first
        ("outbox", "pending"),
    ]
    assert data["messages"][0]["body"] == "Delivered copy of your welcome SMS"
    assert "gateway_error" not in data


def test_an_unreachable_sms_stand_in_still_shows_the_outbox(
    runtime: Runtime, db_session: Session, deps: CoreDeps
) -> None:
    register_member(
        db_session,
        deps,
        full_name="Wanjiku Njeri",
        msisdn="+254712345678",
        national_id="31234567",
        consent=True,
    )
    nobody = f"http://127.0.0.1:{free_port()}"
    client = _app("demo", runtime, simulator_sms_standin_url=nobody).test_client()

    resp = client.get("/simulator/inbox?phone=%2B254712345678")

    assert resp.status_code == 200
    data = resp.get_json()
    assert [m["source"] for m in data["messages"]] == ["outbox"]
    assert "unreachable" in data["gateway_error"]
