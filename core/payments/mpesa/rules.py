"""Pure rules for M-Pesa money flows: limits, the withdrawal fee tariff, paybill
account references and what a SIM-swap status costs a withdrawal. No database, no
clock, no I/O (the SIM-swap status itself is ``core.risk.sim_swap.swap_status``).

Amounts are integer cents. Daraja moves whole shillings only, so every amount
that goes to M-Pesa (STK push, B2C) must be a whole number of shillings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.kernel.errors import DomainError, InvalidInput
from core.kernel.identity import is_valid_member_number
from core.loans.references import normalize_loan_reference
from core.risk.sim_swap import SimSwapPolicy, SwapStatus

CENTS = 100


class LimitExceeded(DomainError):
    """An amount outside the SACCO's limits; ``reason`` says which and ``limit_cents`` the bound."""

    code = "limit_exceeded"

    def __init__(self, detail: str = "", *, reason: str, limit_cents: int = 0) -> None:
        super().__init__(detail or reason, reason=reason, limit_cents=limit_cents)
        self.reason = reason
        self.limit_cents = limit_cents


class SimSwapBlocked(DomainError):
    """The member's SIM changed recently (or the check failed and the policy refuses)."""

    code = "sim_swap_recent"

    def __init__(
        self, detail: str = "", *, reason: str, last_swap_at: datetime | None = None
    ) -> None:
        super().__init__(detail or reason, reason=reason, last_swap_at=last_swap_at)
        self.reason = reason  # "recent_swap" | "check_failed" | "check_failed_daily_cap"
        self.last_swap_at = last_swap_at


class SimSwapDailyCapReached(SimSwapBlocked):
    """The check failed and this member's allowance of unverified withdrawals for today
    (``MpesaPolicy.sim_swap_failure_daily_max_cents``) would be exceeded."""

    code = "sim_swap_daily_cap"


# ----------------------------------------------------------------- tariff


@dataclass(frozen=True, slots=True)
class FeeBand:
    up_to_cents: int
    fee_cents: int


def parse_tariff(text: str) -> tuple[FeeBand, ...]:
    """``"100:0,500:7,1000:13"`` (whole KES ``up_to:fee``) -> bands, strictly ascending."""
    bands: list[FeeBand] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"([0-9]{1,9})\s*:\s*([0-9]{1,7})", part)
        if match is None:
            raise ValueError(f"tariff band {part!r} is not 'up_to_kes:fee_kes'")
        band = FeeBand(int(match.group(1)) * CENTS, int(match.group(2)) * CENTS)
        if bands and band.up_to_cents <= bands[-1].up_to_cents:
            raise ValueError("tariff bands must be in ascending order of amount")
        bands.append(band)
    if not bands:
        raise ValueError("the tariff needs at least one band")
    return tuple(bands)


def withdrawal_fee(amount_cents: int, tariff: tuple[FeeBand, ...]) -> int:
    """The fee of the first band the amount fits in; above the last band, the last fee."""
    for band in tariff:
        if amount_cents <= band.up_to_cents:
            return band.fee_cents
    return tariff[-1].fee_cents


# ----------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class MpesaPolicy:
    """The SACCO's M-Pesa settings as plain values (built from ``config.Settings``)."""

    deposit_min_cents: int = 10 * CENTS
    deposit_max_cents: int = 150_000 * CENTS
    withdrawal_min_cents: int = 100 * CENTS
    withdrawal_max_cents: int = 70_000 * CENTS
    withdrawal_daily_max_cents: int = 150_000 * CENTS
    # A loan disbursed by B2C: Safaricom's per-transaction limit (config.py cites it).
    loan_payout_max_cents: int = 150_000 * CENTS
    tariff: tuple[FeeBand, ...] = (FeeBand(70_000 * CENTS, 0),)
    sim_swap_window: timedelta = timedelta(days=7)
    sim_swap_on_failure: str = "refuse_above"  # refuse | allow | refuse_above
    sim_swap_failure_allow_max_cents: int = 1_000 * CENTS
    # Per member and Nairobi day: the most let through while the check fails (any setting).
    sim_swap_failure_daily_max_cents: int = 1_000 * CENTS
    sim_swap_cache: timedelta = timedelta(seconds=60)
    reconcile_after: timedelta = timedelta(minutes=3)
    # A paybill payment of the same member and amount paid within this of an STK push
    # settled without a receipt may be that push's own payment: parked for staff.
    twin_window: timedelta = timedelta(minutes=60)

    @property
    def sim_swap(self) -> SimSwapPolicy:
        return SimSwapPolicy(window=self.sim_swap_window, cache=self.sim_swap_cache)


def check_deposit_amount(amount_cents: int, policy: MpesaPolicy) -> None:
    if type(amount_cents) is not int or amount_cents <= 0:
        raise InvalidInput("amount must be a positive number of cents", field="amount")
    if amount_cents % CENTS:
        raise LimitExceeded("M-Pesa takes whole shillings", reason="not_whole")
    if amount_cents < policy.deposit_min_cents:
        raise LimitExceeded(reason="below_minimum", limit_cents=policy.deposit_min_cents)
    if amount_cents > policy.deposit_max_cents:
        raise LimitExceeded(reason="above_maximum", limit_cents=policy.deposit_max_cents)


@dataclass(frozen=True, slots=True)
class WithdrawalQuote:
    """What the confirmation screen shows: amount, fee, total taken from savings, payout phone."""

    amount_cents: int
    fee_cents: int
    total_cents: int
    msisdn: str
    available_cents: int


def quote(
    amount_cents: int,
    *,
    available_cents: int,
    withdrawn_today_cents: int,
    msisdn: str,
    policy: MpesaPolicy,
) -> WithdrawalQuote:
    """Check a withdrawal against the limits and the balance; the fee is added on top.

    Refusals, in this order: not whole shillings, below the minimum, above the
    per-transaction maximum, above what is left of today's maximum (all
    ``LimitExceeded``), then amount + fee above the available balance
    (``InsufficientFunds``-style ``LimitExceeded(reason="insufficient")``).
    """
    if type(amount_cents) is not int or amount_cents <= 0:
        raise InvalidInput("amount must be a positive number of cents", field="amount")
    if amount_cents % CENTS:
        raise LimitExceeded("M-Pesa pays whole shillings", reason="not_whole")
    if amount_cents < policy.withdrawal_min_cents:
        raise LimitExceeded(reason="below_minimum", limit_cents=policy.withdrawal_min_cents)
    if amount_cents > policy.withdrawal_max_cents:
        raise LimitExceeded(reason="above_maximum", limit_cents=policy.withdrawal_max_cents)
    left_today = max(0, policy.withdrawal_daily_max_cents - withdrawn_today_cents)
    if amount_cents > left_today:
        raise LimitExceeded(reason="daily_limit", limit_cents=left_today)
    fee = withdrawal_fee(amount_cents, policy.tariff)
    total = amount_cents + fee
    if total > available_cents:
        raise LimitExceeded(reason="insufficient", limit_cents=max(0, available_cents))
    return WithdrawalQuote(amount_cents, fee, total, msisdn, available_cents)


# ------------------------------------------------------ paybill account numbers

SUFFIXES = {"": "savings", "D": "deposits", "S": "shares"}
TARGET_SUFFIX = {target: suffix for suffix, target in SUFFIXES.items()}
# A member number, then nothing (savings), D or S, or a savings product's code (2-8
# capital letters or digits, starting with a letter): the member's account under it.
_BILL_REF = re.compile(r"^([0-9]{5,11})(?:[-/ ]?([A-Z][A-Z0-9]{0,7}))?$")
PRODUCT_TARGET_PREFIX = "@"  # core.savings.member_accounts.TARGET_PREFIX


@dataclass(frozen=True, slots=True)
class BillRef:
    member_number: str
    target: str


def parse_bill_ref(text: str) -> BillRef | None:
    """What a member typed as the paybill account: ``10019`` savings, ``10019D`` deposits,
    ``10019S`` shares, ``10019HOLI`` the member's account under savings product ``HOLI``
    (target ``@HOLI``; ``-``, ``/`` or a space before the letters allowed, any case).
    None when it is not a valid member number (check digit) with a known suffix or a
    product code's shape (whether the member holds that account is the caller's check)."""
    cleaned = (text or "").strip().upper()
    match = _BILL_REF.match(cleaned)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    if not is_valid_member_number(number):
        return None
    if len(suffix) >= 2:
        return BillRef(number, f"{PRODUCT_TARGET_PREFIX}{suffix}")
    if suffix not in SUFFIXES:
        return None
    return BillRef(number, SUFFIXES[suffix])


def parse_loan_ref(text: str) -> str | None:
    """A loan's reference typed as the paybill account (``L7K2M9QX``; any case, ``-`` or
    spaces allowed): the loan reference, or None. Member numbers are digits only, so the
    two never meet: a member number still pays into savings (deposits, shares)."""
    return normalize_loan_reference(text)


def account_reference(member_number: str, target: str) -> str:
    """The STK ``AccountReference`` (<= 12 chars), in the same form a paybill payment uses:
    the member number and the account's suffix, or, for a loan repayment (a push whose
    target is a loan's reference), the loan's reference."""
    loan = parse_loan_ref(target)
    if loan is not None:
        return loan
    if target.startswith(PRODUCT_TARGET_PREFIX):
        return f"{member_number}{target.removeprefix(PRODUCT_TARGET_PREFIX)}"
    return f"{member_number}{TARGET_SUFFIX[target]}"


# ------------------------------------------------------------------ SIM swap


def sim_swap_decision(
    status: SwapStatus,
    *,
    amount_cents: int,
    policy: MpesaPolicy,
    unverified_today_cents: int = 0,
) -> str | None:
    """What a SIM-swap status (``core.risk.sim_swap.swap_status``) costs money going out:
    None to allow, else the refusal reason.

    ``none``/``cleared`` pass; ``recent`` is ``recent_swap``. ``unknown`` (no verdict)
    is ``check_failed`` when the setting refuses (``refuse``; ``refuse_above`` and the
    amount above ``sim_swap_failure_allow_max_cents``); otherwise it passes only while
    this amount plus what was let through unverified today (``unverified_today_cents``,
    this member, this Nairobi day) stays within ``sim_swap_failure_daily_max_cents``,
    else ``check_failed_daily_cap``. The cap holds for ``allow`` too.
    """
    if status in ("none", "cleared"):
        return None
    if status == "recent":
        return "recent_swap"
    if policy.sim_swap_on_failure == "refuse":
        return "check_failed"
    if (
        policy.sim_swap_on_failure == "refuse_above"
        and amount_cents > policy.sim_swap_failure_allow_max_cents
    ):
        return "check_failed"
    if unverified_today_cents + amount_cents > policy.sim_swap_failure_daily_max_cents:
        return "check_failed_daily_cap"
    return None


# ------------------------------------------------------------------ callback URLs

# Daraja's rule for every callback URL: "Do not use the words MPesa, M-Pesa,
# Safaricom or any of their variants in either upper or lower case in your URLs";
# such URLs are filtered out and blocked.
_BLOCKED_URL_WORDS = re.compile(r"m[\W_]*pesa|safaricom", re.IGNORECASE)


def blocked_url_word(url: str) -> str | None:
    """The word in ``url`` that Daraja would block a callback URL for, if any."""
    found = _BLOCKED_URL_WORDS.search(url)
    return found.group(0) if found else None
