"""Members over the API: masking, audited PII reads, branch isolation (BOLA), documents
checked by content, KYC rejection by SMS, teller cash deposits with Idempotency-Key, statements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from core.kernel.deps import CoreDeps
from core.members.registration import national_id_of
from db.models import AuditEvent, Member, MemberDocument, OutboxMessage
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\x00" * 200
    + b"\xff\xd9"
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 100 + b"\x00\x00\x00\x00IEND\xaeB`\x82"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200
PE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200


def post_file(
    api: FlaskClient, who: Staffer, url: str, data: bytes, name: str = "scan.jpg"
) -> TestResponse:
    """POST ``data`` as the multipart field ``file``, as a browser form would."""
    # Built by hand: the test client spools big bodies to a temp file it never closes.
    boundary = "sacco-test-boundary-7f3a"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return api.post(
        url,
        headers=auth(who),
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def upload(
    api: FlaskClient, who: Staffer, member_id: int, kind: str, data: bytes, name: str = "scan.jpg"
) -> TestResponse:
    return post_file(api, who, f"/api/v1/members/{member_id}/documents?kind={kind}", data, name)


def audit_actions(session_factory: sessionmaker[Session], member_id: int) -> list[str]:
    with unit_of_work(session_factory) as s:
        return list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.target_type == "member", AuditEvent.target_id == str(member_id))
                .order_by(AuditEvent.id)
            )
        )


def test_teller_sees_masked_pii_and_manager_sees_it_audited(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    deps: CoreDeps,
) -> None:
    member = make_member()
    national_id = national_id_of(deps, member)
    teller, manager = make_staff("teller"), make_staff("manager")
    masked = api.get(f"/api/v1/members/{member.id}", headers=auth(teller)).json
    assert masked["pii_masked"] is True
    assert masked["msisdn"] != member.msisdn and masked["msisdn"].endswith(member.msisdn[-3:])
    assert masked["national_id"] == "*" * (len(national_id) - 2) + national_id[-2:]
    assert "member.pii_read" not in audit_actions(session_factory, member.id)

    clear = api.get(f"/api/v1/members/{member.id}", headers=auth(manager)).json
    assert clear["pii_masked"] is False
    assert clear["msisdn"] == member.msisdn
    assert clear["national_id"] == national_id
    assert audit_actions(session_factory, member.id).count("member.pii_read") == 1
    with unit_of_work(session_factory) as s:
        row = s.scalars(select(AuditEvent).where(AuditEvent.action == "member.pii_read")).one()
    assert (row.actor_id, row.actor_name) == (manager.id, manager.username)


def test_branch_staff_cannot_see_other_branches_members(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member]
) -> None:
    ours, theirs = make_member(branch="Nairobi"), make_member(branch="Kisumu")
    teller = make_staff("teller", branch="Nairobi")
    assert api.get(f"/api/v1/members/{ours.id}", headers=auth(teller)).status_code == 200
    for url in (
        f"/api/v1/members/{theirs.id}",
        f"/api/v1/members/{theirs.id}/statement",
    ):
        r = api.get(url, headers=auth(teller))
        assert r.status_code == 404, url  # not 403: ids of other branches are not probeable
    r = api.post(
        f"/api/v1/members/{theirs.id}/deposits",
        headers={**auth(teller), "Idempotency-Key": "till-7-000001"},
        json={"amount_cents": 100_00},
    )
    assert r.status_code == 404
    assert upload(api, teller, theirs.id, "id_front", JPEG).status_code == 404
    found = api.get(f"/api/v1/members?phone={theirs.msisdn}", headers=auth(teller)).json
    assert found["items"] == []
    listed = api.get("/api/v1/members", headers=auth(teller)).json["items"]
    assert {m["branch"] for m in listed} == {"Nairobi"}


def test_manager_assigns_a_branch_and_the_branch_teller_then_sees_the_member(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member = make_member()
    teller = make_staff("teller", branch="Machakos")
    assert api.get(f"/api/v1/members/{member.id}", headers=auth(teller)).status_code == 404
    r = api.put(f"/api/v1/members/{member.id}/branch", headers=auth(make_staff("manager")),
                json={"branch": "Machakos"})  # fmt: skip
    assert r.status_code == 200
    assert r.json["branch"] == "Machakos"
    assert api.get(f"/api/v1/members/{member.id}", headers=auth(teller)).status_code == 200
    assert "member.assign_branch" in audit_actions(session_factory, member.id)


def test_search_by_number_phone_national_id_and_name(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    deps: CoreDeps,
) -> None:
    member = make_member(full_name="Zawadi Odhiambo")
    make_member()
    auditor = make_staff("auditor")
    for query in (
        f"number={member.member_number}",
        f"phone=0{member.msisdn[4:]}",
        f"national_id={national_id_of(deps, member)}",
        "name=zawadi",
    ):
        r = api.get(f"/api/v1/members?{query}", headers=auth(auditor))
        assert r.status_code == 200, (query, r.json)
        assert [m["id"] for m in r.json["items"]] == [member.id], query


def test_search_pages_with_a_cursor(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member]
) -> None:
    ids = {make_member(branch="Pager").id for _ in range(5)}
    teller = make_staff("teller", branch="Pager")
    seen: list[int] = []
    url = "/api/v1/members?limit=2"
    while url:
        page = api.get(url, headers=auth(teller)).json
        seen += [m["id"] for m in page["items"]]
        url = f"/api/v1/members?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert sorted(seen) == sorted(ids)
    bad = api.get("/api/v1/members?cursor=!!!", headers=auth(teller))
    assert bad.status_code == 422


def test_documents_are_checked_by_content_and_stored_encrypted(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    member = make_member()
    teller, officer = make_staff("teller"), make_staff("loan_officer")
    disguised = (
        (ELF, "id.jpg"),
        (PE, "photo.png"),
        (b"GIF89a" + b"\x00" * 50, "x.pdf"),
        (b"\xff\xd8\xff\xe0" + ELF, "header-borrowed.jpg"),  # JPEG signature, ELF inside
        (b"%PDF-", "truncated.pdf"),
    )
    for data, name in disguised:
        r = upload(api, teller, member.id, "id_front", data, name)
        assert r.status_code == 422, name
        assert r.mimetype == "application/problem+json"
        assert "checked by content" in r.json["errors"]["file"][0]
    big = upload(api, teller, member.id, "photo", JPEG[:-2] + b"\x00" * 1_500_000 + b"\xff\xd9")
    assert big.status_code in (413, 422)
    for kind, data in (("id_front", JPEG), ("id_back", PNG), ("signed_form", PDF)):
        r = upload(api, teller, member.id, kind, data)
        assert r.status_code == 201, r.json
    with unit_of_work(session_factory) as s:
        docs = s.scalars(select(MemberDocument).where(MemberDocument.member_id == member.id)).all()
    assert [d.content_type for d in docs] == ["image/jpeg", "image/png", "application/pdf"]
    stored = (tmp_path / "documents" / docs[0].storage_name).read_bytes()
    assert JPEG[:20] not in stored  # encrypted at rest
    listed = api.get(f"/api/v1/members/{member.id}/documents", headers=auth(officer)).json
    assert [d["kind"] for d in listed["items"]] == ["id_front", "id_back", "signed_form"]
    got = api.get(f"/api/v1/members/{member.id}/documents/{docs[0].id}", headers=auth(officer))
    assert got.status_code == 200
    assert got.data == JPEG
    assert got.mimetype == "image/jpeg"
    assert audit_actions(session_factory, member.id).count("member.document_read") == 1
    other = make_member()
    wrong = api.get(f"/api/v1/members/{other.id}/documents/{docs[0].id}", headers=auth(officer))
    assert wrong.status_code == 404


def test_kyc_rejection_tells_the_member_by_sms(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member = make_member()
    officer = make_staff("loan_officer")
    r = api.post(
        f"/api/v1/members/{member.id}/kyc/reject",
        headers=auth(officer),
        json={"reason": "ID photo is blurred"},
    )
    assert r.status_code == 200
    assert r.json["status"] == "pending_kyc"
    with unit_of_work(session_factory) as s:
        sms = s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.member_id == member.id, OutboxMessage.template == "kyc_rejected"
            )
        ).one()
    assert "ID photo is blurred" in sms.body
    assert "member.kyc_reject" in audit_actions(session_factory, member.id)


def test_cash_deposit_needs_an_idempotency_key_and_counts_once(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
) -> None:
    member = make_member(status="active")
    teller = make_staff("teller")
    url = f"/api/v1/members/{member.id}/deposits"
    missing = api.post(url, headers=auth(teller), json={"amount_cents": 500_00})
    assert missing.status_code == 422
    assert "Idempotency-Key" in missing.json["errors"]
    headers = {**auth(teller), "Idempotency-Key": "till-3-2026-11-27-0001"}
    first = api.post(url, headers=headers, json={"amount_cents": 500_00})
    assert first.status_code == 201
    assert first.json["balances"]["savings_cents"] == 500_00
    again = api.post(url, headers=headers, json={"amount_cents": 500_00})
    assert again.status_code == 200
    assert again.json["entry_reference"] == first.json["entry_reference"]
    assert again.json["balances"]["savings_cents"] == 500_00
    conflict = api.post(url, headers=headers, json={"amount_cents": 900_00})
    assert conflict.status_code == 409
    assert conflict.json["code"] == "idempotency_conflict"
    for bad in ({"amount_cents": 0}, {"amount_cents": -5}, {"amount_cents": "500"},
                {"amount_cents": 1.5}, {"amount_cents": 100, "target": "loan"}):  # fmt: skip
        r = api.post(url, headers={**auth(teller), "Idempotency-Key": "till-3-bad-0001"}, json=bad)
        assert r.status_code == 422, bad
    statement = api.get(f"/api/v1/members/{member.id}/statement", headers=auth(teller)).json
    assert [(line["amount_cents"], line["balance_after_cents"]) for line in statement["items"]] == [
        (500_00, 500_00)
    ]


def test_two_tills_with_the_same_key_make_two_deposits(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member]
) -> None:
    member = make_member(status="active")
    url = f"/api/v1/members/{member.id}/deposits"
    for teller in (make_staff("teller"), make_staff("teller")):
        r = api.post(url, headers={**auth(teller), "Idempotency-Key": "shift-1-0001"},
                     json={"amount_cents": 100_00})  # fmt: skip
        assert r.status_code == 201
    assert r.json["balances"]["savings_cents"] == 200_00


def test_suspended_member_cannot_receive_cash(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member]
) -> None:
    member = make_member(status="suspended")
    r = api.post(
        f"/api/v1/members/{member.id}/deposits",
        headers={**auth(make_staff("teller")), "Idempotency-Key": "till-1-suspended-1"},
        json={"amount_cents": 100_00},
    )
    assert r.status_code == 403
    assert r.json["code"] == "member_not_allowed"
