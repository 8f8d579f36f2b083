"""The board pack: one PDF of a month's figures for the board (issue 16, part 5),
composed from what the reports already give — kept simple on purpose.

Page 1: membership (joined and exited in the month, members at its end, members by
state now, members by deposits in bands at the month's end) and the month-end balances
(deposits, shares, loans owed) against the month before. Page 2: the charts over the
twelve months to the month's end (deposits, shares and loans; members joined and exited;
loans at risk and PAR 30 from the close-of-day history).
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from core.kernel.errors import InvalidInput
from core.kernel.money import format_cents
from core.reports import charts, membership, par_history

CHART_MONTHS = 12


def parse_month(text: str) -> date:
    """``YYYY-MM`` -> the month's first day, or ``InvalidInput``."""
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except (ValueError, TypeError):
        raise InvalidInput("month: use YYYY-MM", field="month") from None


def month_end(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def board_pack(session: Session, first: date, *, sacco: str, now: datetime) -> bytes:
    from fpdf import FPDF  # only the renderers need it

    last = month_end(first)
    chart_from = first
    for _ in range(CHART_MONTHS - 1):
        chart_from = (chart_from - timedelta(days=1)).replace(day=1)
    growth = membership.growth(session, chart_from, last)
    balances = membership.balances_by_month(session, chart_from, last)
    states = membership.by_state(session)
    bands = membership.deposits_by_band(session, last)
    this, prev = balances[-1], balances[-2] if len(balances) > 1 else None

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(f"{sacco} board pack {first:%Y-%m}")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, f"{sacco}: board pack {first:%B %Y}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.cell(0, 5, f"Prepared {now:%d/%m/%Y %H:%M} UTC from the ledger and the member records",
             new_x="LMARGIN", new_y="NEXT")  # fmt: skip

    def heading(text: str) -> None:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)

    def row(label: str, *values: str) -> None:
        pdf.cell(70, 6, label)
        for value in values:
            pdf.cell(45, 6, value, align="R")
        pdf.ln()

    heading("Membership")
    month = growth[-1]
    row("Joined in the month", str(month.joined))
    row("Exited in the month", str(month.exited))
    row("Members at the month's end", str(month.members_at_end))
    heading("Members by state (now)")
    for state, count in states.items():
        row(state.replace("_", " ").capitalize(), str(count))
    heading(f"Members by deposits at {last:%d/%m/%Y}")
    for band in bands:
        label = (f"KES {band.low_cents // 100:,} and over" if band.high_cents is None
                 else f"KES {band.low_cents // 100:,} to {band.high_cents // 100:,}")  # fmt: skip
        row(label, str(band.members), format_cents(band.total_cents))
    heading("Month-end balances")
    row("", f"{last:%b %Y}", f"{month_end(date.fromisoformat(prev.month + '-01')):%b %Y}"
        if prev else "")  # fmt: skip
    for label, attr in (("Deposits", "deposits_cents"), ("Shares", "shares_cents"),
                        ("Loans owed", "loans_cents")):  # fmt: skip
        row(label, format_cents(getattr(this, attr)),
            format_cents(getattr(prev, attr)) if prev else "")  # fmt: skip

    pdf.add_page()
    for image in (
        charts.deposits_loans_chart(
            balances, "png", title="Deposits, shares and loans (month end)"
        ),
        charts.membership_chart(growth, "png", title="Members joined and exited"),
        charts.par_chart(
            par_history.par_series(session, chart_from, last),
            "png",
            title="Portfolio at risk (close of day)",
        ),
    ):
        pdf.image(_stream(image), w=150)
        pdf.ln(4)
    return bytes(pdf.output())


def _stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
