"""Run the whole suite with the clock moved: ``make test-clock CLOCK=…``.

``SACCO_TEST_CLOCK`` is ``+365d`` (also ``+12h``, ``-30d``, ``+90s``) or an instant such as
``@2028-02-29T20:59:00Z``. When it is set, every Python process of the run — pytest and the
gunicorn servers, workers and commands the tests start — sees the wall clock moved by the
same offset and ticking (time-machine patches ``time.time``, ``datetime.now`` and friends;
``time.monotonic``, sleeps and timeouts are untouched, so nothing else behaves differently).

``make test-clock`` copies this file into the virtualenv as ``sacco_test_clock.py`` with a
``.pth`` line that calls its ``start()`` at interpreter start, so child processes need
nothing but the inherited environment (without the variable, ``start()`` does nothing). An instant is turned into an offset once, in the first process,
and handed down as ``+<seconds>s``: a child started later is not set back to the instant.

libfaketime was tried first: Debian's 0.9.10 either hangs ``threading.Condition.wait`` with
a timeout or makes ``time.sleep`` fail with EINVAL, so it cannot run this suite.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

VARIABLE = "SACCO_TEST_CLOCK"
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def offset_for(spec: str, real_now: datetime) -> timedelta:
    """How far the clock moves for ``spec`` when the real time is ``real_now``."""
    spec = spec.strip()
    if spec.startswith("@"):
        instant = datetime.fromisoformat(spec[1:].strip().replace("Z", "+00:00"))
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return instant - real_now
    match = re.fullmatch(r"([+-])(\d+(?:\.\d+)?)([dhms])", spec)
    if match is None:
        raise ValueError(f"{VARIABLE}={spec!r}: use +365d, -12h, +90s or @2028-02-29T20:59:00Z")
    sign, amount, unit = match.groups()
    delta = timedelta(**{_UNITS[unit]: float(amount)})
    return delta if sign == "+" else -delta


def start() -> None:
    spec = os.environ.get(VARIABLE, "")
    if not spec or os.environ.get(f"{VARIABLE}_PID") == str(os.getpid()):
        return  # no clock to move, or moved already in this process (.pth, then a test)
    os.environ[f"{VARIABLE}_PID"] = str(os.getpid())
    import time_machine

    real_now = datetime.now(UTC)
    offset = offset_for(spec, real_now)
    os.environ[VARIABLE] = f"{'+' if offset >= timedelta(0) else '-'}{abs(offset).total_seconds()}s"
    time_machine.travel(real_now + offset, tick=True).start()
    # time-machine starts ticking at the first read, not at start(): read now, or a process
    # that first looks at the clock later would lag behind its children by that long.
    time.time()
