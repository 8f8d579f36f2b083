"""Reports read from the ledger and the records (issue 16): member statements and
membership figures (``member_statement``, ``membership``), charts (``charts``)."""
