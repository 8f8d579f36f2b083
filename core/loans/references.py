"""A loan's reference, pure: ``L`` + 7 Crockford base32 characters (no I, L, O, U), made
for an application (``core.loans.disbursement.new_application_reference``) and kept by its
loan. It is what a member types as the paybill account to repay the loan
(``core.payments.mpesa.rules.parse_loan_ref``) and reads in every loan SMS."""

from __future__ import annotations

import re

REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
LOAN_REFERENCE_RE = re.compile(rf"L[{REFERENCE_ALPHABET}]{{7}}")


def normalize_loan_reference(text: object) -> str | None:
    """``l7k2-m9qx`` -> ``L7K2M9QX``; None when it is not a loan reference's shape."""
    if not isinstance(text, str):
        return None
    cleaned = re.sub(r"[\s\-/]", "", text).upper()
    return cleaned if LOAN_REFERENCE_RE.fullmatch(cleaned) else None
