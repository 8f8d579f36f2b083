"""Where the tests find the real services. Override with TEST_DATABASE_URL / TEST_REDIS_URL."""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url

PG_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/sacco_test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_url = make_url(PG_URL)
PG_DBNAME = _url.database or "sacco_test"
# The maintenance database, used to create the test database when it is missing.
PG_ADMIN_DSN = (
    f"host={_url.host or '127.0.0.1'} port={_url.port or 5432} "
    f"user={_url.username or 'postgres'} dbname=postgres"
    + (f" password={_url.password}" if _url.password else "")
)
