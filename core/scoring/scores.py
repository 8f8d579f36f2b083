"""Scoring a member, keeping every score, and replaying one (docs/loans/scoring.md).

``score_member`` gathers the features (``core.scoring.features``), scores them under the
newest table version and keeps the score with its inputs, version and reasons
(``credit_scores``). ``replay`` recomputes a kept score from its stored inputs and version:
the same number, whatever the book or the tables hold since. The bureau's answer (``core.scoring.bureau``), when
there is one, joins the inputs as optional features. ``verdict`` is the one
interface the appraisal sees (``core.loans.appraisal.ScoreVerdict``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.kernel.errors import NotFound
from core.kernel.permissions import Principal, can_access_branch
from core.loans.appraisal import Appraisal, MemberFacts, ScoreVerdict, appraise
from core.loans.terms import ProductTerms
from core.members.registration import get_member
from core.scoring.bureau import BureauCheck, BureauStatus, check_bureau, member_actor
from core.scoring.features import gather
from core.scoring.scorecard import Bin, Scaling, Scored, Table, score
from db.models_scoring import CreditScore, Scorecard, ScorecardBin


def newest_version(session: Session) -> int:
    return int(session.scalar(select(func.max(Scorecard.version))) or 0)


def load_table(session: Session, version: int | None = None) -> Table:
    """The scorecard ``version`` (None: the newest) as a ``Table``."""
    wanted = newest_version(session) if version is None else version
    card = session.scalars(select(Scorecard).where(Scorecard.version == wanted)).one_or_none()
    if card is None:
        raise NotFound(f"no scorecard version {wanted}")
    rows = session.scalars(
        select(ScorecardBin)
        .where(ScorecardBin.scorecard_version == wanted)
        .order_by(ScorecardBin.id)
    ).all()
    bins: dict[str, list[ScorecardBin]] = {}  # features in the order they were written
    for row in rows:
        bins.setdefault(row.feature, []).append(row)
    scaling = Scaling(card.pdo, card.base_score, card.base_odds)
    return Table(
        wanted,
        scaling,
        {
            feature: tuple(
                Bin(b.lower, b.upper, b.points) for b in sorted(found, key=lambda b: b.position)
            )
            for feature, found in bins.items()
        },
    )


@dataclass(frozen=True)
class MemberScore:
    id: int
    member_id: int
    business_date: date
    inputs: dict[str, int]
    scored: Scored
    bureau: BureauCheck = BureauCheck(BureauStatus.NONE)


def score_member(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    *,
    keep: bool = True,
    bureau: BureauCheck | None = None,
) -> MemberScore:
    """Score the member today under the newest table and keep the score (``keep`` False:
    a preview the menus show, not kept; its id is 0). ``bureau``: the bureau's answer, whose
    features join the inputs (none: the SACCO's own-record score)."""
    member = get_member(session, member_id)
    now = deps.now()
    today = business_date(now)
    table = load_table(session)
    inputs = gather(session, member, today)
    check = bureau or BureauCheck(BureauStatus.NONE)
    inputs.update(check.features)
    scored = score(table, inputs)
    if not keep:
        return MemberScore(0, member.id, today, inputs, scored, check)
    row = CreditScore(
        member_id=member.id,
        scorecard_version=table.version,
        business_date=today,
        inputs=json.dumps(inputs, sort_keys=True),
        score=scored.score,
        reasons=" ".join(scored.reasons),
        created_at=now,
        bureau_status=str(check.status),
        bureau_report_id=check.report_id,
    )
    session.add(row)
    session.flush()
    return MemberScore(row.id, member.id, today, inputs, scored, check)


def replay(session: Session, score_id: int) -> Scored:
    """Recompute a kept score from its stored inputs under its stored table version."""
    row = session.get(CreditScore, score_id)
    if row is None:
        raise NotFound(f"no credit score {score_id}")
    return score(load_table(session, row.scorecard_version), json.loads(row.inputs))


def verdict(
    session: Session,
    deps: CoreDeps,
    member_id: int,
    min_score: int | None,
    *,
    keep: bool = True,
    amount_cents: int | None = None,
) -> ScoreVerdict | None:
    """The appraisal's score input: None when the product asks for no score; otherwise the
    member is scored (the score kept unless ``keep`` is False) and approved at
    ``min_score`` or above. With a bureau configured and the member's consent in force, its
    answer joins the score: a fresh cached one, or a new call when the score is kept (a
    preview never calls); the bureau down, the score goes on without it and says so."""
    if min_score is None:
        return None
    check = check_bureau(
        session, deps, member_id, member_actor(member_id),
        loan_amount_cents=max(amount_cents or 0, 0), allow_call=keep,
    )  # fmt: skip
    found = score_member(session, deps, member_id, keep=keep, bureau=check)
    return ScoreVerdict(
        approve=found.scored.score >= min_score,
        main_reason=found.scored.reasons[0] if found.scored.reasons else "",
        score=found.scored.score,
        reasons=found.scored.reasons,
        score_id=found.id or None,
        bureau=str(check.status),
    )


def appraise_member(
    session: Session,
    deps: CoreDeps,
    terms: ProductTerms,
    member_id: int,
    facts: MemberFacts,
    amount_cents: int | None = None,
    *,
    keep: bool = True,
) -> Appraisal:
    """The appraisal under ``terms`` with the score the product asks for (the one way the
    loan book appraises: applying, approving, and the menus' preview with ``keep`` False)."""
    found = verdict(session, deps, member_id, terms.min_score, keep=keep, amount_cents=amount_cents)
    return appraise(terms.lending_rules, facts, amount_cents, found)


def staff_view(
    session: Session, deps: CoreDeps, actor: Principal, member_id: int
) -> dict[str, Any]:
    """Score a member for staff now (kept like every score) and show how it was made: each
    feature's value, its points and its best bin's points; the reasons, largest shortfall
    first. ``NotFound`` for a member outside the actor's branch."""
    member = get_member(session, member_id)
    if not can_access_branch(actor, member.branch):
        raise NotFound("no such member")
    found = score_member(
        session, deps, member.id,
        bureau=check_bureau(session, deps, member.id, actor, loan_amount_cents=0, allow_call=False),
    )  # fmt: skip
    table = load_table(session, found.scored.version)
    return {
        "id": found.id,
        "member_id": member.id,
        "business_date": found.business_date.isoformat(),
        "scorecard_version": table.version,
        "score": found.scored.score,
        "odds": f"{table.scaling.odds(found.scored.score):.4f}",
        "reasons": list(found.scored.reasons),
        "bureau_status": str(found.bureau.status),
        "bureau_report_id": found.bureau.report_id,
        "features": [
            {
                "feature": feature,
                "value": found.inputs[feature],
                "points": found.scored.points[feature],
                "best_points": max(b.points for b in bins),
            }
            for feature, bins in table.bins.items()
            if feature in found.inputs  # the bureau's features only when it answered
        ],
    }
