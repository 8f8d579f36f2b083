"""Money invariant over the API: whatever mix of new keys, replays and conflicting replays
a till sends, the balance is the sum of each key's first amount up to the till limit (above
it the first use is a pending request that posts nothing yet), and the ledger balances."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from core.ledger.verify import verify_ledger
from db.models import Member
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth

TILL_LIMIT_CENTS = 100_000_00  # CASH_DEPOSIT_TILL_LIMIT_KES's default

calls = st.lists(
    st.tuples(st.integers(0, 4), st.integers(1, 2 * TILL_LIMIT_CENTS)), min_size=1, max_size=12
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=calls)
def test_balance_is_the_sum_of_first_amounts_per_key(
    api: FlaskClient,
    make_staff: Callable[..., Staffer],
    make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
    calls: list[tuple[int, int]],
) -> None:
    member = make_member(status="active")
    teller = make_staff("teller")
    url = f"/api/v1/members/{member.id}/deposits"
    first: dict[int, int] = {}
    for key, cents in calls:
        r = api.post(url, headers={**auth(teller), "Idempotency-Key": f"prop-{member.id}-{key}"},
                     json={"amount_cents": cents})  # fmt: skip
        pending = cents > TILL_LIMIT_CENTS
        if key not in first:
            first[key] = cents
            assert r.status_code == (202 if pending else 201)
        elif cents == first[key]:
            assert r.status_code == (202 if pending else 200)
        else:
            assert r.status_code == 409
    detail = api.get(f"/api/v1/members/{member.id}", headers=auth(teller)).json
    posted = [c for c in first.values() if c <= TILL_LIMIT_CENTS]
    assert detail["balances"]["savings_cents"] == sum(posted)
    with unit_of_work(session_factory) as s:
        assert verify_ledger(s).ok
