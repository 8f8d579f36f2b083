"""The loan SMS commands (issue 12, part 4) on PostgreSQL: LIMIT, LOAN, ACCEPT and DECLINE
in both languages, each reply one GSM-7 part; ACCEPT pledges nothing (consent is given on
USSD with the PIN), DECLINE declines from the guarantor's own phone only."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.gsm import sms_length
from core.loans import book, guarantees
from core.messaging.sms_commands import InboundSms, handle_inbound_sms
from db.models import Hold, Member, OutboxMessage, SmsOptOut
from db.models_loans import LoanApplication, LoanGuarantee
from tests.loanutil import funded_member, make_product

KES = 100
_ids = count(1)


def text(s: Session, deps: CoreDeps, member: Member, body: str, *, sender: str = "") -> str:
    """Send ``body`` from the member's phone (or ``sender``); the reply's text."""
    gateway_id = f"loan-sms-{next(_ids)}"
    result = handle_inbound_sms(s, deps, InboundSms(gateway_id, sender or member.msisdn, body))
    assert result.reply_template is not None
    reply = s.scalars(
        select(OutboxMessage).where(OutboxMessage.business_key == f"sms_reply:{gateway_id}")
    ).one()
    length = sms_length(reply.body)
    assert (length.encoding, length.parts) == ("GSM-7", 1), reply.body
    return reply.body


def test_limit_gives_the_main_products_limit_or_the_reason(
    db_session: Session, deps: CoreDeps
) -> None:
    member = funded_member(db_session, deps, deposits_cents=20_000 * KES)
    assert text(db_session, deps, member, "LIMIT") == (
        "Umoja SACCO: no loan is open to apply for by phone now. Visit our office."
    )
    make_product(db_session, deps, name="Development loan")
    make_product(db_session, deps, name="Emergency loan")  # not the main one: created later
    assert text(db_session, deps, member, "limit") == (
        "Umoja SACCO: your Development loan limit is KES 60,000 today. To apply dial "
        "*384*44135# and choose Loans."
    )
    assert text(db_session, deps, member, "kikomo") == (
        "Umoja SACCO: kikomo chako cha Development loan leo ni KES 60,000. Kuomba piga "
        "*384*44135# uchague Mikopo."
    )
    poor = funded_member(db_session, deps)
    assert text(db_session, deps, poor, "LIMIT") == (
        "Umoja SACCO: you cannot take a Development loan now: your limit is used up. "
        "Help: dial *384*44135#."
    )
    poor.status = "suspended"
    db_session.flush()
    assert text(db_session, deps, poor, "KIKOMO") == (
        "Umoja SACCO: huwezi kuchukua Development loan sasa: akaunti yako haiko hai. "
        "Msaada: piga *384*44135#."
    )


def test_loan_gives_the_latest_application_or_loan(db_session: Session, deps: CoreDeps) -> None:
    dev = make_product(db_session, deps, name="Development loan").code
    instant = make_product(
        db_session, deps, fees=[], name="Instant loan", guarantor_policy="none",
        guarantor_cover_percent=None, auto_approve_ceiling_cents=20_000 * KES, rate_percent=Decimal("0"),
        method="flat", max_term=3,
    ).code  # fmt: skip
    member = funded_member(db_session, deps, deposits_cents=20_000 * KES)
    assert text(db_session, deps, member, "LOAN") == (
        "Umoja SACCO: you have no loans. Send LIMIT for your loan limit, or dial *384*44135# "
        "to apply."
    )
    application = book.apply_for_loan(
        db_session, deps, member.id, dev, 50_000 * KES, 12, "ussd", "sms-loan-1"
    )
    assert text(db_session, deps, member, "loan") == (
        f"Umoja SACCO: loan {application.reference} of KES 50,000 waits for guarantors: "
        "KES 30,000 still to pledge. Dial *384*44135# to ask."
    )
    book.withdraw_application(db_session, deps, member_id=member.id, application_id=application.id)
    assert text(db_session, deps, member, "MKOPO") == (
        f"Umoja SACCO: mkopo {application.reference} wa KES 50,000: umeondolewa. "
        "Msaada: piga *384*44135#."
    )
    paid = book.apply_for_loan(
        db_session, deps, member.id, instant, 6_000 * KES, 3, "ussd", "sms-loan-2"
    )
    assert paid.status == "disbursed"
    reply = text(db_session, deps, member, "LOAN")
    assert reply.startswith(
        f"Umoja SACCO: loan {paid.reference} balance KES 6,000. Next KES 2,000 due "
    )
    assert reply.endswith(". Arrears KES 0.")


def test_accept_by_sms_pledges_nothing_and_says_how_to_consent(
    db_session: Session, deps: CoreDeps
) -> None:
    dev = make_product(db_session, deps, name="Development loan").code
    borrower = funded_member(db_session, deps, deposits_cents=20_000 * KES, name="Amina Wanjiru")
    guarantor = funded_member(db_session, deps, deposits_cents=50_000 * KES)
    stranger = funded_member(db_session, deps, deposits_cents=50_000 * KES)
    application = book.apply_for_loan(
        db_session, deps, borrower.id, dev, 50_000 * KES, 12, "ussd", "sms-accept-1"
    )
    g = guarantees.request_guarantee(
        db_session, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=guarantor.msisdn, amount_cents=30_000 * KES,
    )  # fmt: skip
    assert text(db_session, deps, guarantor, f"ACCEPT {g.code.lower()}") == (
        f"Umoja SACCO: to pledge KES 30,000 for Amina's loan {application.reference}, dial "
        "*384*44135#, Loans, Guarantee requests; confirm with your PIN."
    )
    assert text(db_session, deps, guarantor, f"kubali {g.code}").startswith(
        "Umoja SACCO: kudhamini KES 30,000 kwa mkopo"
    )
    db_session.refresh(g)
    assert g.status == "requested" and g.hold_id is None
    assert db_session.scalars(select(Hold)).all() == []
    # A code only means something from its guarantor's phone; a wrong code says so.
    for who, body in ((stranger, f"ACCEPT {g.code}"), (guarantor, "ACCEPT K7M3Q9")):
        assert "there is no pending guarantee request with code" in text(
            db_session, deps, who, body
        )
    assert "no pending guarantee request with code -" in text(db_session, deps, guarantor, "ACCEPT")


def test_decline_by_sms_declines_and_tells_the_borrower(
    db_session: Session, deps: CoreDeps
) -> None:
    dev = make_product(db_session, deps, name="Development loan").code
    borrower = funded_member(db_session, deps, deposits_cents=20_000 * KES, name="Amina Wanjiru")
    guarantor = funded_member(db_session, deps, deposits_cents=50_000 * KES)
    stranger = funded_member(db_session, deps, deposits_cents=50_000 * KES)
    application = book.apply_for_loan(
        db_session, deps, borrower.id, dev, 50_000 * KES, 12, "ussd", "sms-decline-1"
    )
    g = guarantees.request_guarantee(
        db_session, deps, application_id=application.id, borrower_id=borrower.id,
        guarantor=guarantor.msisdn, amount_cents=30_000 * KES,
    )  # fmt: skip
    assert "no pending guarantee request" in text(db_session, deps, stranger, f"DECLINE {g.code}")
    db_session.refresh(g)
    assert g.status == "requested"
    assert text(db_session, deps, guarantor, f"kataa {g.code}") == (
        f"Umoja SACCO: umekataa kudhamini mkopo {application.reference} wa Amina. Hakuna amana "
        "yako iliyowekwa dhamana."
    )
    db_session.refresh(g)
    assert g.status == "declined"
    told = db_session.scalars(
        select(OutboxMessage.body).where(
            OutboxMessage.member_id == borrower.id, OutboxMessage.template == "guarantee_declined"
        )
    ).all()
    assert len(told) == 1
    # Declined already: no longer waiting, so a second DECLINE finds nothing to decline.
    assert "no pending guarantee request" in text(db_session, deps, guarantor, f"DECLINE {g.code}")
    assert db_session.scalars(select(LoanGuarantee.status)).all() == ["declined"]


def test_topup_by_sms_tops_nothing_up_and_says_how_on_ussd(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    instant = make_product(
        s, deps, fees=[], name="Instant loan", guarantor_policy="none",
        guarantor_cover_percent=None, auto_approve_ceiling_cents=20_000 * KES,
        rate_percent=Decimal("0"), method="flat", max_term=3, top_up_min_instalments_paid=1,
    ).code  # fmt: skip
    member = funded_member(s, deps, deposits_cents=20_000 * KES)
    assert text(s, deps, member, "TOPUP") == (
        "Umoja SACCO: you have no loan being repaid to top up. Send LIMIT for your loan "
        "limit, or dial *384*44135# to apply."
    )
    loan = book.apply_for_loan(s, deps, member.id, instant, 6_000 * KES, 3, "ussd", "sms-top-1")
    assert loan.status == "disbursed"
    seen = (count_rows(s, LoanApplication), count_rows(s, Hold))
    assert text(s, deps, member, "top up") == (
        f"Umoja SACCO: to top up loan {loan.reference}, dial *384*44135#, Loans, My loans, "
        "choose the loan, Top up; confirm with your PIN."
    )
    assert text(s, deps, member, "ongeza") == (
        f"Umoja SACCO: kuongeza mkopo {loan.reference}, piga *384*44135#, Mikopo, Mikopo "
        "yangu, chagua mkopo, Ongeza; thibitisha kwa PIN."
    )
    assert (count_rows(s, LoanApplication), count_rows(s, Hold)) == seen  # nothing applied
    assert s.scalar(select(SmsOptOut).where(SmsOptOut.msisdn == member.msisdn)) is None


def count_rows(s: Session, model: type) -> int:
    return len(s.scalars(select(model)).all())
