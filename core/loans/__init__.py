"""Loans: products, schedules, appraisal, applications, guarantors, disbursement and repayment."""
