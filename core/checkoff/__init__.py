"""Employer check-off (issue 15, part 3; docs/integrations/check-off.md): employers and
their members' payroll numbers, standing instructions, the deductions expected per
employer and month, and the employer's remittance file posted as one receipt and
allocated through the one repayment and credit paths."""
