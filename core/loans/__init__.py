"""Loans: products, schedules, appraisal, guarantors, approval, disbursement and repayment."""
