"""PIN reset after the SIM-swap check: our real Africa's Talking client against the local
stand-in, wired in as the composition root would (``app.extensions["sacco_sim_swap"]``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from db.models import Member
from integrations.africastalking.standin import StandinHandle, start_standin
from tests.e2e.api.conftest import Staffer, auth
from tests.integration.test_africastalking import control, make_checker


@pytest.fixture
def standin() -> Iterator[StandinHandle]:
    handle = start_standin(port=0)
    yield handle
    handle.stop()


def _reset(
    api: FlaskClient, maker: Staffer, checker: Staffer, member: Member, **body: object
) -> dict:  # type: ignore[type-arg]
    req = api.post(f"/api/v1/members/{member.id}/pin-reset", headers=auth(maker), json=body).json
    r = api.post(f"/api/v1/approvals/{req['id']}/approve", headers=auth(checker), json={})
    assert r.status_code == 200
    return dict(r.json or {})


def test_recent_sim_swap_stops_a_remote_pin_reset_but_not_an_in_person_one(
    app: Flask,
    api: FlaskClient,
    standin: StandinHandle,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    app.extensions["sacco_sim_swap"] = make_checker(standin.url)
    member = make_member(status="active")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    control(standin, number=member.msisdn, swapped=True, last_swap_date=yesterday)
    maker, checker = make_staff("teller"), make_staff("loan_officer")

    refused = _reset(api, maker, checker, member)
    assert refused["status"] == "failed"
    assert refused["result"]["error"] == "member_not_allowed"
    assert refused["result"]["sim_swap"] == "recent"
    assert not api.get(f"/api/v1/members/{member.id}", headers=auth(checker)).json[
        "pin_reset_pending"
    ]

    in_person = _reset(api, maker, checker, member, in_person=True)
    assert in_person["status"] == "approved"
    assert in_person["result"] == {"code_sent": True, "sim_swap": "recent"}


def test_old_swap_or_no_verdict_lets_the_reset_through(
    app: Flask,
    api: FlaskClient,
    standin: StandinHandle,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    maker, checker = make_staff("teller"), make_staff("loan_officer")
    old, other = make_member(status="active"), make_member(status="active")
    control(standin, number=old.msisdn, swapped=True, last_swap_date="2025-01-10T08:00:00Z")
    app.extensions["sacco_sim_swap"] = make_checker(standin.url)
    assert _reset(api, maker, checker, old)["result"]["sim_swap"] == "none"
    with start_standin(port=0) as gone:
        pass
    app.extensions["sacco_sim_swap"] = make_checker(gone.url, timeout=1.0)
    unknown = _reset(api, maker, checker, other)
    assert unknown["status"] == "approved"
    assert unknown["result"]["sim_swap"] == "unknown"
