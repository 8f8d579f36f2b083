"""A member's credit score over the staff API: who may read it, the features, points and
reasons it shows, the score kept and replaying, and a member outside the branch a 404."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from core.scoring import scores
from core.scoring.features import FEATURES
from db.models import Member
from db.session import unit_of_work
from tests.e2e.api.conftest import Staffer, auth


def test_staff_read_a_members_score_with_its_reasons(
    api: FlaskClient, make_staff: Callable[..., Staffer], make_member: Callable[..., Member],
    session_factory: sessionmaker[Session],
) -> None:  # fmt: skip
    member = make_member(branch="Nyeri", status="active")
    url = f"/api/v1/members/{member.id}/score"
    assert api.get(url, headers=auth(make_staff("teller"))).status_code == 403
    assert api.get(url, headers=auth(make_staff("loan_officer", branch="Meru"))).status_code == 404
    assert api.get("/api/v1/members/999999/score",
                   headers=auth(make_staff("loan_officer"))).status_code == 404  # fmt: skip
    got = api.get(url, headers=auth(make_staff("loan_officer", branch="Nyeri")))
    assert got.status_code == 200, got.json
    body = got.json or {}
    assert body["scorecard_version"] == 2 and body["member_id"] == member.id
    assert [f["feature"] for f in body["features"]] == list(FEATURES)
    assert body["score"] == sum(f["points"] for f in body["features"])
    # A member who joined today, with nothing saved: the thinnest file of all.
    assert {f["feature"]: f["value"] for f in body["features"]} == dict.fromkeys(FEATURES, 0)
    shortfall = {f["feature"]: f["best_points"] - f["points"] for f in body["features"]}
    assert len(body["reasons"]) == 3
    assert [shortfall[r] for r in body["reasons"]] == sorted(shortfall.values(), reverse=True)[:3]
    with unit_of_work(session_factory) as s:
        assert scores.replay(s, body["id"]).score == body["score"]
