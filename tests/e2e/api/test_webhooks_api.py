"""Partners' webhook endpoints over the API: an administrator registers one (the signing
secret is shown once and never stored in clear), lists them, and stops one at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput
from core.messaging import webhooks
from db.models import AuditEvent, WebhookEndpoint
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

URL = "/api/v1/webhooks"


def test_admin_registers_lists_and_stops_a_partner_endpoint(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    admin = make_staff("admin")
    body = {"name": "Umoja Bank", "url": "https://hooks.bank.example/sacco",
            "events": ["deposit.received"]}  # fmt: skip
    made = api.post(URL, headers=auth(admin), json=body)
    assert made.status_code == 201, made.json
    endpoint, secret = made.json["endpoint"], made.json["secret"]
    assert secret.startswith("whsec_") and endpoint["events"] == ["deposit.received"]
    listed = api.get(URL, headers=auth(admin)).json["items"]
    assert [(e["id"], e["active"]) for e in listed] == [(endpoint["id"], True)]
    assert secret not in str(listed)
    with unit_of_work(session_factory) as s:
        row = s.get(WebhookEndpoint, endpoint["id"])
        assert row is not None and row.secret is None
        assert webhooks.endpoint_secret(s, deps.vault, row.id) == secret
        queued = webhooks.publish_event(
            s, event_type="deposit.received", event_id="dep-1", data={"amount_cents": 100}
        )
        assert [m.endpoint_id for m in queued] == [endpoint["id"]]
        s.rollback()

    assert api.delete(f"{URL}/{endpoint['id']}", headers=auth(admin)).status_code == 204
    assert api.delete(f"{URL}/{endpoint['id']}", headers=auth(admin)).status_code == 204
    assert api.delete(f"{URL}/999999", headers=auth(admin)).status_code == 404
    assert api.get(URL, headers=auth(admin)).json["items"][0]["active"] is False
    with unit_of_work(session_factory) as s:
        assert (
            webhooks.publish_event(
                s, event_type="deposit.received", event_id="dep-2", data={"amount_cents": 100}
            )
            == []
        )
        assert webhooks.endpoint_secret(s, deps.vault, endpoint["id"]) is None
        actions = s.scalars(
            select(AuditEvent.action).where(AuditEvent.target_type == "webhook_endpoint")
        ).all()
    assert actions == ["webhook.register", "webhook.deactivate"]


def test_bad_endpoints_are_refused_with_a_reason(
    api: FlaskClient, make_staff: Callable[..., Staffer]
) -> None:
    admin = make_staff("admin")
    for bad in (
        {"name": "X", "url": "https://a.example"},
        {"name": "Partner", "url": "ftp://a.example/x"},
        {"name": "Partner", "url": "not a url"},
        {"name": "Partner", "url": "https://a.example", "events": ["loan.paid"]},
        {"name": "Partner", "url": "https://a.example", "events": []},
        {"name": "Partner", "url": "https://a.example/" + "x" * 600},
    ):
        answer = api.post(URL, headers=auth(admin), json=bad)
        assert answer.status_code == 422, bad
        assert answer.json["code"] == "invalid_input"
    assert api.get(URL, headers=auth(admin)).json["items"] == []
    manager = make_staff("manager")
    assert api.post(URL, headers=auth(manager), json={"name": "P", "url": "https://a.example"}
                    ).status_code == 403  # fmt: skip


def test_production_takes_only_https_endpoints(
    session_factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    with unit_of_work(session_factory) as s:
        with pytest.raises(InvalidInput) as refused:
            webhooks.register_endpoint(
                s, deps, name="Plain", url="http://hooks.bank.example/x", require_https=True
            )
        assert refused.value.reason == "https_required"
        with pytest.raises(InvalidInput) as unknown:
            webhooks.register_endpoint(
                s, deps, name="Loans", url="https://hooks.bank.example/x", events=["loan.paid"]
            )
        assert unknown.value.reason == "unknown_event"
        endpoint, _ = webhooks.register_endpoint(
            s, deps, name="Tls", url="https://hooks.bank.example/x", require_https=True
        )
        assert [e.url for e in webhooks.list_endpoints(s)] == ["https://hooks.bank.example/x"]
