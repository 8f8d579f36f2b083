"""The audit log, for auditors."""

from __future__ import annotations

import json
from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from api.v1 import schemas as sc
from api.v1.security import current, requires, runtime
from core.audit import log as audit
from db.models import AuditEvent

blp = Blueprint("api_audit", __name__, url_prefix="/api/v1/audit", description="Audit log")


@blp.route("", methods=["GET"])
@requires("audit:read")
@blp.arguments(sc.AuditArgs, location="query")
@blp.response(200, sc.page_schema(sc.AuditOut, "AuditPage"))
def query(args: dict[str, Any]) -> Any:
    """Audit rows oldest first, filtered by actor, action or target. This read is audited too."""
    rt = runtime()
    stmt = select(AuditEvent).where(AuditEvent.id > sc.decode_cursor(args["cursor"]))
    for name in ("actor_type", "actor_id", "action", "target_type", "target_id"):
        if args.get(name) is not None:
            stmt = stmt.where(getattr(AuditEvent, name) == args[name])
    with rt.unit_of_work() as s:
        rows = list(s.scalars(stmt.order_by(AuditEvent.id).limit(args["limit"] + 1)))
        result = sc.page(rows, args["limit"])
        result["items"] = [
            {
                **{c: getattr(r, c) for c in (
                    "id", "created_at", "actor_type", "actor_id", "actor_name", "action",
                    "target_type", "target_id", "address", "request_id", "prev_hash", "hash",
                )},
                "before": json.loads(r.before) if r.before else None,
                "after": json.loads(r.after) if r.after else None,
            }
            for r in result["items"]
        ]  # fmt: skip
        filters = {k: v for k, v in args.items() if k not in ("limit", "cursor")}
        audit.record(s, current(), "audit.read", after={"filters": filters}, now=rt.deps.now())
    return result
