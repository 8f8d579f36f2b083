"""Sign-in, MFA, token refresh, logout, own profile and password."""

from __future__ import annotations

import base64
import io
from typing import Any

import qrcode
from flask_smorest import Blueprint
from qrcode.image.pure import PyPNGImage

from api.v1 import schemas as sc
from api.v1.security import (
    api_state,
    client_address,
    current,
    decode,
    issue_token,
    public,
    request_id,
    requires,
    runtime,
    unauthorized,
)
from core.staff import accounts as staff_core
from core.staff.accounts import LoginResult

blp = Blueprint("api_auth", __name__, url_prefix="/api/v1/auth", description="Sign-in and MFA")


def _policy() -> staff_core.AuthPolicy:
    return api_state().policy  # type: ignore[no-any-return]


def _tokens(result: LoginResult) -> dict[str, Any]:
    staff = result.staff
    body: dict[str, Any] = {
        "stage": result.stage,
        "token_type": "Bearer",
        "access_token": None,
        "refresh_token": None,
        "expires_in": 0,
        "mfa_token": None,
        "staff": staff,
    }
    if result.stage == "active":
        body["access_token"], body["expires_in"] = issue_token(
            staff.id, result.session_id, "access", staff.role
        )
        body["refresh_token"] = result.refresh_token
    else:
        use = "mfa" if result.stage == "mfa_pending" else "mfa_enrol"
        body["mfa_token"], body["expires_in"] = issue_token(
            staff.id, result.session_id, use, staff.role
        )
    return body


@blp.route("/login", methods=["POST"])
@public("signing in")
@blp.arguments(sc.LoginIn)
@blp.response(200, sc.TokenOut)
def login(body: dict[str, Any]) -> Any:
    """Sign in with username and password.

    ``stage`` says what comes next: ``active`` (tokens are in the answer),
    ``mfa_pending`` (post a TOTP code with ``mfa_token`` to ``/auth/mfa/verify``)
    or ``mfa_enrol`` (a role that needs MFA without it: enrol with ``mfa_token``
    as the bearer token). A wrong password and an unknown name get the same 401;
    failures are throttled per address and per username (429 with ``Retry-After``,
    unknown names alike) and lock no account. 423 comes only with the right password,
    for an account locked by wrong second factors.
    """
    rt = runtime()
    with rt.unit_of_work() as s:
        result = staff_core.login(
            s, rt.deps, _policy(), username=body["username"], password=body["password"],
            address=client_address(), request_id=request_id(),
        )  # fmt: skip
    return _tokens(result)


@blp.route("/mfa/verify", methods=["POST"])
@public("second step of signing in; authenticated by the mfa_token in the body")
@blp.arguments(sc.MfaVerifyIn)
@blp.response(200, sc.TokenOut)
def mfa_verify(body: dict[str, Any]) -> Any:
    """Finish signing in with a TOTP code (or a one-time recovery code)."""
    claims = decode(body["mfa_token"], ("mfa",))
    rt = runtime()
    try:
        with rt.unit_of_work() as s:
            result = staff_core.verify_mfa(
                s, rt.deps, _policy(), claims["sid"], code=body.get("code"),
                recovery_code=body.get("recovery_code"), address=client_address(),
                request_id=request_id(),
            )  # fmt: skip
    except staff_core.SessionInvalid as exc:  # after the unit of work kept the revocation
        raise unauthorized(exc.detail, "session_invalid") from None
    return _tokens(result)


@blp.route("/refresh", methods=["POST"])
@public("authenticated by the refresh token in the body")
@blp.arguments(sc.RefreshIn)
@blp.response(200, sc.TokenOut)
def refresh(body: dict[str, Any]) -> Any:
    """Trade a refresh token for a new access token and a new refresh token.

    Each refresh token works once. Sending one again revokes the session.
    """
    rt = runtime()
    with rt.unit_of_work() as s:
        result = staff_core.refresh(
            s, rt.deps, _policy(), body["refresh_token"], address=client_address()
        )
    return _tokens(result)


@blp.route("/logout", methods=["POST"])
@requires("self")
@blp.response(204)
def logout() -> Any:
    """End this session: its access and refresh tokens stop working at once."""
    rt = runtime()
    me = current()
    with rt.unit_of_work() as s:
        staff_core.revoke_session(s, rt.deps, me, me.session_id or "", "logout")
    return None


@blp.route("/me", methods=["GET"])
@requires("self")
@blp.response(200, sc.MeOut)
def me() -> Any:
    """Who am I, and what may I do."""
    p = current()
    return {
        "kind": p.kind,
        "id": p.id,
        "name": p.name,
        "role": p.role,
        "branch": p.branch,
        "permissions": sorted(p.permissions),
        "must_change_password": p.must_change_password,
    }


@blp.route("/password", methods=["POST"])
@requires("self")
@blp.arguments(sc.PasswordIn)
@blp.response(204)
def change_password(body: dict[str, Any]) -> Any:
    """Change my password (12+ characters, not a common one); my other sessions end."""
    rt = runtime()
    with rt.unit_of_work() as s:
        staff_core.change_password(
            s, rt.deps, current(), body["current_password"], body["new_password"]
        )
    return None


@blp.route("/mfa/enrol", methods=["POST"])
@requires("self", uses=("access", "mfa_enrol"))
@blp.response(200, sc.EnrolOut)
def mfa_enrol() -> Any:
    """Start TOTP enrolment: put the secret or the ``otpauth://`` URI in an authenticator app."""
    rt = runtime()
    with rt.unit_of_work() as s:
        secret, uri = staff_core.begin_mfa_enrolment(
            s, rt.deps, current(), current().id, rt.sacco_name
        )
    return {"secret": secret, "provisioning_uri": uri, "qr_png_base64": _qr_png(uri)}


def _qr_png(text: str) -> str:
    image = qrcode.make(text, image_factory=PyPNGImage, box_size=6, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return base64.b64encode(buffer.getvalue()).decode()


@blp.route("/mfa/confirm", methods=["POST"])
@requires("self", uses=("access", "mfa_enrol"))
@blp.arguments(sc.ConfirmIn)
@blp.response(200, sc.ConfirmOut)
def mfa_confirm(body: dict[str, Any]) -> Any:
    """Finish enrolment with a first code: returns 10 one-time recovery codes (shown once).

    When signing in was waiting for enrolment, the answer also holds the tokens.
    """
    rt = runtime()
    me = current()
    with rt.unit_of_work() as s:
        codes, result = staff_core.confirm_mfa_enrolment(
            s, rt.deps, _policy(), me, me.id, body["code"], session_id=me.session_id
        )
    return {"recovery_codes": codes, "tokens": _tokens(result) if result else None}
