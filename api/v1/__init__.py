"""The staff and partner REST API under ``/api/v1``.

``init_app`` wires: flask-smorest (schemas -> OpenAPI 3 at
``/api/v1/openapi.json``, Swagger UI at ``/api/v1/docs``, its scripts and styles served
from the ``swagger-ui-bundle`` package so the page needs no internet), problem+json
errors, JWT settings, CORS allowlist, security headers and Flask-Limiter rate
limits (Redis when configured, memory otherwise).
"""

from __future__ import annotations

import http
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import Flask, Response, abort, request, send_from_directory
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from swagger_ui_bundle import swagger_ui_path

from api.v1 import (
    approval_views,
    audit_views,
    auth_views,
    close_day_views,
    crb_views,
    loan_product_views,
    loan_views,
    member_views,
    mpesa_views,
    problems,
    recovery_views,
    savings_product_views,
    score_views,
    staff_views,
    teller_views,
    year_end_views,
)
from api.v1.schemas import ProblemSchema
from api.v1.security import PUBLIC, SECURITY_DOC, request_id
from config import Settings
from core.members.exit import ExitPolicy, SharesOnExit
from core.risk.sim_swap import SimSwapPolicy
from core.staff.accounts import AuthPolicy

BLUEPRINTS = [
    auth_views.blp,
    staff_views.blp,
    member_views.blp,
    approval_views.blp,
    audit_views.blp,
    mpesa_views.blp,
    loan_product_views.blp,
    loan_views.blp,
    close_day_views.blp,
    crb_views.blp,
    recovery_views.blp,
    score_views.blp,
    teller_views.blp,
    savings_product_views.blp,
    year_end_views.blp,
]
DOCS_PATH = "/api/v1/docs"
# Swagger UI's files, served by the app from the pinned swagger-ui-bundle package: a SACCO
# office network often has no internet, and a CDN would see every page view.
DOCS_ASSETS_URL = f"{DOCS_PATH}/static/"
DOCS_ASSETS = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
     "favicon-16x16.png", "favicon-32x32.png"}
)  # fmt: skip


class SaccoApi(Api):  # type: ignore[misc]
    """flask-smorest's Api with errors documented as ``application/problem+json``."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, problems.MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Error (application/problem+json)", "schema": ProblemSchema}
        prepare_response(response, self.spec, problems.MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def _register_error_handlers(self) -> None:
        """Errors are handled by ``api.v1.problems`` (problem+json), not smorest's JSON."""


@dataclass(frozen=True)
class ApiState:
    policy: AuthPolicy
    access_minutes: int
    document_dir: str
    document_max_bytes: int
    large_threshold_cents: int
    till_limit_cents: int
    cors_origins: frozenset[str]
    limiter: Limiter
    sim_swap: SimSwapPolicy
    production: bool = False
    exit_policy: ExitPolicy = ExitPolicy()  # the by-laws' notice and shares rule


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The docs page loads Swagger UI from the app itself (its inline start-up script needs
# 'unsafe-inline'); nothing from another origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-API-Key, X-Request-ID"


def _after(response: Response) -> Response:
    if not request.path.startswith("/api/"):
        return response
    state: ApiState = request_state()
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    response.headers["Content-Security-Policy"] = (
        DOCS_CSP if request.path.startswith(DOCS_PATH) else API_CSP
    )
    response.headers["X-Request-ID"] = request_id()
    origin = request.headers.get("Origin")
    if origin and origin in state.cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE"
        response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
        response.headers["Access-Control-Max-Age"] = "600"
    response.vary.add("Origin")
    return response


def request_state() -> ApiState:
    from flask import current_app

    return current_app.extensions["sacco_api"]  # type: ignore[no-any-return]


def _public_view(fn: Any) -> Any:
    @wraps(fn)
    def view(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    view._permission = PUBLIC  # type: ignore[attr-defined]
    view._public_reason = "API documentation"  # type: ignore[attr-defined]
    return view


def _docs_asset(filename: str) -> Response:
    """One of Swagger UI's own files (a fixed list: nothing else in the package is served)."""
    if filename not in DOCS_ASSETS:
        abort(404)
    return send_from_directory(str(swagger_ui_path), filename, max_age=3600)


def _login_name() -> str:
    """The throttle key of a sign-in: the username as ``core.staff.accounts.login`` reads it."""
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return "login-name:" + (name.strip().lower()[:64] if isinstance(name, str) else "")


def _limiter(app: Flask, settings: Settings) -> Limiter:
    runtime = app.extensions["sacco"]
    if runtime.redis is not None:
        storage: dict[str, Any] = {
            # The runtime's own client pool decides the server; the URI only picks the backend.
            "storage_uri": "redis://",
            "storage_options": {"connection_pool": runtime.redis.connection_pool},
        }
    else:
        storage = {"storage_uri": "memory://"}
    limiter = Limiter(
        key_func=get_remote_address,
        strategy="moving-window",
        headers_enabled=True,
        key_prefix="sacco-api",
        swallow_errors=True,  # Redis down: log and serve rather than answer 500
        in_memory_fallback_enabled=True,
        **storage,
    )
    limiter.init_app(app)
    return limiter


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SACCO_SETTINGS"]
    app.config.update(
        API_TITLE=f"{settings.sacco_name} back office API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=DOCS_ASSETS_URL,
        # validatorUrl: Swagger UI would otherwise fetch a badge from validator.swagger.io.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        JWT_SECRET_KEY=settings.jwt_secret_key,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.access_token_minutes),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_IDENTITY_CLAIM="sub",
    )
    JWTManager(app)
    api = SaccoApi(
        app,
        spec_kwargs={
            "info": {
                "description": (
                    "Staff and partner API. Sign in at /auth/login for a Bearer token, or send "
                    "a partner key as X-API-Key. Errors are application/problem+json."
                )
            },
            "servers": [{"url": "/"}],
            "security": SECURITY_DOC,
        },
    )
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
    problems.init_app(app)
    app.add_url_rule(
        f"{DOCS_ASSETS_URL}<path:filename>", endpoint="api-docs.swagger_ui_asset",
        view_func=_docs_asset,
    )  # fmt: skip
    for endpoint, fn in list(app.view_functions.items()):
        if endpoint.startswith("api-docs."):
            app.view_functions[endpoint] = _public_view(fn)
    limiter = _limiter(app, settings)
    for blp in BLUEPRINTS:
        limiter.limit(settings.api_rate_limit)(blp)
    for endpoint in ("api_auth.login", "api_auth.mfa_verify", "api_auth.refresh"):
        limited: Any = limiter.limit(settings.api_login_rate_limit, key_func=get_remote_address)
        app.view_functions[endpoint] = limited(app.view_functions[endpoint])
    # Failed sign-ins per username, from any address: the same for names that do not exist,
    # and it expires by itself (a lock-out would let anyone lock a colleague out).
    by_name: Any = limiter.limit(
        settings.api_login_name_rate_limit,
        key_func=_login_name,
        deduct_when=lambda response: response.status_code == 401,
    )
    app.view_functions["api_auth.login"] = by_name(app.view_functions["api_auth.login"])
    app.extensions["sacco_api"] = ApiState(
        policy=AuthPolicy(
            max_failures=settings.login_max_failures,
            lockout=timedelta(minutes=settings.login_lockout_minutes),
            idle=timedelta(minutes=settings.session_idle_minutes),
            absolute=timedelta(hours=settings.session_absolute_hours),
        ),
        access_minutes=settings.access_token_minutes,
        document_dir=settings.document_dir,
        document_max_bytes=settings.document_max_bytes,
        large_threshold_cents=settings.approval_manager_threshold_cents,
        till_limit_cents=settings.cash_deposit_till_limit_cents,
        cors_origins=frozenset(
            o.strip() for o in settings.api_cors_origins.split(",") if o.strip()
        ),
        limiter=limiter,
        sim_swap=SimSwapPolicy(
            window=timedelta(days=settings.sim_swap_window_days),
            cache=timedelta(seconds=settings.sim_swap_cache_seconds),
        ),
        production=settings.is_production,
        exit_policy=ExitPolicy(settings.exit_notice_days, SharesOnExit(settings.exit_shares)),
    )
    app.after_request(_after)
