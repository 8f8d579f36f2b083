"""The tamper-evident audit log: who did or read what, when, from where, before and after.

Each row's ``hash`` is SHA-256 over its own fields and the previous row's hash
(``prev_hash``), so changing, deleting or reordering any row breaks every hash
after it. Appends are serialised by locking the single ``audit_chain_head`` row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
serialises writers), which also records the last hash so that cutting rows off
the end is detected too. Under that lock the head also gives the new row its id (the
last one's plus one, so the chain's ids have no gaps) and the row is hashed before it is
inserted: an append is three statements (lock the head, insert the row, move the head).

``record`` writes in the caller's transaction and does not commit: the audit
row exists exactly when the audited change commits. ``verify_chain`` recomputes
everything and names the first broken row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.permissions import Principal
from db.models import AuditChainHead, AuditEvent

GENESIS = "0" * 64


def canonical(value: Mapping[str, Any] | None) -> str | None:
    """Stable JSON (sorted keys, no spaces) so the hash can be recomputed byte for byte."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def event_hash(
    *,
    event_id: int,
    created_at: datetime,
    actor_type: str,
    actor_id: int | None,
    actor_name: str,
    action: str,
    target_type: str,
    target_id: str,
    address: str,
    request_id: str,
    before: str | None,
    after: str | None,
    prev_hash: str,
) -> str:
    body = json.dumps(
        [
            event_id,
            created_at.isoformat(),
            actor_type,
            actor_id,
            actor_name,
            action,
            target_type,
            target_id,
            address,
            request_id,
            before,
            after,
            prev_hash,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _hash_of(row: AuditEvent, prev_hash: str) -> str:
    return event_hash(
        event_id=row.id,
        created_at=row.created_at,
        actor_type=row.actor_type,
        actor_id=row.actor_id,
        actor_name=row.actor_name,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        address=row.address,
        request_id=row.request_id,
        before=row.before,
        after=row.after,
        prev_hash=prev_hash,
    )


def record(
    session: Session,
    actor: Principal,
    action: str,
    *,
    target_type: str = "",
    target_id: object = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    now: datetime,
) -> AuditEvent:
    """Append one row to the chain in the caller's transaction, stamped ``now`` (the use
    case's injected clock, ``deps.now()``)."""
    head = session.scalar(select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update())
    if head is None:  # pragma: no cover - the migration seeds it
        raise RuntimeError("audit_chain_head row missing: run the migrations")
    # What the database will give back (``UTCDateTime`` stores and returns UTC to the
    # microsecond), so the hash is computed before the insert, not read back after it.
    created = now.astimezone(UTC)
    row = AuditEvent(
        id=head.last_event_id + 1,  # under the head's lock: the next in the chain
        created_at=created,
        actor_type=actor.kind,
        actor_id=actor.id if actor.kind != "system" else None,
        actor_name=actor.name[:80],
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:64],
        address=actor.address[:64],
        request_id=actor.request_id[:64],
        before=canonical(before),
        after=canonical(after),
        prev_hash=head.last_hash,
        hash="",
    )
    row.hash = _hash_of(row, head.last_hash)
    session.add(row)
    head.last_event_id = row.id
    head.last_hash = row.hash
    session.flush()  # the row and the head: two statements
    return row


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_broken_id: int | None
    problem: str

    @property
    def ok(self) -> bool:
        return self.first_broken_id is None and not self.problem


def verify_chain(session: Session, *, batch: int = 1000) -> ChainReport:
    """Recompute every hash in id order; name the first row that does not match."""
    expected_prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            checked += 1
            if row.prev_hash != expected_prev:
                return ChainReport(checked, row.id, "prev_hash does not match the row before")
            if _hash_of(row, row.prev_hash) != row.hash:
                return ChainReport(checked, row.id, "hash does not match the row's contents")
            expected_prev = row.hash
            last_id = row.id
        session.expunge_all()
    head = session.get(AuditChainHead, 1)
    if head is not None and (head.last_hash != expected_prev or head.last_event_id != last_id):
        return ChainReport(
            checked, None, f"chain head says row {head.last_event_id} is last: rows are missing"
        )
    return ChainReport(checked, None, "")
