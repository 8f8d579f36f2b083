"""Credit reference bureaus (issue 15, part 2): a REST adapter shaped like Metropol's, a
SOAP one shaped like TransUnion Kenya's, both implementing ``core.kernel.bureau.
CreditBureau``, and a stand-in serving both (docs/integrations/bureaus.md)."""
