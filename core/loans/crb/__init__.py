"""The credit-bureau data submission file (issue 15, part 2;
docs/integrations/crb-submission.md): the layout as data (``dst.v1.toml``) and its
validator, pure (``layout``); the file built from the book and kept (``submission``)."""
