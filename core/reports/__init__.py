"""Reports built from the ledger and the loan book (issue 16). ``sasra``: the SASRA
returns and the ratio dashboard (docs/reports/sasra.md)."""
