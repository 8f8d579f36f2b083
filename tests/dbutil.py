"""Test database plumbing: create, migrate once, snapshot seed rows, reset committed data."""

from __future__ import annotations

import time
from typing import Any

import psycopg2
from sqlalchemy import Engine, MetaData, insert, text
from sqlalchemy.exc import OperationalError

from db.base import Base
from db.migrate import upgrade
from db.session import make_engine
from tests.settings import PG_ADMIN_DSN, PG_DBNAME


def create_pg_database() -> None:
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DBNAME,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{PG_DBNAME}"')
    conn.close()


def fresh_migrated_engine(url: str) -> Engine:
    """Empty the schema, run every migration, return an engine."""
    engine = make_engine(url, pool_size=12)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(url)
    return engine


class Snapshot:
    """The rows migrations seed (chart of accounts, ...), to restore after committed tests."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.metadata = MetaData()
        self.metadata.reflect(bind=engine)
        self.tables = [t for t in self.metadata.sorted_tables if t.name != "alembic_version"]
        self.rows: dict[str, list[dict[str, Any]]] = {}
        with engine.connect() as conn:
            for table in self.tables:
                self.rows[table.name] = [dict(r._mapping) for r in conn.execute(table.select())]

    def restore(self) -> None:
        """Back to the migrated seed rows. A straggler of the previous test (a callback
        still being served, a thread finishing) may hold a row lock that deadlocks with
        TRUNCATE: PostgreSQL aborts one side, so wait for the straggler and try again."""
        for attempt in range(1, 8):
            try:
                self._restore_once()
                return
            except OperationalError:
                if attempt == 7:
                    raise
                time.sleep(0.5 * attempt)

    def _restore_once(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                names = ", ".join(f'"{t.name}"' for t in self.tables)
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(self.tables):
                    conn.execute(table.delete())
            for table in self.tables:
                if self.rows[table.name]:
                    conn.execute(insert(table), self.rows[table.name])
            if self.engine.dialect.name == "postgresql":
                for table in self.tables:
                    if "id" in table.c and self.rows[table.name]:
                        conn.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                f'(SELECT MAX(id) FROM "{table.name}"))'
                            )
                        )


assert Base.metadata  # models imported so reflection and the app agree
