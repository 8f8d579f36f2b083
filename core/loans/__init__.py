"""Loans: the credit half of the SACCO (issue 12).

``schedule`` (pure: repayment schedules, their totals and the APR) and ``due_dates`` (pure:
the calendar of instalments) need no database and no clock.
"""
