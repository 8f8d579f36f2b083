"""Due dates of a loan's instalments: pure calendar arithmetic, no clock.

Monthly instalments fall on the same day of the month as an *anchor* date, clamped to the
month's last day, and every date is computed from the anchor (never from the previous due
date), so a short month does not drag the rest of the schedule: disbursed on 31 January
2028, the instalments fall on 29 February, 31 March, 30 April, 31 May 2028, … A loan
disbursed on 29 February 2028 is due on 29 March, …, 29 January 2029, 28 February 2029,
29 March 2029. Weekly instalments fall every 7 days.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def add_months(anchor: date, months: int) -> date:
    """``anchor`` moved by ``months`` calendar months, its day clamped to the month's end
    (31 Jan + 1 → 28 or 29 Feb; 31 Jan + 2 → 31 Mar; 29 Feb 2028 + 12 → 28 Feb 2029)."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last_day = calendar.monthrange(year, month)[1]
    return date(year, month, min(anchor.day, last_day))


def monthly_due_dates(anchor: date, count: int, *, first_offset: int) -> tuple[date, ...]:
    """``count`` dates, the k-th (from 0) ``first_offset + k`` months after ``anchor``."""
    return tuple(add_months(anchor, first_offset + k) for k in range(count))


def weekly_due_dates(first: date, count: int) -> tuple[date, ...]:
    """``count`` dates 7 days apart, from ``first``."""
    return tuple(first + timedelta(weeks=k) for k in range(count))
