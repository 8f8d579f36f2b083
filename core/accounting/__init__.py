"""The SACCO's own books: manual adjustments between its accounts (and, to come, the
close-of-day postings: interest, provisions)."""
