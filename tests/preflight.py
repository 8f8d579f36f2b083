"""Before the suite: are the real PostgreSQL and Redis reachable? One clear line if not."""

from __future__ import annotations

import os
import sys

import psycopg2
import redis

from tests.settings import PG_ADMIN_DSN, REDIS_URL

START_PG = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""'


def check() -> str | None:
    try:
        psycopg2.connect(PG_ADMIN_DSN, connect_timeout=3).close()
    except psycopg2.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL is unreachable at {PG_ADMIN_DSN} ({reason}); start it with: {START_PG} "
            "(or set TEST_DATABASE_URL)"
        )
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return (
            f"Redis is unreachable at {REDIS_URL} ({type(exc).__name__}); start it with: "
            f"{START_REDIS} (or set TEST_REDIS_URL)"
        )
    return None


if __name__ == "__main__":
    problem = check()
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    if os.environ.get("CI"):
        print("PostgreSQL and Redis reachable")
