"""Migrations: one head, and the whole chain goes down and up again on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    LargeBinary,
    TableClause,
    column,
    delete,
    insert,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from db.migrate import MIGRATIONS, alembic_config, downgrade, upgrade
from db.session import make_engine


def test_there_is_exactly_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == ["0033"]
    assert MIGRATIONS.is_dir()


def test_downgrade_to_base_and_upgrade_again_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"accounts", "postings", "members", "outbox_messages", "ussd_session_events"} <= tables


def endpoints_table(*, encrypted: bool) -> TableClause:
    """``webhook_endpoints`` as revision 0007 (``encrypted=False``) or 0008 has it."""
    columns = ["name", "url", "secret", "events", "active", "created_at"]
    extra = [column("secret_ciphertext", LargeBinary)] if encrypted else []
    return table("webhook_endpoints", *(column(c) for c in columns), *extra)


def test_0008_keeps_legacy_secrets_and_will_not_downgrade_away_an_encrypted_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url, "0007")
    legacy = {"url": "https://bank.example/hook", "events": "*", "active": True}
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(endpoints_table(encrypted=False)).values(
                name="Bank", secret="whsec_legacy", created_at=datetime.now(UTC), **legacy
            )
        )
    engine.dispose()

    upgrade(url)
    encrypted = endpoints_table(encrypted=True)
    engine = make_engine(url)
    with engine.begin() as conn:
        rows = conn.execute(select(encrypted.c.secret, encrypted.c.secret_ciphertext)).all()
        assert [tuple(r) for r in rows] == [("whsec_legacy", None)]  # kept until rotated
        conn.execute(
            insert(encrypted).values(
                name="New",
                secret=None,
                secret_ciphertext=b"gAAAA-not-a-real-token",
                created_at=datetime.now(UTC),
                **legacy,
            )
        )
    engine.dispose()

    with pytest.raises(RuntimeError, match="1 webhook endpoint"):
        downgrade(url, "0007")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(delete(encrypted).where(encrypted.c.name == "New"))
    engine.dispose()
    downgrade(url, "0007")
    engine = make_engine(url)
    columns = {c["name"] for c in inspect(engine).get_columns("webhook_endpoints")}
    with engine.connect() as conn:
        secrets = conn.scalars(select(endpoints_table(encrypted=False).c.secret)).all()
        assert secrets == ["whsec_legacy"]
    engine.dispose()
    assert "secret_ciphertext" not in columns


def test_0010_records_the_receipts_already_credited_so_no_path_credits_them_again(
    tmp_path: Path,
) -> None:
    """A paybill confirmation arriving after the upgrade for a receipt an STK callback
    credited before it must find that receipt taken."""
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url, "0009")
    raw = create_engine(url)  # no foreign keys: only the rows this migration reads
    now = datetime.now(UTC).isoformat()
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mpesa_stk_requests (id, member_id, target, amount_cents, msisdn, "
                "idempotency_key, status, receipt, attempts, created_at) VALUES "
                "(1, 1, 'savings', 100, '+254700000001', 'k1', 'succeeded', 'RA00000001', 1, :t),"
                "(2, 1, 'savings', 100, '+254700000001', 'k2', 'succeeded', NULL, 1, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO mpesa_c2b_payments (id, trans_id, trans_time, amount_cents, bill_ref, "
                "shortcode, msisdn_masked, payer_name, status, created_at) VALUES "
                "(1, 'RA00000001', :t, 100, '', '', '', '', 'duplicate_of_stk', :t),"
                "(2, 'RB00000002', :t, 100, '', '', '', '', 'credited', :t)"
            ),
            {"t": now},
        )
    raw.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT receipt, source, stk_request_id, c2b_payment_id FROM mpesa_receipts "
                "ORDER BY receipt"
            )
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("RA00000001", "stk", 1, None),
        ("RB00000002", "c2b", None, 2),
    ]
    downgrade(url, "0009")


def test_0011_redacts_reset_codes_already_sent_and_keeps_those_still_to_send(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url, "0009")
    outbox = table(
        "outbox_messages",
        *(column(c) for c in ("business_key", "channel", "category", "recipient", "template",
                              "language", "body", "status", "attempts", "next_attempt_at",
                              "created_at")),
    )  # fmt: skip
    now = datetime.now(UTC)
    rows = [("sent", "pin_reset_code"), ("pending", "pin_reset_code"), ("sent", "sms_start_ok")]
    engine = make_engine(url)
    with engine.begin() as conn:
        for i, (status, template) in enumerate(rows):
            conn.execute(
                insert(outbox).values(
                    business_key=f"k{i}", channel="sms", category="transactional",
                    recipient="+254712000001", template=template, language="en",
                    body=f"your PIN reset code is 48261{i}", status=status, attempts=1,
                    next_attempt_at=now, created_at=now,
                )
            )  # fmt: skip
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        bodies = [b for (b,) in conn.execute(select(outbox.c.body).order_by(outbox.c.business_key))]
    engine.dispose()
    assert "482610" not in bodies[0] and "redacted" in bodies[0]
    assert bodies[1].endswith("482611")  # still to be sent: the member needs it
    assert bodies[2].endswith("482612")  # not secret-bearing


def _entries_at(conn: Connection, moments: list[datetime]) -> None:
    """Journal entries as revision 0011 has them (no postings: only the entry rows matter)."""
    for i, moment in enumerate(moments):
        conn.execute(
            text(
                "INSERT INTO journal_entries (idempotency_key, fingerprint, reference, kind, "
                "memo, created_at) VALUES (:k, 'f', :r, 'deposit.cash', '', :t)"
            ),
            {"k": f"k{i}", "r": f"SREF{i}", "t": moment},
        )


# 21:30 UTC on 28 February is already 1 March in Nairobi; 20:59 UTC is still 28 February.
MOMENTS = [datetime(2026, 2, 28, 21, 30, tzinfo=UTC), datetime(2026, 2, 28, 20, 59, tzinfo=UTC)]
NAIROBI_DATES = [date(2026, 3, 1), date(2026, 2, 28)]


def test_0012_dates_existing_entries_by_their_nairobi_day_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    upgrade(url, "0011")
    engine = make_engine(url)
    with engine.begin() as conn:
        _entries_at(conn, MOMENTS)
        conn.execute(  # the first entry's postings: the rebuilt table keeps their references
            text(
                "INSERT INTO postings (entry_id, account_id, amount_cents, balance_after_cents) "
                "VALUES (1, 1, 500, 500), (1, 2, -500, 500)"
            )
        )
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        dates = conn.scalars(text("SELECT value_date FROM journal_entries ORDER BY id")).all()
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        assert conn.scalar(text("SELECT count(*) FROM postings WHERE entry_id = 1")) == 2
    engine.dispose()
    assert [date.fromisoformat(str(d)) for d in dates] == NAIROBI_DATES
    downgrade(url, "0011")
    upgrade(url)


@pytest.fixture
def scratch_pg() -> Iterator[str]:
    """A PostgreSQL database of this test's own (dropped after): migrations run in it."""
    import psycopg2

    from tests.settings import PG_ADMIN_DSN, PG_URL

    url = make_url(PG_URL)
    name = f"{url.database}_m0012"

    def run(sql: str) -> None:
        conn = psycopg2.connect(PG_ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    run(f'DROP DATABASE IF EXISTS "{name}"')
    run(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}"')


def test_0012_backfills_past_the_immutability_trigger_and_keeps_it_on_postgresql(
    scratch_pg: str,
) -> None:
    upgrade(scratch_pg, "0011")
    engine = make_engine(scratch_pg)
    with engine.begin() as conn:
        _entries_at(conn, MOMENTS)
    upgrade(scratch_pg)
    with engine.connect() as conn:
        dates = conn.scalars(text("SELECT value_date FROM journal_entries ORDER BY id")).all()
        assert dates == NAIROBI_DATES
        with pytest.raises(DBAPIError, match="immutable"):
            conn.execute(text("UPDATE journal_entries SET value_date = '2020-01-01'"))
    engine.dispose()
    downgrade(scratch_pg, "0011")
    engine = make_engine(scratch_pg)
    columns = {c["name"] for c in inspect(engine).get_columns("journal_entries")}
    engine.dispose()
    assert "value_date" not in columns


LOAN_TABLES = {"loan_products", "loan_product_versions", "loan_product_fees"}


def test_0014_loan_products_go_down_and_up_again_on_postgresql(scratch_pg: str) -> None:
    upgrade(scratch_pg)
    engine = make_engine(scratch_pg)
    assert set(inspect(engine).get_table_names()) >= LOAN_TABLES
    with engine.connect() as conn:
        triggers = set(
            conn.scalars(
                text("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'loan_product%immutable'")
            )
        )
        assert triggers == {"loan_product_versions_immutable", "loan_product_fees_immutable"}
    engine.dispose()
    downgrade(scratch_pg, "0013")
    engine = make_engine(scratch_pg)
    assert not LOAN_TABLES & set(inspect(engine).get_table_names())
    engine.dispose()
    upgrade(scratch_pg)
    engine = make_engine(scratch_pg)
    assert set(inspect(engine).get_table_names()) >= LOAN_TABLES
    engine.dispose()
