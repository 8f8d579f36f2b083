"""Staff use cases on members: search, masked or revealed personal data, KYC documents,
KYC rejection, teller cash deposits and statements. Every change and every
sensitive read writes an audit row in the same transaction.

Object-level rule (BOLA): a branch-bound caller (``Principal.branch``) sees
only members of that branch; to anyone else such a member does not exist
(``NotFound``), so ids cannot be probed.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.audit import log as audit
from core.kernel.deps import CoreDeps
from core.kernel.errors import InvalidInput, MemberNotAllowed, NotFound
from core.kernel.identity import is_valid_member_number, mask_msisdn
from core.kernel.permissions import Principal, can_access_branch
from core.ledger import entries as ledger
from core.members.registration import (
    check_branch,
    find_by_msisdn,
    find_by_national_id,
    find_by_number,
    get_member,
    member_account_ids,
    national_id_of,
)
from core.members.status import MemberStatus
from core.messaging.notifications import notify
from core.savings.accounts import DEPOSIT_TARGETS, Credit, CreditSource, credit_member
from db.models import Member, MemberDocument

DOCUMENT_KINDS = ("id_front", "id_back", "photo", "signed_form")
KYC_REQUIRED_DOCUMENTS = ("id_front", "id_back")


# ------------------------------------------------------------------ pure


def mask_national_id(national_id: str) -> str:
    return "*" * max(len(national_id) - 2, 0) + national_id[-2:]


def sniff_content_type(data: bytes) -> str | None:
    """The file's real type from its bytes (JPEG, PNG, PDF), whatever its name says.

    Both ends are checked: the signature at the start and the format's end
    marker (JPEG EOI, PNG IEND chunk, PDF ``%%EOF``), so a truncated file or
    an executable with a borrowed header is refused too.
    """
    tail = data[-1024:].rstrip(b"\r\n\x00 ")
    if data.startswith(b"\xff\xd8\xff") and tail.endswith(b"\xff\xd9"):
        return "image/jpeg"
    if (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        and data[12:16] == b"IHDR"
        and data.endswith(b"IEND\xaeB`\x82")
    ):
        return "image/png"
    if data.startswith(b"%PDF-") and b"%%EOF" in tail:
        return "application/pdf"
    return None


# ------------------------------------------------------------- members


def visible_member(session: Session, actor: Principal, member_id: int) -> Member:
    """The member, if the caller may see them; ``NotFound`` otherwise (no probing of ids)."""
    member = session.get(Member, member_id)
    if member is None or not can_access_branch(actor, member.branch):
        raise NotFound("no such member")
    return member


@dataclass(frozen=True)
class MemberQuery:
    number: str | None = None
    phone: str | None = None
    national_id: str | None = None
    name: str | None = None
    status: str | None = None


def search_members(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    query: MemberQuery,
    *,
    limit: int,
    after_id: int = 0,
) -> list[Member]:
    """Exact look-ups by number, phone or national ID (blind index); a name fragment otherwise."""
    exact: list[Member | None] = []
    if query.number is not None:
        exact.append(
            find_by_number(session, query.number)
            if is_valid_member_number(query.number.strip())
            else None
        )
    if query.phone is not None:
        exact.append(find_by_msisdn(session, query.phone))
    if query.national_id is not None:
        exact.append(find_by_national_id(session, deps, query.national_id))
    if exact:
        found = {m.id: m for m in exact if m is not None}
        if len(found) != 1 or len(exact) != sum(1 for m in exact if m is not None):
            return []
        member = next(iter(found.values()))
        ok = can_access_branch(actor, member.branch) and member.id > after_id
        if query.status is not None and member.status != query.status:
            ok = False
        return [member] if ok else []
    stmt: Select[tuple[Member]] = select(Member).where(Member.id > after_id)
    if actor.branch is not None:
        stmt = stmt.where(Member.branch == actor.branch)
    if query.status is not None:
        stmt = stmt.where(Member.status == query.status)
    if query.name:
        fragment = " ".join(query.name.split())[:60]
        escaped = re.sub(r"([%_\\])", r"\\\1", fragment)
        stmt = stmt.where(Member.full_name.ilike(f"%{escaped}%", escape="\\"))
    return list(session.scalars(stmt.order_by(Member.id).limit(limit)))


def reveal_pii(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int
) -> dict[str, str]:
    """The member's phone and national ID in the clear; the read is audited."""
    member = visible_member(session, actor, member_id)
    values = {"msisdn": member.msisdn, "national_id": national_id_of(deps, member)}
    audit.record(
        session, actor, "member.pii_read", target_type="member", target_id=member.id,
        after={"fields": sorted(values)}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return values


def assign_branch(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int, branch: str | None
) -> Member:
    """Set the branch that serves a member (None = head office). Audited."""
    member = visible_member(session, actor, member_id)
    if branch is not None:
        check_branch(branch)
    if not can_access_branch(actor, branch):
        raise InvalidInput("you may only assign your own branch", field="branch", reason="branch")
    before = {"branch": member.branch}
    member.branch = branch
    audit.record(
        session, actor, "member.assign_branch", target_type="member", target_id=member.id,
        before=before, after={"branch": branch}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return member


def masked_pii(deps: CoreDeps, member: Member) -> dict[str, str]:
    return {
        "msisdn": mask_msisdn(member.msisdn),
        "national_id": mask_national_id(national_id_of(deps, member)),
    }


def member_statement(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    account: str,
    *,
    limit: int,
    before_posting_id: int | None = None,
) -> list[ledger.StatementLine]:
    """A member's statement (newest first, running balance); the read is audited."""
    member = visible_member(session, actor, member_id)
    if account not in DEPOSIT_TARGETS:
        raise InvalidInput("account must be savings, deposits or shares", field="account")
    account_id = member_account_ids(session, member.id)[account]
    lines = ledger.statement(session, account_id, limit=limit, before_posting_id=before_posting_id)
    audit.record(
        session, actor, "member.statement_read", target_type="member", target_id=member.id,
        after={"account": account, "lines": len(lines)}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return lines


CASH_KEY_RE = re.compile(r"[A-Za-z0-9._:-]{8,80}")


def check_cash_key(idempotency_key: str) -> str:
    """A till's ``Idempotency-Key``, stripped: 8-80 of letters, digits, ``. _ : -``."""
    key = (idempotency_key or "").strip()
    if not CASH_KEY_RE.fullmatch(key):
        raise InvalidInput(
            "Idempotency-Key header: 8-80 of letters, digits, . _ : -",
            field="Idempotency-Key",
            reason="required",
        )
    return key


def cash_ledger_key(actor: Principal, idempotency_key: str) -> str:
    """The ledger's idempotency key of a till's cash deposit (scoped to the caller)."""
    return f"cash:{actor.kind}:{actor.id}:{idempotency_key}"


def cash_deposit(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    member_id: int,
    target: str,
    amount_cents: int,
    idempotency_key: str,
    approval_id: int | None = None,
) -> ledger.PostedEntry:
    """A teller's cash deposit, exactly once per ``Idempotency-Key`` (a replay returns the first).

    Keys are scoped to the caller (as Stripe scopes them to an account): two tills
    that happen to pick the same key never see each other's deposits. Above the till
    limit the API goes through ``core.members.approval_actions.take_cash_deposit``: the
    approved request calls this with the maker as ``actor`` (so the key is still the
    till's) and its ``approval_id``. The credit itself is ``credit_member``'s: the member's
    receipt SMS, the partners' ``deposit.received`` event and the audit row come with it.
    """
    member = visible_member(session, actor, member_id)
    key = check_cash_key(idempotency_key)
    return credit_member(
        session,
        deps,
        Credit(
            member_id=member.id, target=target, amount_cents=amount_cents,
            source=CreditSource.CASH, idempotency_key=cash_ledger_key(actor, key),
            business_key=f"deposit_received:{cash_ledger_key(actor, key)}",
            memo=f"Cash deposit to {target}", actor=actor,
            audit={"approval": approval_id} if approval_id is not None else {},
        ),
    ).posted  # fmt: skip


# ------------------------------------------------------------------ KYC


def reject_kyc(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int, reason: str
) -> Member:
    """Refuse a member's KYC with a reason the member reads by SMS; they stay pending."""
    member = visible_member(session, actor, member_id)
    text = " ".join((reason or "").split())
    if not 3 <= len(text) <= 60:
        raise InvalidInput("reason: 3-60 characters (it goes into an SMS)", field="reason")
    if member.status != MemberStatus.PENDING_KYC:
        raise MemberNotAllowed(f"member is {member.status}, not pending KYC", reason=member.status)
    before = {"kyc_rejection_reason": member.kyc_rejection_reason}
    member.kyc_rejection_reason = text
    count = session.scalar(
        select(func.count())
        .select_from(MemberDocument)
        .where(MemberDocument.member_id == member.id)
    )
    notify(
        session,
        template="kyc_rejected",
        business_key=f"kyc_rejected:{member.id}:{count}:{hashlib.sha256(text.encode()).hexdigest()[:12]}",
        now=deps.now(),
        member=member,
        data={"sacco": deps.sacco_name, "reason": text, "ussd_code": deps.ussd_code},
    )
    audit.record(
        session, actor, "member.kyc_reject", target_type="member", target_id=member.id,
        before=before, after={"kyc_rejection_reason": text}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return member


def check_kyc_ready(session: Session, member: Member) -> None:
    if member.status != MemberStatus.PENDING_KYC:
        raise MemberNotAllowed(f"member is {member.status}, not pending KYC", reason=member.status)
    have = set(
        session.scalars(select(MemberDocument.kind).where(MemberDocument.member_id == member.id))
    )
    missing = [k for k in KYC_REQUIRED_DOCUMENTS if k not in have]
    if missing:
        raise MemberNotAllowed(
            f"upload {', '.join(missing)} before asking for KYC approval", reason="documents"
        )


def approve_kyc(session: Session, deps: CoreDeps, member_id: int, *, business_key: str) -> None:
    """Activate a pending member and tell them by SMS."""
    member = get_member(session, member_id)
    check_kyc_ready(session, member)
    member.status = MemberStatus.ACTIVE
    member.kyc_rejection_reason = None
    notify(
        session,
        template="kyc_approved",
        business_key=business_key,
        now=deps.now(),
        member=member,
        data={
            "sacco": deps.sacco_name,
            "member_number": member.member_number,
            "ussd_code": deps.ussd_code,
        },
    )


# ------------------------------------------------------------ documents


def store_document(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    member_id: int,
    kind: str,
    data: bytes,
    directory: Path,
    max_bytes: int,
) -> MemberDocument:
    """Check the content (JPEG, PNG or PDF by its bytes, size), encrypt it to disk, record it."""
    member = visible_member(session, actor, member_id)
    if kind not in DOCUMENT_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(DOCUMENT_KINDS)}", field="kind")
    if not data:
        raise InvalidInput("the file is empty", field="file", reason="empty")
    if len(data) > max_bytes:
        raise InvalidInput(
            f"the file is larger than {max_bytes // 1000} kB", field="file", reason="too_large"
        )
    content_type = sniff_content_type(data)
    if content_type is None:
        raise InvalidInput(
            "only JPEG, PNG or PDF files are accepted (checked by content, not name)",
            field="file",
            reason="type_not_allowed",
        )
    directory.mkdir(parents=True, exist_ok=True)
    storage_name = f"{member.id}-{secrets.token_hex(16)}.bin"
    tmp = directory / f".{storage_name}.tmp"
    tmp.write_bytes(deps.vault.encrypt_bytes(data))
    os.replace(tmp, directory / storage_name)
    doc = MemberDocument(
        member_id=member.id,
        kind=kind,
        content_type=content_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_name=storage_name,
        uploaded_by_id=actor.id if actor.kind == "staff" else None,
        created_at=deps.now(),
    )
    session.add(doc)
    session.flush()
    audit.record(
        session, actor, "member.document_upload", target_type="member", target_id=member.id,
        after={"document": doc.id, "kind": kind, "sha256": doc.sha256, "bytes": len(data)},
        now=deps.now(),
    )  # fmt: skip
    session.flush()
    return doc


def list_documents(session: Session, actor: Principal, member_id: int) -> list[MemberDocument]:
    member = visible_member(session, actor, member_id)
    return list(
        session.scalars(
            select(MemberDocument)
            .where(MemberDocument.member_id == member.id)
            .order_by(MemberDocument.id)
        )
    )


def rotate_document_keys(session: Session, deps: CoreDeps, directory: Path) -> int:
    """Re-encrypt every stored document under the newest PII key (``rotate-pii-keys``).

    Each file is replaced atomically; a file already under the newest key is
    rewritten the same way, so the command can be run again after a crash.
    """
    count = 0
    for name in session.scalars(select(MemberDocument.storage_name).order_by(MemberDocument.id)):
        path = directory / name
        tmp = directory / f".{name}.rotate"
        tmp.write_bytes(deps.vault.rotate(path.read_bytes()))
        os.replace(tmp, path)
        count += 1
    return count


def read_document(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    member_id: int,
    document_id: int,
    directory: Path,
) -> tuple[MemberDocument, bytes]:
    """Decrypt a stored document; the read is audited."""
    member = visible_member(session, actor, member_id)
    doc = session.get(MemberDocument, document_id)
    if doc is None or doc.member_id != member.id:
        raise NotFound("no such document")
    data = deps.vault.decrypt_bytes((directory / doc.storage_name).read_bytes())
    audit.record(
        session, actor, "member.document_read", target_type="member", target_id=member.id,
        after={"document": doc.id}, now=deps.now(),
    )  # fmt: skip
    session.flush()
    return doc, data
