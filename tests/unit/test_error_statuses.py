"""Domain errors carry no HTTP status; the API gives them one (api/v1/problems.py).

Every ``SaccoError`` that core defines, raised inside an API view, answers with a
problem+json 4xx that names its code: never a 500, also for an error added to core
without a row in the table. The statuses of the errors core had when the table
replaced the ``http_status`` attributes are pinned here, so that move changed none.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest
from flask import Flask

import core
from api.v1 import problems
from core.kernel.errors import DomainError, InvalidInput, SaccoError

# What each error answered before (its old ``http_status``); new errors need no row.
PINNED = {
    "SaccoError": 400,
    "InvalidInput": 422,
    "DomainError": 409,
    "NotFound": 404,
    "UnbalancedEntry": 422,
    "InsufficientFunds": 409,
    "IdempotencyConflict": 409,
    "HoldNotPending": 409,
    "AlreadyReversed": 409,
    "DuplicateMember": 409,
    "PinLocked": 423,
    "PinInvalid": 401,
    "MemberNotAllowed": 403,
    "SelfApproval": 403,
    "NotAChecker": 403,
    "AlreadyDecided": 409,
    "AboveTillLimit": 403,
    "AuthFailed": 401,
    "AccountLocked": 423,
    "SessionInvalid": 401,
    "MfaInvalid": 401,
    "RefreshReused": 401,
    "ApprovalRequired": 403,
    "BootstrapClosed": 409,
    "SuspenseAlreadyAssigned": 409,
    "PayoutNotInReview": 409,
    "LimitExceeded": 422,
    "SimSwapBlocked": 403,
    "SimSwapEventReviewed": 409,
}


def _subclasses(cls: type[SaccoError]) -> Iterator[type[SaccoError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def core_errors() -> list[type[SaccoError]]:
    """Every ``SaccoError`` class defined in a module of ``core`` (all of them imported)."""
    for info in pkgutil.walk_packages(core.__path__, "core."):
        importlib.import_module(info.name)
    found = {c for c in _subclasses(SaccoError) if c.__module__.startswith("core.")}
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def instance(cls: type[SaccoError]) -> SaccoError:
    """One of ``cls``, its required keyword arguments filled with a placeholder."""
    required = {
        name: "x"
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    }
    return cls("refused for the test", **required)


ERRORS = core_errors()


def test_the_walk_finds_the_errors_of_every_domain() -> None:
    names = {c.__name__ for c in ERRORS}
    assert set(PINNED) <= names, set(PINNED) - names
    assert {c.__module__.split(".")[1] for c in ERRORS} >= {
        "kernel", "staff", "approvals", "payments", "risk"
    }  # fmt: skip


def test_core_errors_carry_no_http_status() -> None:
    assert [c.__name__ for c in ERRORS if hasattr(c, "http_status")] == []


def test_the_table_holds_only_client_errors() -> None:
    assert all(400 <= status < 500 for status in problems.STATUS_BY_CODE.values())
    assert 400 <= problems.DEFAULT_STATUS < 500


@pytest.fixture(scope="module")
def app() -> Flask:
    app = Flask(__name__)
    problems.init_app(app)
    by_name = {f"{c.__module__}.{c.__qualname__}": c for c in ERRORS}

    @app.get("/api/raise/<name>")
    def raise_it(name: str) -> str:
        raise instance(by_name[name])

    return app


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_the_api_answers_every_core_error_with_a_4xx_problem(
    app: Flask, cls: type[SaccoError]
) -> None:
    response = app.test_client().get(f"/api/raise/{cls.__module__}.{cls.__qualname__}")
    assert 400 <= response.status_code < 500
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == cls.code and body["status"] == response.status_code
    if cls.__name__ in PINNED:
        assert response.status_code == PINNED[cls.__name__]
    assert ("WWW-Authenticate" in response.headers) == (response.status_code == 401)


def test_an_error_core_adds_without_a_row_gets_its_familys_status(app: Flask) -> None:
    class Refusal(DomainError):
        code = "some_new_refusal"

    class Malformed(InvalidInput):
        code = "some_new_malformation"

    class Odd(SaccoError):
        code = "some_new_error"

    assert problems.status_for(Refusal()) == 409
    assert problems.status_for(Malformed()) == 422
    assert problems.status_for(Odd()) == 400
