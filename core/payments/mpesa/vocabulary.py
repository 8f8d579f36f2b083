"""The M-Pesa states, one ``StrEnum`` per table (``db/models_mpesa.py``).

A member *is* the string its table stores and its CHECK constraint allows, so the
database, the staff API's JSON and the SQL filters keep the same values.
"""

from __future__ import annotations

from enum import StrEnum


class CallbackStatus(StrEnum):
    """``mpesa_callbacks.status``: what processing made of a callback stored raw."""

    RECEIVED = "received"  # stored, not yet processed
    PROCESSED = "processed"
    MALFORMED = "malformed"  # not a body we can read: kept for the record
    UNMATCHED = "unmatched"  # no request of ours (yet): replayed later
    ERROR = "error"  # processing failed: replayed later


class StkStatus(StrEnum):
    """``mpesa_stk_requests.status``: queued -> sending -> pending -> succeeded | failed;
    ``unknown`` while only a status query can say."""

    QUEUED = "queued"
    SENDING = "sending"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


class C2BStatus(StrEnum):
    """``mpesa_c2b_payments.status``: what became of a paybill payment."""

    CREDITED = "credited"
    SUSPENSE = "suspense"
    DUPLICATE_OF_STK = "duplicate_of_stk"  # the same receipt an STK push already credited


class PayoutStatus(StrEnum):
    """``mpesa_b2c_payouts.status``: requested -> sending -> sent -> succeeded | failed;
    ``unknown`` until a result or a status query says; ``review`` when only staff can."""

    REQUESTED = "requested"
    SENDING = "sending"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REVIEW = "review"


class SuspenseStatus(StrEnum):
    """``mpesa_suspense_items.status``: ``open`` until assigned to a member or closed as
    a duplicate of money already credited."""

    OPEN = "open"
    ASSIGNED = "assigned"
    DUPLICATE = "duplicate"
