"""Pure M-Pesa rules: the fee tariff, withdrawal limits, paybill account numbers,
the SIM-swap decision, and the SMS texts those flows send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import load_settings
from core.kernel.identity import member_number_for
from core.messaging.notifications import SMS
from core.payments.mpesa.rules import (
    FeeBand,
    LimitExceeded,
    MpesaPolicy,
    account_reference,
    parse_bill_ref,
    parse_tariff,
    quote,
    sim_swap_decision,
    withdrawal_fee,
)
from core.risk.sim_swap import SwapStatus
from integrations.mpesa.wiring import policy_from_settings

POLICY = policy_from_settings(load_settings(sacco_env="test"))
TARIFF = POLICY.tariff
cents = st.integers(min_value=1, max_value=10**10)


def test_the_default_tariff_parses_and_charges_by_band() -> None:
    assert withdrawal_fee(10_000, TARIFF) == 0  # KES 100
    assert withdrawal_fee(10_100, TARIFF) == 700
    assert withdrawal_fee(100_000, TARIFF) == 1_300
    assert withdrawal_fee(7_000_000, TARIFF) == 10_800


@pytest.mark.parametrize("text", ["", "100", "100:5,50:1", "a:b", "100:-1", "100:5,100:6"])
def test_a_bad_tariff_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_tariff(text)


@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 10**4)), min_size=1, max_size=12))
def test_tariff_text_round_trips(bands: list[tuple[int, int]]) -> None:
    uppers = sorted({u for u, _ in bands})
    text = ",".join(f"{u}:{f}" for u, (_, f) in zip(uppers, bands, strict=False))
    parsed = parse_tariff(text)
    assert [b.up_to_cents for b in parsed] == [u * 100 for u in uppers]


@given(cents, cents)
def test_the_fee_never_decreases_with_the_amount_on_a_rising_tariff(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert 0 <= withdrawal_fee(low, TARIFF) <= withdrawal_fee(high, TARIFF)


@given(
    amount_kes=st.integers(1, 200_000),
    available=st.integers(0, 10**9),
    today=st.integers(0, 10**8),
)
def test_a_quote_is_within_every_limit_and_the_balance_or_refused(
    amount_kes: int, available: int, today: int
) -> None:
    amount = amount_kes * 100
    try:
        q = quote(
            amount,
            available_cents=available,
            withdrawn_today_cents=today,
            msisdn="+254712345678",
            policy=POLICY,
        )
    except LimitExceeded as exc:
        assert exc.reason in ("below_minimum", "above_maximum", "daily_limit", "insufficient")
        return
    assert q.total_cents == q.amount_cents + q.fee_cents <= available
    assert POLICY.withdrawal_min_cents <= amount <= POLICY.withdrawal_max_cents
    assert today + amount <= POLICY.withdrawal_daily_max_cents
    assert q.fee_cents == withdrawal_fee(amount, TARIFF)


@given(st.integers(1, 10**9).filter(lambda c: c % 100 != 0))
def test_amounts_with_cents_are_refused_because_mpesa_pays_whole_shillings(amount: int) -> None:
    with pytest.raises(LimitExceeded) as err:
        quote(amount, available_cents=10**12, withdrawn_today_cents=0, msisdn="x", policy=POLICY)
    assert err.value.reason == "not_whole"


@given(st.integers(1, 10**8), st.sampled_from(["savings", "deposits", "shares"]))
def test_the_stk_account_reference_reads_back_as_the_same_account(seq: int, target: str) -> None:
    number = member_number_for(seq)
    ref = account_reference(number, target)
    assert len(ref) <= 12
    parsed = parse_bill_ref(ref)
    assert parsed is not None and (parsed.member_number, parsed.target) == (number, target)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10019", ("10019", "savings")),
        (" 10019d ", ("10019", "deposits")),
        ("10019-S", ("10019", "shares")),
        ("10019/D", ("10019", "deposits")),
        ("10018", None),  # wrong check digit
        ("10019X", None),
        ("M00042", None),
        ("", None),
    ],
)
def test_paybill_account_numbers(text: str, expected: tuple[str, str] | None) -> None:
    parsed = parse_bill_ref(text)
    assert (None if parsed is None else (parsed.member_number, parsed.target)) == expected


CAPPED = MpesaPolicy(sim_swap_on_failure="allow", sim_swap_failure_daily_max_cents=10**12)


@pytest.mark.parametrize(
    ("status", "amount", "policy", "expected"),
    [
        ("none", 10**9, POLICY, None),
        ("cleared", 10**9, POLICY, None),
        ("recent", 100, POLICY, "recent_swap"),
        ("unknown", 100_000, POLICY, None),  # the default: KES 1,000 a withdrawal
        ("unknown", 100_100, POLICY, "check_failed"),
        ("unknown", 1, MpesaPolicy(sim_swap_on_failure="refuse"), "check_failed"),
        ("unknown", 10**9, CAPPED, None),
    ],
)
def test_what_a_sim_swap_status_costs_a_withdrawal(
    status: SwapStatus, amount: int, policy: MpesaPolicy, expected: str | None
) -> None:
    assert sim_swap_decision(status, amount_cents=amount, policy=policy) == expected


@given(
    st.sampled_from(["allow", "refuse_above"]),
    st.integers(0, 10**8),  # the daily cap
    st.integers(0, 10**8),  # let through unverified today already
    cents,
)
def test_no_verdict_never_lets_the_day_exceed_the_cap(
    setting: str, cap: int, today: int, amount: int
) -> None:
    policy = MpesaPolicy(
        sim_swap_on_failure=setting,
        sim_swap_failure_allow_max_cents=10**7,
        sim_swap_failure_daily_max_cents=cap,
    )
    decision = sim_swap_decision(
        "unknown", amount_cents=amount, policy=policy, unverified_today_cents=today
    )
    if decision is None:
        assert today + amount <= cap
    elif today + amount <= cap:  # refused within the cap: only by the per-withdrawal bound
        assert (decision, setting) == ("check_failed", "refuse_above") and amount > 10**7
    else:
        assert decision in ("check_failed", "check_failed_daily_cap")


GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
WORST = {
    "sacco": "Umoja SACCO",
    "amount": "KES 250,000",
    "fee": "KES 108",
    "account": "deposits",
    "receipt": "NLJ7RT61SV",
    "reference": "SABCDEFGHJ",
    "balance": "KES 9,999,999.99",
    "msisdn": "+254712345678",
    "ussd_code": "*384*44135#",
    "days": 30,
}
MPESA_TEMPLATES = [
    "deposit_received",
    "deposit_cancelled",
    "deposit_failed",
    "withdrawal_paid",
    "withdrawal_failed",
    "withdrawal_blocked_sim_swap",
    "withdrawal_blocked_check",
    "withdrawal_blocked_check_cap",
    "withdrawals_resumed",
]


@pytest.mark.parametrize("lang", ["en", "sw"])
@pytest.mark.parametrize("template", MPESA_TEMPLATES)
def test_every_mpesa_sms_fits_one_gsm7_part(template: str, lang: str) -> None:
    data = dict(WORST, account="amana" if lang == "sw" else "deposits")
    body = SMS.render(template, lang, data)
    assert len(body) <= 160, (len(body), body)
    assert set(body) <= GSM7, set(body) - GSM7
    assert not SMS.problems()


def test_fee_band_is_a_plain_value() -> None:
    assert FeeBand(100, 0) == FeeBand(100, 0)


def test_the_twin_window_defaults_to_an_hour_and_follows_its_setting() -> None:
    from datetime import timedelta

    from config import SettingsError

    assert POLICY.twin_window == timedelta(minutes=60)
    custom = policy_from_settings(load_settings(sacco_env="test", mpesa_twin_window_minutes=15))
    assert custom.twin_window == timedelta(minutes=15)
    with pytest.raises(SettingsError, match="MPESA_TWIN_WINDOW_MINUTES"):
        load_settings(sacco_env="test", mpesa_twin_window_minutes=0)
