"""A close-of-day run in a process of its own, for the crash test
(tests/integration/test_close_of_day_penalties.py): ``python -m tests.close_day_child URL
THROUGH`` closes every date up to ``THROUGH`` (ISO) with the clock at noon, Nairobi, the
day after, holding the advisory lock like ``manage.py close-day``, and prints its report.
The test kills it mid-run (SIGKILL) and runs it again."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time, timedelta

from cryptography.fernet import Fernet

from core.kernel.deps import CoreDeps
from core.kernel.passwords import StaffPasswords
from core.kernel.pins import PinHasher
from core.kernel.security import PiiVault
from db.session import make_engine, make_session_factory
from workers.close_day import run_close_day


def main(url: str, through: str) -> None:
    day = date.fromisoformat(through)
    moment = datetime.combine(day + timedelta(days=1), time(9), tzinfo=UTC)
    deps = CoreDeps(
        pins=PinHasher(b"child-pepper-not-for-production", time_cost=1, memory_cost=8),
        passwords=StaffPasswords(time_cost=1, memory_cost=8, parallelism=1),
        vault=PiiVault([Fernet.generate_key()], b"child-blind-index-key-0123456789"),
        now=lambda: moment,
    )
    engine = make_engine(url, pool_size=2)
    report = run_close_day(make_session_factory(engine), deps, through=day, lock_engine=engine)
    print(report, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
