"""The member's consent to credit checks on USSD (Loans, 98 More, Credit checks): behind
the PIN, shown with whether it is in force and until when, given after a confirmation
(one ``bureau_consents`` row, channel ``ussd``, audited), then stopped the same way; in
English and Swahili. Nothing is written before the confirmation."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.scoring import bureau
from db.models import AuditEvent
from db.models_scoring import BureauConsent
from tests.integration.test_ussd_loans import LOANS_EN, loans_menu
from tests.ussdutil import make_member


def consents(s: Session, member_id: int) -> list[BureauConsent]:
    return list(
        s.scalars(
            select(BureauConsent)
            .where(BureauConsent.member_id == member_id)
            .order_by(BureauConsent.id)
        )
    )


def test_allowing_and_stopping_credit_checks_behind_the_pin(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = make_member(s, deps)
    phone = loans_menu(client, member)
    assert phone.last == LOANS_EN
    assert phone.send("98") == "CON Loans\n7. Credit checks (CRB)\n0 Back 00 Home"
    assert phone.send("7") == (
        "CON Checks of your credit record at a credit bureau (CRB): not allowed\n"
        "1. Allow\n2. Stop\n0 Back 00 Home"
    )
    assert phone.send("1") == (
        "CON Allow the SACCO to check your credit record at a credit bureau (CRB) when you "
        "apply for a loan? For 1 year.\n1. Confirm\n2. Cancel"
    )
    assert consents(s, member.id) == []  # nothing before the confirmation
    done = phone.send("1")  # the PIN was given at the Loans menu
    [row] = consents(s, member.id)
    assert (row.channel, row.form_reference, row.revoked_at) == ("ussd", "", None)
    assert row.expires_at == row.given_at + timedelta(days=bureau.CONSENT_VALID_DAYS)
    until = f"{business_date(row.expires_at):%d/%m/%Y}"
    assert done == (
        f"END Done: the SACCO may check your credit record until {until}. To stop: Loans, "
        "Credit checks."
    )
    assert bureau.active_consent(s, member.id, row.given_at + timedelta(days=1)) == row

    # Asking again shows it in force; stopping it: a confirmation, then revoked.
    again = loans_menu(client, member)
    again.send("98")
    assert again.send("7") == (
        f"CON Checks of your credit record at a credit bureau (CRB): allowed until {until}\n"
        "1. Allow\n2. Stop\n0 Back 00 Home"
    )
    assert again.send("2") == (
        "CON Stop the SACCO checking your credit record? Loans are then decided on your SACCO "
        "record only.\n1. Confirm\n2. Cancel"
    )
    assert again.send("1") == (
        "END Credit checks stopped. To allow them again: Loans, Credit checks."
    )
    s.expire_all()
    [row] = consents(s, member.id)
    assert row.revoked_at is not None and row.revoked_by == f"member:{member.id}"
    actions = s.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.action.like("bureau.consent_%"),
               AuditEvent.target_id == str(member.id))
        .order_by(AuditEvent.id)
    ).all()  # fmt: skip
    assert list(actions) == ["bureau.consent_given", "bureau.consent_revoked"]


def test_in_swahili_and_a_cancel_writes_nothing(
    client: FlaskClient, db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = make_member(s, deps)
    member.language = "sw"
    s.flush()
    phone = loans_menu(client, member)
    phone.send("98")
    assert phone.send("7") == (
        "CON Ukaguzi wa rekodi yako ya mikopo kwa CRB: haujaruhusu\n"
        "1. Ruhusu\n2. Sitisha\n0 Rudi 00 Mwanzo"
    )
    assert phone.send("1").startswith("CON Ruhusu SACCO ikague rekodi yako ya mikopo kwa CRB")
    assert phone.send("2").startswith("END ")
    assert consents(s, member.id) == []
