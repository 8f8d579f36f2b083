"""bench/accrual.py stays runnable and right (issue 14, "Show"): its set-based seed of 200
accounts gives a ledger verify-ledger accepts, the real accrual runs its first and next
dates, and the bench's naive per-account loop computes, account by account, what the
set-based run writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.accrual import FIRST, Book, accrue, accrued_now, naive_day, sample_ids, seed
from core.ledger.verify import verify_ledger
from db.models_savings import SavingsAccrual
from tests.settings import PG_URL

ACCOUNTS = 200


@pytest.fixture
def book() -> Iterator[Book]:
    """The bench's own database beside the test database (dropped and re-created)."""
    url = make_url(PG_URL)
    url = url.set(database=f"{url.database}_bench_accrual")
    seeded = seed(url.render_as_string(hide_password=False), ACCOUNTS)
    try:
        yield seeded
    finally:
        seeded.dispose()


def test_seed_accrue_and_the_naive_loop_agree(book: Book) -> None:
    with book.factory() as s:
        assert verify_ledger(s).ok
    _, first = accrue(book, FIRST)
    _, second = accrue(book, FIRST + timedelta(days=1))
    assert first > 0 and second > 0
    with book.factory() as s:
        assert s.scalar(select(func.count()).select_from(SavingsAccrual)) == ACCOUNTS
        assert verify_ledger(s).ok
    day3 = FIRST + timedelta(days=2)
    ids = sample_ids(book, 50)
    _, naive = naive_day(book, day3, ids)
    before = accrued_now(book, ids)
    accrue(book, day3)
    after = accrued_now(book, ids)
    assert {i: after[i] - before[i] for i in ids} == naive
    assert sum(naive.values()) > 0
