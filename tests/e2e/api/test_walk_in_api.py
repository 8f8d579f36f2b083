"""Issue 14, part 3: staff register a walk-in (next of kin, beneficiaries summing to 100,
KYC at once for ``kyc:verify``), replace the nomination, and change a member's phone
through maker-checker; the old number stops working on USSD at once."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from db.models import AuditEvent, Member, OutboxMessage
from db.models_members import MemberBeneficiary, MemberPhoneChange
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth
from tests.ussdutil import Phone


def phone() -> str:
    return f"+2547{secrets.randbelow(10**8):08d}"


def national_id() -> str:
    return str(30000000 + secrets.randbelow(10**7))


def walk_in(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "full_name": "Achieng Odhiambo",
        "msisdn": phone(),
        "national_id": national_id(),
        "date_of_birth": "1990-04-12",
        "language": "sw",
        "consent": True,
        "next_of_kin": {"name": "Otieno Odhiambo", "relationship": "Spouse", "phone": phone()},
        "beneficiaries": [
            {"name": "Akinyi Odhiambo", "relationship": "child", "id_kind": "birth_certificate",
             "id_number": "BC 123456", "share_percent": 33.33},
            {"name": "Omondi Odhiambo", "relationship": "child", "id_kind": "birth_certificate",
             "id_number": "BC 123457", "share_percent": "33.33"},
            {"name": "Otieno Odhiambo", "relationship": "spouse", "id_kind": "national_id",
             "id_number": "22 334 455", "share_percent": 33.34},
        ],
    }  # fmt: skip
    body.update(overrides)
    return body


def register(api: FlaskClient, who: Staffer, body: dict[str, Any], key: str | None = None) -> Any:
    key = key or f"walkin-{secrets.token_hex(6)}"
    return api.post("/api/v1/members", headers={**auth(who), "Idempotency-Key": key}, json=body)


def sms(factory: sessionmaker[Session], template: str, recipient: str | None = None) -> list[str]:
    with unit_of_work(factory) as s:
        query = select(OutboxMessage.recipient).where(OutboxMessage.template == template)
        if recipient is not None:
            query = query.where(OutboxMessage.recipient == recipient)
        return list(s.scalars(query))


def count_members(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as s:
        return int(s.scalar(select(func.count()).select_from(Member)) or 0)


def test_a_teller_registers_a_walk_in_at_their_branch_and_a_replay_is_the_same_member(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    teller = make_staff("teller", branch="Kisumu")
    body = walk_in()
    r = register(api, teller, body, key="till-3-walkin-0001")
    assert r.status_code == 201, r.json
    out = r.json
    assert (out["status"], out["branch"], out["language"]) == ("pending_kyc", "Kisumu", "sw")
    assert out["pii_masked"] is True and out["date_of_birth"] == "****-**-**"
    assert out["next_of_kin"] == {"name": "O***** O*******", "relationship": "spouse",
                                  "phone": out["next_of_kin"]["phone"]}  # fmt: skip
    assert [b["share_percent"] for b in out["beneficiaries"]] == ["33.33", "33.33", "33.34"]
    assert [b["id_number"] for b in out["beneficiaries"]][2] == "******55"
    assert sms(session_factory, "member_registered") == ["+254" + body["msisdn"][4:]]
    assert sms(session_factory, "kyc_approved") == []
    assert sms(session_factory, "pin_reset_code") == sms(session_factory, "member_registered")
    first_dial = Phone(api, sms(session_factory, "member_registered")[0]).dial()
    assert first_dial == "CON Andika nambari ya kubadilisha PIN kutoka kwenye SMS yetu:"

    again = register(api, teller, body, key="till-3-walkin-0001")
    assert (again.status_code, again.json["id"]) == (200, out["id"])
    assert len(sms(session_factory, "member_registered")) == 1
    assert len(sms(session_factory, "pin_reset_code")) == 1
    other = register(api, teller, walk_in(), key="till-3-walkin-0001")
    assert other.status_code == 409 and other.json["code"] == "idempotency_conflict"

    manager = make_staff("manager")
    clear = api.get(f"/api/v1/members/{out['id']}", headers=auth(manager)).json
    assert clear["date_of_birth"] == "1990-04-12"
    assert clear["next_of_kin"]["name"] == "Otieno Odhiambo"
    assert clear["next_of_kin"]["phone"] == body["next_of_kin"]["phone"]
    assert [(b["name"], b["id_kind"], b["id_number"]) for b in clear["beneficiaries"]] == [
        ("Akinyi Odhiambo", "birth_certificate", "BC123456"),
        ("Omondi Odhiambo", "birth_certificate", "BC123457"),
        ("Otieno Odhiambo", "national_id", "22334455"),
    ]
    with unit_of_work(session_factory) as s:  # at rest: vault tokens, never the names
        raw = s.execute(
            text("SELECT name_ciphertext, id_number_ciphertext FROM member_beneficiaries "
                 "WHERE member_id = :m"), {"m": out["id"]},
        ).all()  # fmt: skip
        actions = list(
            s.scalars(select(AuditEvent.action).where(AuditEvent.target_id == str(out["id"])))
        )
    assert raw and all(b"Odhiambo" not in bytes(n) and b"123456" not in bytes(i) for n, i in raw)
    assert "member.register" in actions and "member.pii_read" in actions


def test_a_loan_officer_verifies_kyc_at_once_and_head_office_may_name_a_branch(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    officer = make_staff("loan_officer")
    r = register(api, officer, walk_in(branch="Nakuru"))
    assert r.status_code == 201, r.json
    assert (r.json["status"], r.json["branch"]) == ("active", "Nakuru")
    assert len(sms(session_factory, "kyc_approved")) == 1
    teller = make_staff("teller", branch="Kisumu")
    elsewhere = register(api, teller, walk_in(branch="Nakuru"))
    assert elsewhere.status_code == 422 and elsewhere.json["code"] == "invalid_input"
    assert register(api, make_staff("auditor"), walk_in()).status_code == 403


def test_bad_walk_ins_get_a_clear_422_or_409_and_change_nothing(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    teller = make_staff("teller")
    taken = make_member()
    before = count_members(session_factory)
    shares = walk_in()["beneficiaries"]
    shares[2]["share_percent"] = 33.33
    r = register(api, teller, walk_in(beneficiaries=shares))
    assert r.status_code == 422
    assert "sum to exactly 100 (they sum to 99.99)" in r.json["detail"]
    today = date.today()  # the app's clock in these tests is the wall clock
    young = date(today.year - 17, today.month, min(today.day, 28)).isoformat()
    cases = [
        walk_in(date_of_birth=young),
        walk_in(msisdn="12"),
        walk_in(next_of_kin={"name": "Otieno", "relationship": "spouse", "phone": phone()}),
        walk_in(beneficiaries=[{**shares[0], "share_percent": 100.001}]),
        walk_in(consent=False),
    ]
    for body in cases:
        assert register(api, teller, body).status_code == 422, body
    assert register(api, teller, walk_in(msisdn=taken.msisdn)).status_code == 409
    r = api.post("/api/v1/members", headers=auth(teller), json=walk_in())
    assert r.status_code == 422  # no Idempotency-Key
    assert count_members(session_factory) == before


def test_staff_replace_the_nomination_with_shares_summing_to_100(
    api: FlaskClient, make_staff: Callable[..., Staffer], session_factory: sessionmaker[Session]
) -> None:
    officer = make_staff("loan_officer")
    member_id = register(api, officer, walk_in()).json["id"]
    url = f"/api/v1/members/{member_id}/beneficiaries"
    one = {"name": "Mary Atieno", "relationship": "sister", "id_kind": "national_id",
           "id_number": "12345678", "share_percent": 60}  # fmt: skip
    two = {**one, "name": "John Ouma", "relationship": "brother", "share_percent": 40}
    r = api.put(url, headers=auth(officer), json={"beneficiaries": [one, two]})
    assert r.status_code == 200, r.json
    assert [(b["name"], b["share_percent"]) for b in r.json["beneficiaries"]] == [
        ("Mary Atieno", "60.00"), ("John Ouma", "40.00"),
    ]  # fmt: skip
    bad = api.put(
        url, headers=auth(officer), json={"beneficiaries": [one, {**two, "share_percent": 41}]}
    )
    assert bad.status_code == 422 and "they sum to 101" in bad.json["detail"]
    with unit_of_work(session_factory) as s:
        kept = s.scalars(
            select(MemberBeneficiary.share_percent).where(MemberBeneficiary.member_id == member_id)
        ).all()
        audited = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "member.beneficiaries_replace")
        )
    assert sorted(kept) == [40, 60] and audited == 1
    assert (
        api.put(url, headers=auth(make_staff("auditor")), json={"beneficiaries": [one]}).status_code
        == 403
    )


def _ask(api: FlaskClient, who: Staffer, member_id: int, **body: Any) -> Any:
    return api.post(f"/api/v1/members/{member_id}/phone-change", headers=auth(who),
                    json={"id_checked": True, "note": "lost SIM", **body})  # fmt: skip


def test_a_phone_change_is_approved_by_another_and_the_old_number_stops_working(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:
    member, other = make_member(status="active"), make_member()
    old, new = member.msisdn, phone()
    teller, manager = make_staff("teller"), make_staff("manager")

    live = Phone(api, old)
    assert live.dial().startswith("CON ") and "Check balances" in live.last

    assert _ask(api, teller, member.id, msisdn="0712").status_code == 422
    assert _ask(api, teller, member.id, msisdn=old).status_code == 422
    assert _ask(api, teller, member.id, msisdn=other.msisdn).status_code == 409
    assert _ask(api, teller, member.id, msisdn=new, id_checked=False).status_code == 422
    req = _ask(api, teller, member.id, msisdn="07" + new[5:])
    assert req.status_code == 202, req.json
    assert new not in str(req.json) and req.json["payload"]["msisdn_masked"].endswith(new[-3:])

    own = api.post(f"/api/v1/approvals/{req.json['id']}/approve", headers=auth(teller), json={})
    assert own.status_code == 403  # maker is never checker
    with unit_of_work(session_factory) as s:
        assert s.get_one(Member, member.id).msisdn == old  # nothing changed yet
    ok = api.post(f"/api/v1/approvals/{req.json['id']}/approve", headers=auth(manager), json={})
    assert ok.status_code == 200 and ok.json["status"] == "approved", ok.json

    with unit_of_work(session_factory) as s:
        assert s.get_one(Member, member.id).msisdn == new
        assert s.scalar(select(func.count()).select_from(MemberPhoneChange)) == 1
        audited = list(
            s.scalars(
                select(AuditEvent.after).where(
                    AuditEvent.action.like("approval.%"),
                    AuditEvent.target_id == str(req.json["id"]),
                )
            )
        )
    assert new not in str(audited) and old not in str(audited)
    assert sms(session_factory, "phone_changed_old") == [old]
    assert sms(session_factory, "phone_changed_new") == [new]

    after = live.send("1")  # the live session is gone: its next hop is a stranger's
    assert after.startswith("CON Register (1/4)") and "Check balances" not in after
    fresh = Phone(api, old).dial()
    assert fresh.startswith("CON Welcome to") and "Choose language" in fresh  # unregistered
    assert "Check balances" in Phone(api, new).dial()
    for n, sender in enumerate((old, new)):  # SMS commands find the member by phone too
        form = {"id": f"ATXid_walkin_{n}", "from": sender, "to": "22384", "text": "BAL"}
        assert api.post("/sms/inbound", data=form).status_code == 200
    assert sms(session_factory, "sms_how_to_join", old) == [old]
    assert sms(session_factory, "sms_balance", new) == [new]
