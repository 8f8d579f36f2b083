"""The states of a maker-checker request (``approval_requests.status``).

A ``StrEnum``: a member *is* the string the table stores, so the database and the
staff API's JSON keep the same values.
"""

from __future__ import annotations

from enum import StrEnum


class ApprovalStatus(StrEnum):
    PENDING = "pending"  # asked, waiting for a checker
    APPROVED = "approved"  # decided yes; the action ran in the same transaction
    REJECTED = "rejected"  # decided no
    FAILED = "failed"  # decided yes, but the action refused (the reason is in ``result``)
