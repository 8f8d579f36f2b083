"""Where a report's figures come from, shown on every report: the primary or a streaming
replica, and the replica's lag (issue 16, part 6; docs/reports/index.md).

``describe(session, replica=...)`` asks the database itself: on PostgreSQL in recovery
(a standby) the lag is ``now() - pg_last_xact_replay_timestamp()`` in seconds (``None``
before the standby replayed its first transaction); a primary has no lag.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def describe(session: Session, *, replica: bool) -> dict[str, Any]:
    """``{"database": "primary"|"replica", "lag_seconds": float|None}``."""
    if session.get_bind().dialect.name != "postgresql":
        return {"database": "replica" if replica else "primary", "lag_seconds": None}
    in_recovery, lag = session.execute(
        text(
            "SELECT pg_is_in_recovery(),"
            " EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))"
        )
    ).one()
    if not in_recovery:
        return {"database": "replica" if replica else "primary", "lag_seconds": None}
    return {"database": "replica", "lag_seconds": None if lag is None else round(float(lag), 3)}
