"""A member's credit score over the staff API (issue 15, part 1; docs/loans/scoring.md):
the score now under the newest scorecard, kept like every score, with each feature's value
and points and the reasons. Branch-bound staff see only their branch's members (others
are 404)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.v1 import schemas as sc
from api.v1.security import current, requires, runtime
from core.scoring import scores

blp = Blueprint("api_scores", __name__, url_prefix="/api/v1", description="Credit scores")


@blp.route("/members/<int:member_id>/score", methods=["GET"])
@requires("loans:read")
@blp.response(200, sc.CreditScoreOut)
def get_score(member_id: int) -> Any:
    """The member's credit score today: the scorecard version, the score and the odds it
    stands for, every feature's value with its points and its best bin's points, and the
    reasons (up to three features furthest from their best bin, largest first). The score
    is kept (``credit_scores``) and replays to the same number."""
    rt = runtime()
    with rt.unit_of_work() as s:
        return scores.staff_view(s, rt.deps, current(), member_id)
