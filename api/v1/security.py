"""Who is calling and may they: bearer JWTs for staff, ``X-API-Key`` for partners.

Every view is decorated with ``requires(permission)`` or ``public(reason)``,
placed right under the route decorator so it runs before any parsing. A test
walks the URL map and fails on a view with neither.

Access tokens are JWTs (HS256, ``JWT_SECRET_KEY``, about 15 minutes) naming
the staff id (``sub``) and the session (``sid``); each request also checks that
session in the database (``core.staff.accounts.authenticate_session``), so logout and
revocation act at once. ``use`` separates full access tokens from the short
tokens of a login still waiting for MFA (``mfa``) or MFA enrolment
(``mfa_enrol``).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

import jwt
from flask import current_app, g, request
from flask_jwt_extended import create_access_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from api.v1.problems import ApiProblem
from core.audit import log as audit
from core.kernel.permissions import PERMISSIONS, Principal
from core.staff import accounts as staff_core
from observability.logs import new_request_id, valid_request_id
from runtime import Runtime

PUBLIC = "public"
F = TypeVar("F", bound=Callable[..., Any])
SECURITY_DOC: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKey": []}]


def runtime() -> Runtime:
    return current_app.extensions["sacco"]  # type: ignore[no-any-return]


def api_state() -> Any:
    return current_app.extensions["sacco_api"]


def client_address() -> str:
    return (request.remote_addr or "")[:64]


def request_id() -> str:
    """The request's id, the one its log lines carry (``observability.logs``)."""
    rid = getattr(g, "request_id", None)
    if rid is None:
        rid = valid_request_id(request.headers.get("X-Request-ID")) or new_request_id()
        g.request_id = rid
    return str(rid)


def unauthorized(detail: str, code: str = "unauthorized") -> ApiProblem:
    return ApiProblem(401, code, detail, {"WWW-Authenticate": 'Bearer realm="sacco"'})


def issue_token(staff_id: int, session_id: str, use: str, role: str) -> tuple[str, int]:
    state = api_state()
    minutes = {"access": state.access_minutes, "mfa": 5, "mfa_enrol": 15}[use]
    token = create_access_token(
        identity=str(staff_id),
        additional_claims={"sid": session_id, "use": use, "role": role},
        expires_delta=timedelta(minutes=minutes),
    )
    return token, minutes * 60


def decode(token: str, uses: tuple[str, ...]) -> dict[str, Any]:
    try:
        claims = decode_token(token)
    except (jwt.PyJWTError, JWTExtendedException, ValueError) as exc:
        expired = isinstance(exc, jwt.ExpiredSignatureError)
        raise unauthorized(
            "token expired: refresh it or sign in again" if expired else "invalid token",
            "token_expired" if expired else "invalid_token",
        ) from None
    if claims.get("use") not in uses or not isinstance(claims.get("sid"), str):
        raise unauthorized("this token cannot be used here", "invalid_token")
    try:
        int(claims["sub"])
    except (KeyError, TypeError, ValueError):
        raise unauthorized("invalid token", "invalid_token") from None
    return claims


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("use 'Authorization: Bearer <access token>'", "invalid_token")
    return token.strip()


def authenticate(uses: tuple[str, ...] = ("access",)) -> Principal:
    rt = runtime()
    policy = api_state().policy
    key = request.headers.get("X-API-Key")
    token = _bearer()
    if key is not None and token is None and "access" in uses:
        try:
            with rt.unit_of_work() as s:
                return staff_core.authenticate_api_key(
                    s, rt.deps, key, address=client_address(), request_id=request_id()
                )
        except staff_core.AuthFailed:
            raise unauthorized("invalid API key", "invalid_api_key") from None
    if token is None:
        raise unauthorized("sign in first: send 'Authorization: Bearer <access token>'")
    claims = decode(token, uses)
    staff_id, session_id = int(claims["sub"]), claims["sid"]
    try:
        with rt.unit_of_work() as s:
            if claims["use"] == "access":
                staff = staff_core.authenticate_session(s, rt.deps, policy, session_id, staff_id)
                principal = staff_core.principal_for(
                    staff, address=client_address(), request_id=request_id()
                )
            else:
                row, staff = staff_core.pending_session(
                    s, rt.deps, policy, session_id, claims["use"]
                )
                if staff.id != staff_id:
                    raise unauthorized("invalid token", "invalid_token")
                principal = staff_core.principal_for(
                    staff, address=client_address(), request_id=request_id()
                )
                principal = Principal(**{**principal.__dict__, "permissions": frozenset({"self"})})
    except staff_core.SessionInvalid as exc:  # after the unit of work kept the revocation
        raise unauthorized(exc.detail, "session_invalid") from None
    return Principal(**{**principal.__dict__, "session_id": session_id})


def current() -> Principal:
    return g.principal  # type: ignore[no-any-return]


def _audit_denied(principal: Principal, permission: str) -> None:
    """A refused call is a security event: audited (best effort, the 403 stands anyway)."""
    rt = runtime()
    try:
        with rt.unit_of_work() as s:
            audit.record(
                s, principal, "authz.denied", target_type="endpoint",
                target_id=f"{request.method} {request.path}",
                after={"permission": permission}, now=rt.deps.now(),
            )  # fmt: skip
    except Exception:
        current_app.logger.exception("could not audit a refused call")


def _document(wrapper: Any, permission: str) -> None:
    wrapper._apidoc = deepcopy(getattr(wrapper, "_apidoc", {}))
    manual = wrapper._apidoc.setdefault("manual_doc", {})
    if permission == PUBLIC:
        manual["security"] = []
    else:
        manual["security"] = SECURITY_DOC
        what = PERMISSIONS[permission]
        manual["description"] = (
            manual.get("description", "") + f"\n\nPermission: `{permission}` ({what})."
        ).strip()


def requires(permission: str, *, uses: tuple[str, ...] = ("access",)) -> Callable[[F], F]:
    """The caller must be signed in and hold ``permission`` (``self``: any signed-in staff)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission}")

    def decorator(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate(uses)
            if permission == "self" and principal.kind != "staff":
                _audit_denied(principal, permission)
                raise ApiProblem(403, "forbidden", "only staff accounts may do this")
            if principal.must_change_password and permission != "self":
                raise ApiProblem(
                    403,
                    "password_change_required",
                    "change your first password (POST /api/v1/auth/password) before anything else",
                )
            if not principal.has(permission):
                _audit_denied(principal, permission)
                raise ApiProblem(403, "forbidden", f"this needs the '{permission}' permission")
            g.principal = principal
            return fn(*args, **kwargs)

        wrapper._permission = permission  # type: ignore[attr-defined]
        _document(wrapper, permission)
        return wrapper  # type: ignore[return-value]

    return decorator


def public(reason: str) -> Callable[[F], F]:
    """No sign-in needed (login, refresh, the OpenAPI document); ``reason`` says why."""

    def decorator(fn: F) -> F:
        fn._permission = PUBLIC  # type: ignore[attr-defined]
        fn._public_reason = reason  # type: ignore[attr-defined]
        _document(fn, PUBLIC)
        return fn

    return decorator
