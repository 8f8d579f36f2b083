"""Random sessions of random inputs through ``POST /ussd``: always a 200 with a
``CON``/``END`` screen within 160 characters, and never a change to any balance."""

from __future__ import annotations

import itertools

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.money import Money
from core.ledger.verify import verify_ledger
from core.savings import accounts as savings
from db.models import Account
from tests.ussdutil import SERVICE_CODE, make_member

PIN = "4826"
PHONES = ["+254712000001", "+254722000002", "+254733000003", "+254798765432"]
_sessions = itertools.count()

one_input = st.one_of(
    st.sampled_from(
        ["", "0", "00", "98", "1", "2", "3", "4", "7", "*", "#", "1*", "*1", "**", PIN, "1111"]
    ),
    st.sampled_from(["Wanjiru Kamau", "12345678", "5937", "1,500", "-5", "1e9", "\x00"]),
    st.text(max_size=25),
    st.text(alphabet="0123456789*#", max_size=15),
    st.just("9" * 10_000),
    st.just("\u2603" * 10_000),
)


def balances(session: Session) -> dict[int, tuple[int, int]]:
    rows = session.execute(select(Account.id, Account.balance_cents, Account.held_cents))
    return {r.id: (r.balance_cents, r.held_cents) for r in rows}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    phone=st.sampled_from(PHONES),
    first=st.sampled_from(["", "", "1", "2*1", "3*1*2"]),
    hops=st.lists(one_input, max_size=8),
    raw_text=st.booleans(),
)
def test_any_session_gets_a_screen_and_moves_no_money(
    client: FlaskClient,
    db_session: Session,
    deps: CoreDeps,
    phone: str,
    first: str,
    hops: list[str],
    raw_text: bool,
) -> None:
    if not db_session.scalar(select(Account.id).where(Account.code.like("2000-%")).limit(1)):
        for i, (msisdn, status) in enumerate(
            zip(PHONES[:3], ["active", "pending_kyc", "suspended"], strict=True)
        ):
            member = make_member(
                db_session, deps, msisdn=msisdn, national_id=f"2345678{i}", status=status
            )
            if status != "suspended":
                savings.credit_member(
                    db_session,
                    deps,
                    savings.Credit(
                        member_id=member.id,
                        target="savings",
                        amount_cents=Money.of(1000).cents,
                        source=savings.CreditSource.MPESA,
                        idempotency_key=f"fuzz-{i}",
                        business_key=f"deposit_received:fuzz-{i}",
                    ),
                )
    before = balances(db_session)
    session_id = f"ATUid_fuzz_{next(_sessions)}"
    typed = [first] if first else []
    texts = ["*".join(typed)]
    for value in hops:
        typed.append(value)
        # mostly the gateway's cumulative text; sometimes arbitrary text for the same session
        texts.append(value if raw_text and len(typed) % 3 == 0 else "*".join(typed))
    for text in texts:
        response = client.post(
            "/ussd",
            data={
                "sessionId": session_id,
                "serviceCode": SERVICE_CODE,
                "phoneNumber": phone,
                "networkCode": "63902",
                "text": text,
            },
        )
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        assert body.startswith(("CON ", "END ")), body
        assert len(body) <= 160, body
        if body.startswith("END "):
            break
    after = balances(db_session)
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(v == (0, 0) for k, v in after.items() if k not in before)  # a new member's accounts
    assert verify_ledger(db_session).ok
