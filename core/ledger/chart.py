"""The chart of accounts: every account code the platform posts to, named and typed.

The one place an account code is written down. Code elsewhere names an account
(``SystemAccount.SUSPENSE``), never its number (``"2200"``); a typo is then an
``AttributeError`` at import, not a ``NotFound`` at the first payment.

* ``SystemAccount``: the SACCO's own accounts, one row each, seeded by migration
  0001 with exactly these codes, names, types, normal sides and hot flags
  (``tests/integration/test_chart.py`` compares them with the database).
* ``MemberAccount``: the three accounts every member gets at registration; a
  member's account code is the prefix and the member number (``2000-10019``).
* ``AccountType`` and ``NormalSide``: what the ``accounts`` table's CHECK
  constraints allow; ``Purpose``: what an account is for (``accounts.purpose``).

Credit: ``LOANS_RECEIVABLE`` is the control account; each loan has an account of
its own under it (``loan_account_code``: ``1100-10019-L7K2M9QX``, purpose
``Purpose.LOAN``, an asset: what the member owes), created at disbursement. The
loans' postings go to those accounts, so the control figure is their sum.

Each enum is a ``StrEnum``: a member *is* its stored string, so rows, JSON and
SQL parameters keep the same values and no migration is needed.
"""

from __future__ import annotations

from enum import StrEnum


class NormalSide(StrEnum):
    """The side on which an account's balance is kept positive (``accounts.normal_side``)."""

    DEBIT = "D"
    CREDIT = "C"


class AccountType(StrEnum):
    """``accounts.type``. Assets and expenses are debit-normal, the rest credit-normal."""

    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"

    @property
    def normal_side(self) -> NormalSide:
        """The usual normal side of the type (a contra account is the exception)."""
        if self in (AccountType.ASSET, AccountType.EXPENSE):
            return NormalSide.DEBIT
        return NormalSide.CREDIT


class Purpose(StrEnum):
    """``accounts.purpose``: what an account is for."""

    SYSTEM = "system"  # the SACCO's own accounts (SystemAccount)
    SAVINGS = "savings"  # a member's withdrawable savings
    DEPOSITS = "deposits"  # a member's non-withdrawable deposits (they back loans)
    SHARES = "shares"  # a member's share capital
    # A member's further savings account under a savings product (a holiday or school-fees
    # account; accounts.savings_product_id; core.savings.member_accounts).
    PRODUCT_SAVINGS = "product_savings"
    # A member's fixed deposit (core.savings.fixed_deposits; fixed_deposits.account_id).
    FIXED_DEPOSIT = "fixed_deposit"
    LOAN = "loan"  # a member's loan, once loans exist (an asset: what the member owes)
    # A deceased member's estate owed to one payee until paid (core.members.death).
    ESTATE_PAYABLE = "estate_payable"


class SystemAccount(StrEnum):
    """The SACCO's own accounts: ``code, name, type[, hot[, normal side]]``.

    Hot accounts (the floats, suspense, income, M-Pesa charges) are touched by almost
    every entry: the ledger locks them last (``core.ledger.entries.lock_order``).
    """

    label: str
    account_type: AccountType
    hot: bool
    normal_side: NormalSide

    def __new__(
        cls,
        code: str,
        label: str,
        account_type: AccountType,
        hot: bool = False,
        normal_side: NormalSide | None = None,
    ) -> SystemAccount:
        member = str.__new__(cls, code)
        member._value_ = code
        member.label = label
        member.account_type = account_type
        member.hot = hot
        member.normal_side = normal_side or account_type.normal_side
        return member

    # Assets
    BANK = "1000", "Bank", AccountType.ASSET  # teller cash is banked here
    MPESA_COLLECTIONS_FLOAT = "1010", "M-Pesa collections float", AccountType.ASSET, True
    MPESA_DISBURSEMENT_FLOAT = "1020", "M-Pesa disbursement float", AccountType.ASSET, True
    LOANS_RECEIVABLE = "1100", "Loans receivable (control)", AccountType.ASSET
    INTEREST_RECEIVABLE = "1200", "Interest receivable", AccountType.ASSET
    # Penalties on arrears charged by close of day and not yet paid (migration 0021).
    PENALTY_RECEIVABLE = "1210", "Penalty receivable", AccountType.ASSET
    # A contra asset: kept on the credit side, it reduces the loans' carrying value.
    LOAN_LOSS_PROVISION = (
        "1300", "Loan-loss provision", AccountType.ASSET, False, NormalSide.CREDIT
    )  # fmt: skip
    # Liabilities
    SUSPENSE = "2200", "Suspense", AccountType.LIABILITY, True  # M-Pesa money nobody can take yet
    # An employer's check-off transfer, until allocated to members; what matches no member
    # stays here (migration 0038; core.checkoff).
    CHECKOFF_CLEARING = "2210", "Check-off clearing", AccountType.LIABILITY, True
    INTEREST_PAYABLE = "2300", "Interest payable", AccountType.LIABILITY
    DIVIDENDS_PAYABLE = "2400", "Dividends payable", AccountType.LIABILITY
    WITHHOLDING_TAX = "2500", "Withholding tax", AccountType.LIABILITY
    # Equity
    RESERVES = "3100", "Reserves", AccountType.EQUITY
    RETAINED_EARNINGS = "3200", "Retained earnings", AccountType.EQUITY
    # Income
    LOAN_INTEREST_INCOME = "4000", "Loan interest income", AccountType.INCOME, True
    FEE_INCOME = "4100", "Fee income", AccountType.INCOME, True  # M-Pesa withdrawal fees
    PENALTY_INCOME = "4200", "Penalty income", AccountType.INCOME, True
    # What members pay on loans written off (migration 0024; core.loans.write_off).
    RECOVERIES_INCOME = "4300", "Recoveries on written-off loans", AccountType.INCOME, True
    # Expenses
    INTEREST_ON_DEPOSITS = "5000", "Interest on deposits", AccountType.EXPENSE
    PROVISIONS_EXPENSE = "5100", "Provisions expense", AccountType.EXPENSE
    MPESA_CHARGES = "5200", "M-Pesa charges", AccountType.EXPENSE, True
    # What a till's count differs from what the entries say it should hold (migration 0027;
    # core.savings.tills): a shortage is a debit, an overage a credit.
    CASH_OVER_SHORT = "5800", "Cash over and short", AccountType.EXPENSE


# The hot accounts split into shards (migration 0040, ``core.ledger.shards``): the ones
# every M-Pesa money event touches, one entry each. Interest and penalty income and
# M-Pesa charges stay whole: close of day and the B2C charge post them once per product
# and day or per payout batch, not once per payment (docs/ledger/shards.md).
SHARDED_ACCOUNTS: tuple[SystemAccount, ...] = (
    SystemAccount.MPESA_COLLECTIONS_FLOAT,
    SystemAccount.MPESA_DISBURSEMENT_FLOAT,
    SystemAccount.SUSPENSE,
    SystemAccount.FEE_INCOME,
)


def shard_code(parent: str, number: int) -> str:
    """A shard's account code: ``1010-03`` (the parent's code and a two-digit number)."""
    return f"{parent}-{number:02d}"


class MemberAccount(StrEnum):
    """A member's accounts, by code prefix: ``prefix, name, type, purpose``.

    None of them may go below zero (``no_overdraft``). Savings are withdrawable;
    deposits back loans and are not; share capital is equity.
    """

    label: str
    account_type: AccountType
    purpose: Purpose

    def __new__(
        cls, prefix: str, label: str, account_type: AccountType, purpose: Purpose
    ) -> MemberAccount:
        member = str.__new__(cls, prefix)
        member._value_ = prefix
        member.label = label
        member.account_type = account_type
        member.purpose = purpose
        return member

    SAVINGS = "2000", "Savings", AccountType.LIABILITY, Purpose.SAVINGS
    DEPOSITS = "2100", "Deposits", AccountType.LIABILITY, Purpose.DEPOSITS
    SHARES = "3000", "Share capital", AccountType.EQUITY, Purpose.SHARES

    def code_for(self, member_number: str) -> str:
        """The member's account code: ``2000-10019``."""
        return f"{self.value}-{member_number}"

    def name_for(self, member_number: str) -> str:
        return f"{self.label} {member_number}"

    @classmethod
    def for_purpose(cls, purpose: str) -> MemberAccount:
        """The member account with this purpose (``ValueError`` if none)."""
        for account in cls:
            if account.purpose == purpose:
                return account
        raise ValueError(f"no member account with purpose {purpose!r}")


MEMBER_PURPOSES: tuple[Purpose, ...] = tuple(account.purpose for account in MemberAccount)


def loan_account_code(member_number: str, loan_reference: str) -> str:
    """A loan's own account, under loans receivable: ``1100-10019-L7K2M9QX`` (the
    member's number and the loan's reference)."""
    return f"{SystemAccount.LOANS_RECEIVABLE.value}-{member_number}-{loan_reference}"


def loan_account_name(member_number: str, loan_reference: str) -> str:
    return f"Loan {loan_reference} {member_number}"
