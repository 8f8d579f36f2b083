"""The SACCO's business calendar: Africa/Nairobi (EAT, UTC+3 all year, no daylight saving).

Instants are stored in UTC; a *business date* is the calendar day in Nairobi at that
instant, the day a member, a teller and the books call it: a deposit at 21:30 UTC on
the 28th of February is made at 00:30 on the 1st of March in Nairobi, and that is its
business date.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")


def business_date(moment: datetime) -> date:
    """The calendar date in Nairobi at ``moment`` (timezone-aware; naive is refused)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware instant")
    return moment.astimezone(NAIROBI).date()


def business_day_start(moment: datetime) -> datetime:
    """The instant the business date of ``moment`` began: midnight in Nairobi."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware instant")
    return moment.astimezone(NAIROBI).replace(hour=0, minute=0, second=0, microsecond=0)
