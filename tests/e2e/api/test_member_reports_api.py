"""Member statements over the API: PDF and CSV downloads that match the ledger, audited;
the registered e-mail (masked without pii:read, audited); e-mailing a statement queues
one outbox e-mail; bad input and missing permissions are 4xx."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta

import matplotlib.image
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.deps import CoreDeps
from db.models import AuditEvent, Member, OutboxMessage
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth


def deposit(api: FlaskClient, teller: Staffer, member: Member, cents: int, key: str) -> None:
    r = api.post(f"/api/v1/members/{member.id}/deposits",
                 headers={**auth(teller), "Idempotency-Key": key}, json={"amount_cents": cents})  # fmt: skip
    assert r.status_code == 201, r.json


def actions(session_factory: sessionmaker[Session], member_id: int) -> list[str]:
    with unit_of_work(session_factory) as s:
        return list(s.scalars(select(AuditEvent.action).where(
            AuditEvent.target_type == "member", AuditEvent.target_id == str(member_id)
        ).order_by(AuditEvent.id)))  # fmt: skip


def test_statement_downloads_as_pdf_and_csv_audited(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member(status="active", full_name="Achieng Otieno")
    teller = make_staff("teller")
    deposit(api, teller, member, 1_000_00, "till-9-stmt-0001")
    deposit(api, teller, member, 234_56, "till-9-stmt-0002")
    today = deps.now().date()
    period = {"from": (today - timedelta(days=30)).isoformat(), "to": today.isoformat()}
    url = f"/api/v1/members/{member.id}/statement/export"

    r = api.get(url, headers=auth(teller), query_string={**period, "format": "csv"})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    savings = [line.split(",") for line in r.get_data(as_text=True).splitlines()
               if line.startswith("Savings,")]  # fmt: skip
    assert [row[3:6] for row in savings] == [
        ["Opening balance", "", "0"],
        ["Deposit", "100000", "100000"],
        ["Deposit", "23456", "123456"],
        ["Closing balance", "", "123456"],
    ]

    r = api.get(url, headers=auth(teller), query_string=period)
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    text = PdfReader(io.BytesIO(r.data)).pages[0].extract_text()
    assert "Achieng Otieno" in text and "1,234.56" in text
    r = api.get(url, headers=auth(teller), query_string={**period, "language": "sw"})
    assert "Salio la mwisho" in PdfReader(io.BytesIO(r.data)).pages[0].extract_text()
    assert actions(session_factory, member.id).count("member.statement_export") == 3


def test_statement_export_refuses_bad_input_and_missing_permission(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member]
) -> None:
    member = make_member(status="active", branch="Nairobi")
    teller = make_staff("teller", branch="Nairobi")
    url = f"/api/v1/members/{member.id}/statement/export"
    ok = {"from": "2026-01-01", "to": "2026-01-31"}
    for bad in ({"from": "2026-02-01", "to": "2026-01-01"}, {"from": "2026-13-01", "to": "2026-01-31"},
                {"to": "2026-01-31"}, {**ok, "format": "xlsx"}, {**ok, "language": "fr"},
                {"from": "2019-01-01", "to": "2026-01-31"}):  # fmt: skip
        r = api.get(url, headers=auth(teller), query_string=bad)
        assert r.status_code == 422, (bad, r.status_code)
    assert api.get(url, headers=auth(make_staff("admin")), query_string=ok).status_code == 403
    assert api.get(url, query_string=ok).status_code == 401
    other = make_staff("teller", branch="Kisumu")
    assert api.get(url, headers=auth(other), query_string=ok).status_code == 404
    r = api.get("/api/v1/members/999999999/statement/export", headers=auth(teller), query_string=ok)
    assert r.status_code == 404


def test_registered_email_is_masked_audited_and_statements_are_queued_to_it(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member = make_member(status="active")
    teller, manager = make_staff("teller"), make_staff("manager")
    email_url = f"/api/v1/members/{member.id}/email"
    mail_url = f"/api/v1/members/{member.id}/statement/email"
    period = {"from": "2026-01-01", "to": "2026-03-31"}

    r = api.post(mail_url, headers=auth(teller), json=period)
    assert r.status_code == 409 and r.json["code"] == "no_email"
    for bad in ({"email": "not-an-address"}, {"email": "a@b.example, c@d.example"},
                {"email": "x@y.example\r\nBcc: z@z.example"}, {}, {"email": 5},
                {"email": "a" * 250 + "@b.example"}):  # fmt: skip
        assert api.put(email_url, headers=auth(teller), json=bad).status_code == 422, bad
    assert api.put(email_url, headers=auth(make_staff("auditor")),
                   json={"email": "a@b.example"}).status_code == 403  # fmt: skip

    r = api.put(email_url, headers=auth(teller), json={"email": " Mary.W@Example.COM "})
    assert r.status_code == 200
    assert r.json == {"member_id": member.id, "email": "M***@example.com", "pii_masked": True}
    r = api.put(email_url, headers=auth(manager), json={"email": "mary.w@example.com"})
    assert r.json["email"] == "mary.w@example.com" and r.json["pii_masked"] is False
    with unit_of_work(session_factory) as s:
        stored = s.get(Member, member.id)
        assert stored is not None and stored.email_ciphertext is not None
        assert b"example.com" not in stored.email_ciphertext  # a vault token, not the address
        audited = s.scalars(select(AuditEvent).where(AuditEvent.action == "member.email_set",
                            AuditEvent.target_id == str(member.id))).all()  # fmt: skip
        assert [json.loads(e.after or "{}") for e in audited][-1] == {"email": "m***@example.com"}

    headers = {**auth(teller), "X-Request-ID": "req-statement-0001"}
    r = api.post(mail_url, headers=headers, json=period)
    assert r.status_code == 202 and r.json["to"] == "m***@example.com"
    again = api.post(mail_url, headers=headers, json=period)  # the same request: one e-mail
    assert again.json["outbox_id"] == r.json["outbox_id"]
    with unit_of_work(session_factory) as s:
        row = s.get(OutboxMessage, r.json["outbox_id"])
        assert row is not None
        assert (row.channel, row.template, row.recipient, row.member_id) == (
            "email",
            "member_statement",
            "mary.w@example.com",
            member.id,
        )
    assert api.post(mail_url, headers=auth(teller),
                    json={"from": "2026-03-01", "to": "2026-01-01"}).status_code == 422  # fmt: skip
    assert "member.statement_email" in actions(session_factory, member.id)


def test_membership_figures_and_charts_for_managers_and_auditors(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    deps: CoreDeps,
) -> None:  # fmt: skip
    manager, auditor, teller = make_staff("manager"), make_staff("auditor"), make_staff("teller")
    today = deps.now().date()
    period = {"from": today.replace(day=1).isoformat(), "to": today.isoformat()}
    before = api.get("/api/v1/reports/membership", headers=auth(manager), query_string=period)
    assert before.status_code == 200
    member = make_member(status="active")
    deposit(api, teller, member, 15_000_00, "till-9-band-0001")
    after = api.get("/api/v1/reports/membership", headers=auth(auditor), query_string=period).json
    assert after["growth"][-1]["joined"] == before.json["growth"][-1]["joined"] + 1
    assert after["states"]["active"] == before.json["states"]["active"] + 1
    band = next(b for b in after["deposit_bands"] if b["low_cents"] == 10_000_00)
    was = next(b for b in before.json["deposit_bands"] if b["low_cents"] == 10_000_00)
    assert (band["members"], band["total_cents"]) == (was["members"] + 1,
                                                      was["total_cents"] + 15_000_00)  # fmt: skip

    png = api.get("/api/v1/reports/charts/deposits-loans", headers=auth(auditor),
                  query_string=period)  # fmt: skip
    assert png.status_code == 200 and png.mimetype == "image/png"
    image = matplotlib.image.imread(io.BytesIO(png.data), format="png")
    assert image.shape[:2] == (400, 800)  # 8 x 4 inches at 100 dpi
    svg = api.get("/api/v1/reports/charts/membership", headers=auth(manager),
                  query_string={**period, "format": "svg"})  # fmt: skip
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data

    par = api.get("/api/v1/reports/charts/par", headers=auth(auditor), query_string=period)
    assert par.status_code == 200 and par.data.startswith(b"\x89PNG")
    url = "/api/v1/reports/charts/deposits-loans"
    assert api.get(url, headers=auth(teller), query_string=period).status_code == 403
    assert api.get("/api/v1/reports/membership", headers=auth(teller),
                   query_string=period).status_code == 403  # fmt: skip
    assert api.get("/api/v1/reports/charts/pie", headers=auth(manager),
                   query_string=period).status_code == 404  # fmt: skip
    for bad in ({**period, "format": "gif"}, {"from": "2000-01-01", "to": "2026-01-01"},
                {"from": "2026-02-01", "to": "2026-01-01"}, {"to": "2026-01-01"}):  # fmt: skip
        assert api.get(url, headers=auth(manager), query_string=bad).status_code == 422, bad
