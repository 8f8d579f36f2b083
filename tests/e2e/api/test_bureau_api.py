"""Credit-bureau consents and enquiries over the staff API, against the bureau stand-in:
no consent → 409 ``consent_required`` and no call at the stand-in; a consent from the
signed form, an enquiry that calls once and then reuses the answer, the bureau down kept as
an ``unavailable`` report, revocation stopping calls again; who may do what, a member
outside the branch a 404, bad input a 422, the read showing figures and never the ID,
every step audited."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from core.kernel.deps import CoreDeps
from db.models import AuditEvent, Member
from db.models_scoring import BureauConsent
from db.session import unit_of_work
from integrations.bureaus import standin as bureau_standin
from integrations.bureaus.wiring import build_bureau
from tests.e2e.api.conftest import Staffer, auth
from tests.integration.test_bureau_enquiries import calls, control
from tests.settings import PG_URL, REDIS_URL

KES = 100


@pytest.fixture
def bureau_server() -> Iterator[bureau_standin.StandinHandle]:
    with bureau_standin.start_standin() as handle:
        yield handle


@pytest.fixture
def settings(tmp_path: Path, bureau_server: bureau_standin.StandinHandle) -> Settings:
    """The API's settings with the Metropol-shaped adapter pointed at the stand-in."""
    return load_settings(
        sacco_env="test", database_url=PG_URL, redis_url=REDIS_URL,
        document_dir=str(tmp_path / "documents"), api_rate_limit="100000/minute",
        api_login_rate_limit="1000/minute", bureau_provider="metropol",
        bureau_url=bureau_server.url, bureau_metropol_public_key=bureau_standin.PUBLIC_KEY,
        bureau_metropol_private_key=bureau_standin.PRIVATE_KEY, bureau_timeout_seconds=2,
    )  # fmt: skip


@pytest.fixture
def deps(deps: CoreDeps, settings: Settings) -> CoreDeps:
    """The app's dependencies with the bureau the settings configure (the composition
    root's ``build_bureau``)."""
    return dataclasses.replace(deps, bureau=build_bureau(settings))


def called_ids(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/_calls", timeout=5) as answer:
        return [c["national_id"] for c in json.load(answer)["calls"]]


def audit_actions(factory: sessionmaker[Session], member_id: int) -> list[str]:
    with unit_of_work(factory) as s:
        return list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("bureau.%"), AuditEvent.target_id == str(member_id))
                .order_by(AuditEvent.id)
            )
        )


def test_consent_enquiry_cache_outage_and_revocation(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    session_factory: sessionmaker[Session], bureau_server: bureau_standin.StandinHandle,
) -> None:  # fmt: skip
    member = make_member(branch="Nyeri", status="active")
    officer = make_staff("loan_officer", branch="Nyeri")
    consents = f"/api/v1/members/{member.id}/bureau-consents"
    reports = f"/api/v1/members/{member.id}/bureau-reports"
    ask = {"reason": "new_loan", "loan_amount_cents": 50_000 * KES}

    refused = api.post(reports, json=ask, headers=auth(officer))
    assert refused.status_code == 409 and refused.json["code"] == "consent_required"
    assert calls(bureau_server.url) == 0  # no consent, no call

    given = api.post(consents, json={"form_reference": "CF-2026-0142"}, headers=auth(officer))
    assert given.status_code == 201, given.json
    consent = given.json
    assert (consent["channel"], consent["form_reference"], consent["revoked_at"]) == (
        "staff", "CF-2026-0142", None,
    )  # fmt: skip

    control(bureau_server.url, {"default_answer": "delinquent"})
    first = api.post(reports, json=ask, headers=auth(officer))
    assert first.status_code == 201, first.json
    body = first.json
    assert (body["status"], body["delinquency"], body["from_cache"]) == (
        "answered", "delinquent", False,
    )  # fmt: skip
    assert body["consent_id"] == consent["id"] and body["loan_amount_cents"] == 50_000 * KES
    assert body["listings"] >= 1 and body["worst_days_past_due"] > 90
    again = api.post(reports, json={**ask, "reason": "review"}, headers=auth(officer))
    assert again.status_code == 201 and again.json["from_cache"] is True
    assert again.json["id"] == body["id"] and calls(bureau_server.url) == 1

    # The staff read: figures, never the national ID the bureau was asked about.
    national_id = called_ids(bureau_server.url)[0]
    auditor = make_staff("auditor")
    read = api.get(reports, headers=auth(auditor))
    assert read.status_code == 200, read.json
    assert read.json["consent_in_force"]["id"] == consent["id"]
    assert [r["id"] for r in read.json["reports"]] == [body["id"]]
    assert national_id not in read.get_data(as_text=True)

    revoked = api.delete(consents, headers=auth(officer))
    assert revoked.status_code == 200 and revoked.json == {"member_id": member.id, "revoked": 1}
    assert api.delete(consents, headers=auth(officer)).json["revoked"] == 0
    with unit_of_work(session_factory) as s:
        row = s.get(BureauConsent, consent["id"])
        assert row is not None and row.revoked_at is not None
    assert api.post(reports, json=ask, headers=auth(officer)).json["code"] == "consent_required"
    assert api.get(reports, headers=auth(officer)).json["consent_in_force"] is None
    assert calls(bureau_server.url) == 1

    assert audit_actions(session_factory, member.id) == [
        "bureau.consent_given", "bureau.enquiry", "bureau.reports_read",
        "bureau.consent_revoked", "bureau.reports_read",
    ]  # fmt: skip


def test_the_bureau_down_is_a_kept_unavailable_report_never_reused(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    bureau_server: bureau_standin.StandinHandle,
) -> None:  # fmt: skip
    member = make_member(status="active")
    manager = make_staff("manager")
    consents = f"/api/v1/members/{member.id}/bureau-consents"
    reports = f"/api/v1/members/{member.id}/bureau-reports"
    ask = {"reason": "new_loan", "loan_amount_cents": 0}
    given = api.post(consents, json={"form_reference": "CF-9"}, headers=auth(manager))
    assert given.status_code == 201
    control(bureau_server.url, {"fail_next": 1})
    down = api.post(reports, json=ask, headers=auth(manager))
    assert down.status_code == 201, down.json
    assert down.json["status"] == "unavailable" and down.json["error"]
    back = api.post(reports, json=ask, headers=auth(manager))
    assert back.json["status"] == "answered" and back.json["from_cache"] is False
    # The stand-in lists the calls it answered: the HTTP 500 is not one of them.
    assert back.json["id"] != down.json["id"] and calls(bureau_server.url) == 1
    listed = api.get(reports, headers=auth(manager)).json["reports"]
    assert [r["status"] for r in listed] == ["answered", "unavailable"]


def test_who_may_and_bad_input(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    bureau_server: bureau_standin.StandinHandle,
) -> None:  # fmt: skip
    member = make_member(branch="Nyeri", status="active")
    consents = f"/api/v1/members/{member.id}/bureau-consents"
    reports = f"/api/v1/members/{member.id}/bureau-reports"
    form = {"form_reference": "CF-1"}
    ask = {"reason": "new_loan", "loan_amount_cents": 100}
    teller, auditor = make_staff("teller"), make_staff("auditor")
    assert api.post(consents, json=form, headers=auth(teller)).status_code == 403
    assert api.get(reports, headers=auth(teller)).status_code == 403
    assert api.post(consents, json=form, headers=auth(auditor)).status_code == 403
    assert api.post(reports, json=ask, headers=auth(auditor)).status_code == 403
    assert api.delete(consents, headers=auth(auditor)).status_code == 403
    elsewhere = make_staff("loan_officer", branch="Meru")
    assert api.post(consents, json=form, headers=auth(elsewhere)).status_code == 404
    assert api.get(reports, headers=auth(elsewhere)).status_code == 404
    officer = make_staff("loan_officer")
    assert api.post("/api/v1/members/999999/bureau-consents", json=form,
                    headers=auth(officer)).status_code == 404  # fmt: skip
    for bad in ({}, {"form_reference": ""}, {"form_reference": "x" * 65},
                {"form_reference": "CF-1", "channel": "ussd"}):  # fmt: skip
        got = api.post(consents, json=bad, headers=auth(officer))
        assert got.status_code == 422, (bad, got.json)
    assert (
        api.post(consents, json={"form_reference": "   "}, headers=auth(officer)).status_code == 422
    )
    api.post(consents, json=form, headers=auth(officer))
    bad_asks: tuple[dict[str, object], ...] = (
                {"reason": "curious", "loan_amount_cents": 1},
                {"reason": "new_loan", "loan_amount_cents": -1},
                {"reason": "new_loan", "loan_amount_cents": "10"},
                {"reason": "new_loan"})  # fmt: skip
    for ask_bad in bad_asks:
        got = api.post(reports, json=ask_bad, headers=auth(officer))
        assert got.status_code == 422, (ask_bad, got.json)
    assert calls(bureau_server.url) == 0
