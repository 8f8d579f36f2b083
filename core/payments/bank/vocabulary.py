"""The bank-transfer states, one ``StrEnum`` per column (``db/models_bank.py``)."""

from __future__ import annotations

from enum import StrEnum


class TransferStatus(StrEnum):
    """``bank_transfers.status``: requested -> sending -> sent -> succeeded | failed;
    ``unknown`` when the bank's answer never came (a timeout: it may have reached the bank);
    ``review`` when only staff can say (maker-checker ``bank_transfer.resolve``)."""

    REQUESTED = "requested"
    SENDING = "sending"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REVIEW = "review"


OPEN = (
    TransferStatus.REQUESTED,
    TransferStatus.SENDING,
    TransferStatus.SENT,
    TransferStatus.UNKNOWN,
    TransferStatus.REVIEW,
)


class TransferType(StrEnum):
    """``bank_transfers.transfer_type``: the bank's own book (``internal``), RTGS (large,
    same day, through the Central Bank) or PesaLink (instant, to another bank)."""

    INTERNAL = "internal"
    RTGS = "rtgs"
    PESALINK = "pesalink"


class CallbackStatus(StrEnum):
    """``bank_callbacks.status``: what processing made of a callback stored raw."""

    RECEIVED = "received"
    PROCESSED = "processed"
    MALFORMED = "malformed"
    UNMATCHED = "unmatched"
    ERROR = "error"
