"""Risk's words: what a SIM-swap check found and what was done (``sim_swap_events``).
``StrEnum``: each member is the string stored."""

from __future__ import annotations

from enum import StrEnum


class SimSwapOutcome(StrEnum):
    RECENT_SWAP = "recent_swap"  # the SIM changed within the window
    CHECK_FAILED = "check_failed"  # the provider gave no verdict


class SimSwapDecision(StrEnum):
    REFUSED = "refused"
    ALLOWED = "allowed"  # a failed check let through under the unverified allowance


class LoanCategory(StrEnum):
    """SASRA loan classification (``loan_day_states.category``), best to worst; the bands
    that decide it are data (``loan_risk_bands``, core/risk/classification.py)."""

    PERFORMING = "performing"
    WATCH = "watch"
    SUBSTANDARD = "substandard"
    DOUBTFUL = "doubtful"
    LOSS = "loss"
