"""Where the tests find the real services. Override with TEST_DATABASE_URL / TEST_REDIS_URL."""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url

_BASE_PG_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/sacco_test"
)
_BASE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Under pytest-xdist (``make test-fast``) each worker ``gwN`` gets a database of its own
# (``sacco_test_gwN``) and a Redis database of its own (the base number minus N), since
# committed tests truncate tables and Redis tests flush their database.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _for_worker(pg_url: str, redis_url: str) -> tuple[str, str]:
    if not _WORKER.startswith("gw"):
        return pg_url, redis_url
    index = int(_WORKER[2:])
    pg = make_url(pg_url)
    pg = pg.set(database=f"{pg.database or 'sacco_test'}_{_WORKER}")
    server, _, base = redis_url.rpartition("/")
    number = int(base) - index
    if number < 0:
        raise RuntimeError(f"too many xdist workers for Redis database {base}")
    return pg.render_as_string(hide_password=False), f"{server}/{number}"


PG_URL, REDIS_URL = _for_worker(_BASE_PG_URL, _BASE_REDIS_URL)

_url = make_url(PG_URL)
PG_DBNAME = _url.database or "sacco_test"
# The maintenance database, used to create the test database when it is missing.
PG_ADMIN_DSN = (
    f"host={_url.host or '127.0.0.1'} port={_url.port or 5432} "
    f"user={_url.username or 'postgres'} dbname=postgres"
    + (f" password={_url.password}" if _url.password else "")
)
