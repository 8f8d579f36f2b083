"""The ledger's words: the kinds of journal entry and the states of a hold.

``StrEnum``: a member *is* the string stored in ``journal_entries.kind`` and
``holds.status``, so the values in the database, in JSON and in SQL stay what
they were. ``post_entry`` takes an ``EntryKind``: the type checker refuses a
kind that is not listed here, so this list is every kind core can post, and a
statement can name each one (``core.ledger.statements.STATEMENT_LABELS``).
"""

from __future__ import annotations

from enum import StrEnum


class EntryKind(StrEnum):
    """``journal_entries.kind``: what a movement of money was."""

    DEPOSIT_MPESA = "deposit.mpesa"  # M-Pesa (STK push or paybill) into a member account
    DEPOSIT_CASH = "deposit.cash"  # teller cash into a member account
    DEPOSIT_BANK = "deposit.bank"  # a bank transfer into a member account
    # Bank transfers (issue 15, part 4; core.payments.bank): a loan paid on from savings to
    # the member's bank account (Dr savings / Cr bank, posting the hold), and the M-Pesa
    # collections float swept to the bank account (Dr bank / Cr M-Pesa collections float).
    WITHDRAWAL_BANK = "withdrawal.bank"
    FLOAT_SWEEP = "float.sweep"
    TRANSFER_OWN = "transfer.own"  # between a member's own accounts (savings -> shares)
    WITHDRAWAL_MPESA = "withdrawal.mpesa"  # savings -> M-Pesa (B2C), with its fee
    MPESA_SUSPENSE = "mpesa.suspense"  # an M-Pesa payment nobody could take yet, parked
    MPESA_SUSPENSE_ASSIGN = "mpesa.suspense_assign"  # a parked payment reaches its member
    ADJUSTMENT_MANUAL = "adjustment.manual"  # between SACCO accounts, maker-checker
    REVERSAL = "reversal"  # the mirror image of an earlier entry
    # A loan paid out to the member's savings: the loan account debited with the principal,
    # savings credited with the principal less the fees deducted, fee income with those fees.
    LOAN_DISBURSEMENT = "loan.disbursement"
    # A repayment of a loan (M-Pesa, savings, teller cash): the source debited, the loan
    # account credited with the principal, interest, fee and penalty income with theirs.
    LOAN_REPAYMENT = "loan.repayment"
    # Close of day (issue 13), one entry per product and business date: interest accrued
    # (Dr interest receivable / Cr loan interest income, or the reverse), penalties charged
    # (Dr penalty receivable / Cr penalty income; a repayment's catch-up posts the same for
    # its one loan) and the change in
    # the loan-loss provision (Dr provisions expense / Cr loan-loss provision, or the reverse).
    # Default recovery of a defaulted loan (issue 13, part 7; core.loans.recovery), each step
    # its own entry through the repayments' allocation: the borrower's free deposits debited
    # (``loan.recovery_deposits``), then each guarantor's deposits under their pledge's hold
    # (``loan.recovery_pledge``); the loan account and income credited as a repayment is.
    LOAN_RECOVERY_DEPOSITS = "loan.recovery_deposits"
    LOAN_RECOVERY_PLEDGE = "loan.recovery_pledge"
    # A guarantor's share turned into a recovery loan to them: the new loan is paid to their
    # savings (``loan.disbursement``) and straight on from there to the defaulted loan.
    LOAN_RECOVERY_LOAN = "loan.recovery_loan"
    LOAN_ACCRUAL = "loan.accrual"
    LOAN_PROVISION = "loan.provision"
    LOAN_WRITE_OFF = "loan.write_off"  # Dr provision / Cr the loan (core.loans.write_off)
    LOAN_RECOVERY = "loan.recovery"  # paid on a written-off loan: Cr recoveries income
    LOAN_RESCHEDULE = "loan.reschedule"  # interest and fees due, capitalised
    # Teller cash (issue 14): savings paid out at the counter (Dr savings / Cr bank, where
    # teller cash is kept), and a till day's counted difference (core.savings.tills).
    WITHDRAWAL_CASH = "withdrawal.cash"
    TILL_DIFFERENCE = "till.difference"
    # A member's exit (core.members.exit, docs/members/exit.md): deposits and share capital
    # moved to savings (``member.exit_transfer``), loans repaid from there through the one
    # repayment use case, and the rest refunded from savings to the bank (``member.exit_refund``:
    # paid out by the teller in cash or by bank transfer).
    MEMBER_EXIT_TRANSFER = "member.exit_transfer"
    MEMBER_EXIT_REFUND = "member.exit_refund"
    # A deceased member's estate (core.members.death, docs/members/death.md): after the
    # loans' offset (as an exit's), savings shared out to one payable account per
    # beneficiary, or the legal representative (``member.estate_transfer``), each paid out
    # at the branch (``member.estate_payout``: Dr the payable / Cr bank) or by M-Pesa
    # (``withdrawal.mpesa`` from the payable).
    MEMBER_ESTATE_TRANSFER = "member.estate_transfer"
    MEMBER_ESTATE_PAYOUT = "member.estate_payout"
    # Savings interest (issue 14; core.savings.interest): accrued daily, one entry per
    # product and date (Dr interest on deposits / Cr interest payable; the reverse when
    # an average-daily-balance period ends below its minimum and is forfeited), and posted
    # to each member's account at the product's frequency (Dr interest payable / Cr the
    # member's account with the net, Cr withholding tax with the tax).
    SAVINGS_ACCRUAL = "savings.accrual"
    SAVINGS_INTEREST = "savings.interest"
    # Year end (issue 14, part 2; core.savings.year_end): the declaration (Dr retained
    # earnings with the dividends, Dr interest on deposits with the rebates / Cr dividends
    # payable), then per member the tax (Dr dividends payable / Cr withholding tax) and the
    # net (Dr dividends payable / Cr the member's account, through ``credit_member``).
    YEAR_END_DECLARE = "year_end.declare"
    YEAR_END_TAX = "year_end.tax"
    YEAR_END_CREDIT = "year_end.credit"
    # Share capital sold by one member to another (issue 14, part 1; core.savings.shares),
    # maker-checker: Dr the seller's shares / Cr the buyer's shares.
    SHARE_TRANSFER = "share.transfer"
    # Employer check-off (issue 15, part 3; core.checkoff): the employer's bank transfer
    # (Dr bank / Cr check-off clearing with the file's total), then per member a deposit
    # (``credit_member``, Dr clearing / Cr the member's account) or a loan repayment
    # (``repay_loan``, ``loan.repayment`` from clearing).
    CHECKOFF_RECEIPT = "checkoff.receipt"
    DEPOSIT_CHECKOFF = "deposit.checkoff"
    # Fixed deposits (issue 14, part 1; core.savings.fixed_deposits): opened from savings
    # (Dr savings / Cr the deposit), interest paid (Dr interest on deposits / Cr savings or
    # the deposit with the net, Cr withholding tax), closed at maturity or early (Dr the
    # deposit / Cr savings, Cr the penalty to fee income or the forfeited interest back).
    FIXED_DEPOSIT_OPEN = "fixed_deposit.open"
    FIXED_DEPOSIT_INTEREST = "fixed_deposit.interest"
    FIXED_DEPOSIT_CLOSE = "fixed_deposit.close"


class HoldStatus(StrEnum):
    """``holds.status``: ``pending`` until posted (in full or in part) or released."""

    PENDING = "pending"
    POSTED = "posted"
    RELEASED = "released"
