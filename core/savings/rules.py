"""The savings products' rules where money leaves a member account (issue 14, part 1;
docs/savings/products.md#the-rules-where-money-leaves).

Pure rules first (``check_withdrawal``, ``check_min_holding``: plain ints, no database, no
clock), then what every debit path reads to apply them: the account's product
(``rules_for_account``) and what was withdrawn from the account on the business day
(``withdrawn_today_cents``, the Nairobi calendar of ``core.kernel.calendar``).

Every withdrawal path locks the member row before it checks (M-Pesa, teller cash), so two
withdrawals of one member are checked one after the other and the daily limit holds under
concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, bindparam, func, select, text
from sqlalchemy.orm import Session

from core.kernel.calendar import business_day_start
from core.kernel.errors import DomainError
from core.kernel.money import format_cents
from core.ledger import entries as ledger
from core.ledger.chart import Purpose, SystemAccount
from core.ledger.vocabulary import EntryKind
from core.members.registration import member_account_ids
from core.savings.vocabulary import ProductKind
from db.models import Account
from db.models_mpesa import B2CPayout
from db.models_savings import SavingsProduct, SavingsProductVersion


class SavingsRuleRefused(DomainError):
    """A product rule refuses money leaving an account. ``reason`` names the rule;
    ``limit_cents`` is the most that may leave (what the member is told)."""

    code = "savings_rule"

    def __init__(self, detail: str = "", *, reason: str, limit_cents: int = 0) -> None:
        super().__init__(detail or reason, reason=reason, limit_cents=limit_cents)
        self.reason = reason
        self.limit_cents = limit_cents


class BelowMinimumBalance(SavingsRuleRefused):
    code = "min_balance"


class DailyWithdrawalLimit(SavingsRuleRefused):
    code = "daily_withdrawal_limit"


class NotWithdrawable(SavingsRuleRefused):
    code = "not_withdrawable"


class BelowMinimumHolding(SavingsRuleRefused):
    code = "min_share_holding"


@dataclass(frozen=True, slots=True)
class AccountRules:
    """The rules of the product an account belongs to (its current version)."""

    product_code: str
    kind: ProductKind
    min_balance_cents: int
    withdrawal_fee_cents: int
    daily_withdrawal_limit_cents: int | None


# ------------------------------------------------------------------ pure rules


def check_withdrawal(
    rules: AccountRules,
    *,
    amount_cents: int,
    available_cents: int,
    withdrawn_today_cents: int,
    other_fees_cents: int = 0,
) -> int:
    """The product's fee for withdrawing ``amount_cents``, or the rule that refuses it.

    In this order: only ordinary savings is withdrawable (``NotWithdrawable``); the
    amount (fees not counted) plus what left the account today must stay within the
    daily limit (``DailyWithdrawalLimit``, ``limit_cents`` what is left today); the
    amount, the product's fee and the channel's own fees (``other_fees_cents``, M-Pesa's
    tariff) must leave at least the minimum balance available (``BelowMinimumBalance``,
    ``limit_cents`` the most that can be withdrawn with these fees; when the minimum is 0,
    reason ``insufficient`` with ``limit_cents`` the available balance, fees included)."""
    if rules.kind is not ProductKind.ORDINARY_SAVINGS:
        raise NotWithdrawable(
            f"{rules.product_code} ({rules.kind}) is not withdrawable", reason="not_withdrawable"
        )
    limit = rules.daily_withdrawal_limit_cents
    if limit is not None and amount_cents + withdrawn_today_cents > limit:
        left = max(0, limit - withdrawn_today_cents)
        raise DailyWithdrawalLimit(
            f"daily withdrawal limit of {rules.product_code}: {format_cents(limit)} a day, "
            f"{format_cents(left)} left today",
            reason="daily_limit", limit_cents=left,
        )  # fmt: skip
    fee = rules.withdrawal_fee_cents
    keep = rules.min_balance_cents
    most = max(0, available_cents - keep - fee - other_fees_cents)
    if amount_cents > most:
        reason, shown = ("min_balance", most) if keep else ("insufficient", available_cents)
        raise BelowMinimumBalance(
            f"minimum balance of {rules.product_code}: {format_cents(keep)} must stay; "
            f"at most {format_cents(most)} can be withdrawn (fees "
            f"{format_cents(fee + other_fees_cents)})",
            reason=reason, limit_cents=max(0, shown),
        )  # fmt: skip
    return fee


def check_min_holding(
    rules: AccountRules, *, balance_cents: int, amount_cents: int, exiting: bool = False
) -> None:
    """Share capital leaving (a transfer): the holder keeps the product's minimum holding,
    unless the holder is leaving the SACCO (``exiting``: everything may go)."""
    if amount_cents > balance_cents:
        raise BelowMinimumHolding(
            f"only {format_cents(balance_cents)} of shares is held",
            reason="insufficient", limit_cents=max(0, balance_cents),
        )  # fmt: skip
    if exiting:
        return
    most = max(0, balance_cents - rules.min_balance_cents)
    if amount_cents > most:
        raise BelowMinimumHolding(
            f"minimum share holding of {rules.product_code}: "
            f"{format_cents(rules.min_balance_cents)} must stay; at most "
            f"{format_cents(most)} can be transferred",
            reason="min_holding", limit_cents=most,
        )  # fmt: skip


# ------------------------------------------------------------------ what they read


def rules_for_account(session: Session, account_id: int) -> AccountRules:
    """The current rules of the product ``account_id`` belongs to: its own
    (``accounts.savings_product_id``, a further savings account) or its purpose's default
    product (``savings_products.default_for``)."""
    row = session.execute(
        select(
            SavingsProduct.code,
            SavingsProductVersion.kind,
            SavingsProductVersion.min_balance_cents,
            SavingsProductVersion.withdrawal_fee_cents,
            SavingsProductVersion.daily_withdrawal_limit_cents,
        )
        .select_from(Account)
        .join(
            SavingsProduct,
            (SavingsProduct.id == Account.savings_product_id)
            | (
                Account.savings_product_id.is_(None)
                & (SavingsProduct.default_for == Account.purpose)
            ),
        )
        .join(
            SavingsProductVersion,
            (SavingsProductVersion.product_id == SavingsProduct.id)
            & (SavingsProductVersion.version == SavingsProduct.current_version),
        )
        .where(Account.id == account_id)
    ).one_or_none()
    if row is None:
        raise DomainError(f"account {account_id} belongs to no savings product", reason="product")
    return AccountRules(
        product_code=row.code,
        kind=ProductKind(row.kind),
        min_balance_cents=int(row.min_balance_cents),
        withdrawal_fee_cents=int(row.withdrawal_fee_cents),
        daily_withdrawal_limit_cents=(
            None if row.daily_withdrawal_limit_cents is None
            else int(row.daily_withdrawal_limit_cents)
        ),
    )  # fmt: skip


def check_keeps_minimum(session: Session, account_id: int, amount_cents: int) -> None:
    """Money leaving savings that is not a withdrawal (a loan repaid from savings, a move
    to the member's own deposits or shares): no fee, no daily limit, but the product's
    minimum balance stays (``BelowMinimumBalance``). Not having the money at all is the
    ledger's refusal (``InsufficientFunds``), as before."""
    rules = rules_for_account(session, account_id)
    if not rules.min_balance_cents:
        return
    available = ledger.get_balance(session, account_id).available_cents
    most = max(0, available - rules.min_balance_cents)
    if amount_cents > most:
        raise BelowMinimumBalance(
            f"minimum balance of {rules.product_code}: "
            f"{format_cents(rules.min_balance_cents)} must stay; at most "
            f"{format_cents(most)} can leave savings",
            reason="min_balance", limit_cents=most,
        )  # fmt: skip


# Cash paid out of the account today: the bank leg of each cash withdrawal (the amount,
# the fee not counted).
_CASH_TODAY = text("""
SELECT COALESCE(SUM(-b.amount_cents), 0)
FROM postings s
JOIN journal_entries e ON e.id = s.entry_id
JOIN postings b ON b.entry_id = e.id AND b.account_id = :bank
WHERE s.account_id = :account AND s.amount_cents > 0 AND e.kind = :kind
  AND e.created_at >= :start
""").bindparams(bindparam("bank", type_=BigInteger), bindparam("account", type_=BigInteger))


def withdrawn_today_cents(session: Session, member_id: int, account_id: int, now: datetime) -> int:
    """What left the member's savings account on the business date of ``now`` by every
    withdrawal channel, fees not counted: M-Pesa payouts asked for that have not failed
    (a payout on its way counts) and teller cash paid out."""
    start = business_day_start(now)
    # A payout names its account when it is not the main savings (NULL: the main one).
    main = member_account_ids(session, member_id).get(Purpose.SAVINGS)
    this_account = (
        B2CPayout.account_id.is_(None) | (B2CPayout.account_id == account_id)
        if account_id == main
        else B2CPayout.account_id == account_id
    )
    mpesa = session.scalar(
        select(func.coalesce(func.sum(B2CPayout.amount_cents), 0)).where(
            B2CPayout.member_id == member_id,
            B2CPayout.purpose == "withdrawal",
            B2CPayout.status != "failed",
            B2CPayout.created_at >= start,
            this_account,
        )
    )
    cash = session.execute(
        _CASH_TODAY,
        {
            "bank": ledger.account_id_by_code(session, SystemAccount.BANK),
            "account": account_id,
            "kind": EntryKind.WITHDRAWAL_CASH.value,
            "start": start,
        },
    ).scalar_one()
    return int(mpesa or 0) + int(cash or 0)
