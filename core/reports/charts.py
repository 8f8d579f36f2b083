"""Report charts as PNG or SVG (matplotlib, Agg backend: no display, safe in a worker).

Pure renderers over series the report functions return; the figures are closed after
rendering (matplotlib keeps figures alive otherwise). Amounts are drawn in KES.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

from core.kernel.errors import InvalidInput  # noqa: E402
from core.reports.membership import MonthBalances, MonthGrowth  # noqa: E402
from core.reports.par_history import ParPoint  # noqa: E402

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def _render(fig: Figure, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise InvalidInput("format must be png or svg", field="format")
    out = io.BytesIO()
    # SVG: no date in the metadata, so the same figures give the same bytes
    metadata = {"Date": None} if fmt == "svg" else {}
    fig.savefig(out, format=fmt, dpi=100, metadata=metadata)
    return out.getvalue()


def deposits_loans_chart(series: Sequence[MonthBalances], fmt: str, *, title: str) -> bytes:
    """Month-end deposits, shares and loans, in KES."""
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    months = [m.month for m in series]
    for label, values in (
        ("Deposits", [m.deposits_cents / 100 for m in series]),
        ("Shares", [m.shares_cents / 100 for m in series]),
        ("Loans", [m.loans_cents / 100 for m in series]),
    ):
        ax.plot(months, values, marker="o", label=label)
    ax.set_title(title)
    ax.set_ylabel("KES")
    ax.legend()
    ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    return _render(fig, fmt)


def membership_chart(series: Sequence[MonthGrowth], fmt: str, *, title: str) -> bytes:
    """Joined and exited per month (bars) and members at each month's end (line)."""
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    months = [m.month for m in series]
    ax.bar(months, [m.joined for m in series], label="Joined")
    ax.bar(months, [-m.exited for m in series], label="Exited")
    ax2 = ax.twinx()
    ax2.plot(months, [m.members_at_end for m in series], color="black", marker="o",
             label="Members")  # fmt: skip
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    return _render(fig, fmt)


def par_chart(series: Sequence[ParPoint], fmt: str, *, title: str) -> bytes:
    """Loans at risk (any day late) and PAR 30, in % of the portfolio, per closed date."""
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    days = np.array([p.day for p in series], dtype="datetime64[D]")
    ax.plot(days, [float(p.at_risk_pct) for p in series], label="At risk (1+ days)")
    ax.plot(days, [float(p.par30_pct) for p in series], label="PAR 30")
    ax.set_title(title)
    ax.set_ylabel("% of loans outstanding")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    return _render(fig, fmt)
