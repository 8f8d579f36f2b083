"""PIN reset after the SIM-swap check: our real Africa's Talking client against the local
stand-in, wired in as the composition root would (``app.extensions["sacco_sim_swap"]``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from db.models import Member
from db.models_mpesa import SimSwapEvent
from db.session import unit_of_work
from integrations.africastalking.standin import StandinHandle
from tests.e2e.api.conftest import Staffer, auth
from tests.integration.test_africastalking import control, make_checker


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


def test_an_old_swap_lets_a_remote_reset_through(
    app: Flask,
    api: FlaskClient,
    standin: StandinHandle,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    maker, checker = make_staff("teller"), make_staff("loan_officer")
    old = make_member(status="active")
    control(standin, number=old.msisdn, swapped=True, last_swap_date="2025-01-10T08:00:00Z")
    app.extensions["sacco_sim_swap"] = make_checker(standin.url)
    approved = _reset(api, maker, checker, old)
    assert (approved["status"], approved["result"]["sim_swap"]) == ("approved", "none")


def test_a_remote_reset_is_refused_while_the_provider_fails_but_not_an_in_person_one(
    app: Flask,
    api: FlaskClient,
    standin: StandinHandle,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    """No verdict is not "no swap": the code would go by SMS to whoever holds the SIM."""
    maker, checker = make_staff("teller"), make_staff("loan_officer")
    member = make_member(status="active")
    control(standin, fail_next=100)
    app.extensions["sacco_sim_swap"] = make_checker(standin.url, timeout=1.0)

    refused = _reset(api, maker, checker, member)
    assert refused["status"] == "failed"
    assert refused["result"]["error"] == "member_not_allowed"
    assert refused["result"]["sim_swap"] == "unknown"
    assert not api.get(f"/api/v1/members/{member.id}", headers=auth(checker)).json[
        "pin_reset_pending"
    ]
    in_person = _reset(api, maker, checker, member, in_person=True)
    assert in_person["status"] == "approved"
    assert in_person["result"] == {"code_sent": True, "sim_swap": "unknown"}


def test_a_swap_two_staff_cleared_lets_a_remote_reset_through(
    app: Flask,
    api: FlaskClient,
    standin: StandinHandle,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    """The approval asks core (its cache and the staff clearances), not the checker alone."""
    member = make_member(status="active")
    swapped_at = deps.now() - timedelta(days=2)
    control(standin, number=member.msisdn, swapped=True, last_swap_date=swapped_at.isoformat())
    app.extensions["sacco_sim_swap"] = make_checker(standin.url)
    maker, checker = make_staff("teller"), make_staff("manager")
    with unit_of_work(session_factory) as s:  # a withdrawal the guard stopped for this swap
        event = SimSwapEvent(
            member_id=member.id, msisdn=member.msisdn, outcome="recent_swap",
            decision="refused", amount_cents=5_000_00, last_swap_at=swapped_at,
            created_at=deps.now(),
        )  # fmt: skip
        s.add(event)
        s.commit()
    asked = api.post(f"/api/v1/mpesa/sim-swap-events/{event.id}/clearance", headers=auth(maker),
                     json={"in_person": True, "note": "ID seen, SIM replaced after loss"})  # fmt: skip
    assert asked.status_code == 202, asked.json
    cleared = api.post(f"/api/v1/approvals/{asked.json['id']}/approve", headers=auth(checker),
                       json={})  # fmt: skip
    assert cleared.json["status"] == "approved"

    approved = _reset(api, maker, checker, member)
    assert (approved["status"], approved["result"]["sim_swap"]) == ("approved", "cleared")
