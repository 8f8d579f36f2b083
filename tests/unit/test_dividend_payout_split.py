"""A year-end net paid by M-Pesa (core.payments.mpesa.dividend_payouts.split_net): what is
sent and what stays in savings add up to the net, exactly; only whole shillings are sent,
never above M-Pesa's per-transaction limit, never under the withdrawal minimum."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.payments.mpesa.dividend_payouts import split_net
from core.payments.mpesa.rules import MpesaPolicy

POLICY = MpesaPolicy()  # minimum KES 100, per-transaction limit KES 150,000


@given(net=st.integers(min_value=0, max_value=10**12), limit_kes=st.integers(100, 1_000_000))
def test_sent_plus_kept_is_the_net_and_the_rules_hold(net: int, limit_kes: int) -> None:
    policy = MpesaPolicy(loan_payout_max_cents=limit_kes * 100)
    sent, kept = split_net(net, policy)
    assert sent + kept == net and sent >= 0 and kept >= 0
    assert sent % 100 == 0 and sent <= policy.loan_payout_max_cents
    assert sent == 0 or sent >= policy.withdrawal_min_cents
    if policy.withdrawal_min_cents <= net - net % 100 <= policy.loan_payout_max_cents:
        assert kept == net % 100  # only the cents stay


def test_the_worked_cases() -> None:
    assert split_net(114_057, POLICY) == (114_000, 57)  # KES 1,140.57: the cents stay
    assert split_net(9_999, POLICY) == (0, 9_999)  # under KES 100: all stays
    assert split_net(10_000, POLICY) == (10_000, 0)
    assert split_net(22_800_000, POLICY) == (15_000_000, 7_800_000)  # above the limit
