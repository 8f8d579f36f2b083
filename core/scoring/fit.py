"""Fitting the scorecard's points from the SACCO's own repaid and defaulted loans
(``manage.py fit-scorecard``; docs/loans/scoring.md).

* **Outcomes**: a loan repaid in full (closed) is good; a loan written off, or classified
  doubtful or loss at any close of day, is bad. Loans still running without a default say
  nothing yet and are left out.
* **Features**: each loan's, as the book stood on its disbursement date
  (``core.scoring.features.gather``).
* **Bins** stay those of the table the fit starts from; each bin's weight of evidence
  WoE = ln(share of goods in it / share of bads in it) (half a loan added to every count,
  so an empty bin has a finite weight), then a logistic regression of good on the
  features' WoE (Newton's method, numpy) gives each feature's coefficient β and the
  intercept α, and a bin's points are round((β × WoE + α / n) × factor + offset / n) for n
  features: the points of a member sum to offset + factor × ln(odds), the scaling of the
  table it starts from.
* **Discrimination** on loans held out of the fit (a seeded random share): Gini
  (2 × AUC − 1) and KS (the largest gap between the score distributions of bads and goods).
* A fit refuses (``NotEnoughHistory``) below a minimum number of defaults; it writes a NEW
  table version and never edits one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from core.kernel.deps import CoreDeps
from core.kernel.errors import DomainError
from core.loans.facts import DEFAULTED_CATEGORIES
from core.loans.vocabulary import LoanStatus
from core.scoring.features import gather
from core.scoring.scorecard import Bin, Scaling, Table, check_bins, is_optional, score
from core.scoring.scores import load_table, newest_version
from db.models import Member
from db.models_close_day import LoanCategoryChange, LoanDayState
from db.models_loans import Loan
from db.models_scoring import Scorecard, ScorecardBin

MIN_DEFAULTS = 100  # below this, the expert table stays: too few bads to fit on
HOLDOUT_SHARE = 0.3
SMOOTHING = 0.5  # loans added to every bin's good and bad counts
NEWTON_STEPS = 50
RIDGE = 1e-6  # keeps Newton's step defined when a feature does not vary


class NotEnoughHistory(DomainError):
    code = "not_enough_history"


@dataclass(frozen=True)
class Sample:
    inputs: Mapping[str, int]
    bad: bool


@dataclass(frozen=True)
class Fitted:
    bins: dict[str, tuple[Bin, ...]]
    scaling: Scaling
    gini: float
    ks: float
    trained_on: int
    held_out: int
    defaults: int
    coefficients: dict[str, float]

    def metrics(self) -> dict[str, object]:
        return {
            "gini": round(self.gini, 4),
            "ks": round(self.ks, 4),
            "trained_on": self.trained_on,
            "held_out": self.held_out,
            "defaults": self.defaults,
            "coefficients": {k: round(v, 6) for k, v in self.coefficients.items()},
        }


def _bin_index(bins: tuple[Bin, ...], value: int) -> int:
    for i, found in enumerate(bins):
        if found.holds(value):
            return i
    raise ValueError(f"{value} falls in no bin")


def _logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients (intercept first) of P(y=1) = 1 / (1 + e^-(Xb)), by Newton's method."""
    design = np.hstack([np.ones((x.shape[0], 1)), x])
    beta = np.zeros(design.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ beta, -30, 30)))
        gradient = design.T @ (y - p) - RIDGE * beta
        hessian = (design.T * (p * (1 - p))) @ design + RIDGE * np.eye(design.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return beta


def gini_ks(scores: Sequence[int], bad: Sequence[bool]) -> tuple[float, float]:
    """Gini (2 AUC − 1, AUC the chance a good scores above a bad, ties half) and KS."""
    goods = np.array([s for s, b in zip(scores, bad, strict=True) if not b], dtype=float)
    bads = np.array([s for s, b in zip(scores, bad, strict=True) if b], dtype=float)
    if not len(goods) or not len(bads):
        return 0.0, 0.0
    above = (goods[:, None] > bads[None, :]).sum() + 0.5 * (goods[:, None] == bads[None, :]).sum()
    auc = float(above) / (len(goods) * len(bads))
    cuts = np.unique(np.concatenate([goods, bads]))
    ks = max(abs(float((bads <= c).mean()) - float((goods <= c).mean())) for c in cuts)
    return 2 * auc - 1, ks


def fit(
    samples: Sequence[Sample],
    start: Table,
    *,
    min_defaults: int = MIN_DEFAULTS,
    holdout_share: float = HOLDOUT_SHARE,
    seed: int = 15,
) -> Fitted:
    """Fit the points of ``start``'s bins on ``samples`` (see the module)."""
    defaults = sum(1 for s in samples if s.bad)
    if defaults < min_defaults:
        raise NotEnoughHistory(
            f"{defaults} defaulted loans: at least {min_defaults} are needed to fit a "
            "scorecard; the current table stays",
            defaults=defaults,
            min_defaults=min_defaults,
        )
    order = np.random.default_rng(seed).permutation(len(samples))
    cut = int(round(len(samples) * holdout_share))
    held = [samples[i] for i in order[:cut]]
    train = [samples[i] for i in order[cut:]]
    # The bureau's optional features are not in the book's history: carried over as they are.
    features = [f for f in start.bins if not is_optional(f)]
    y = np.array([0.0 if s.bad else 1.0 for s in train])
    goods, bads = float(y.sum()), float(len(y) - y.sum())
    woe: dict[str, list[float]] = {}
    x = np.zeros((len(train), len(features)))
    for j, feature in enumerate(features):
        bins = start.bins[feature]
        index = np.array([_bin_index(bins, int(s.inputs[feature])) for s in train])
        k = len(bins)
        weights = []
        for b in range(k):
            good_b = float(((index == b) & (y == 1)).sum()) + SMOOTHING
            bad_b = float(((index == b) & (y == 0)).sum()) + SMOOTHING
            weights.append(
                math.log(good_b / (goods + SMOOTHING * k))
                - math.log(bad_b / (bads + SMOOTHING * k))
            )
        woe[feature] = weights
        x[:, j] = [weights[i] for i in index]
    beta = _logistic(x, y)
    alpha, coefficients = float(beta[0]), [float(b) for b in beta[1:]]
    scaling = start.scaling
    factor, offset, n = float(scaling.factor), float(scaling.offset), len(features)
    bins_out: dict[str, tuple[Bin, ...]] = {}
    for j, feature in enumerate(features):
        bins_out[feature] = tuple(
            Bin(
                b.lower,
                b.upper,
                int(round((coefficients[j] * woe[feature][i] + alpha / n) * factor + offset / n)),
            )
            for i, b in enumerate(start.bins[feature])
        )
    for feature, bins in start.bins.items():
        if is_optional(feature):
            bins_out[feature] = bins
    fitted_table = Table(0, scaling, bins_out)
    gini, ks = gini_ks([score(fitted_table, s.inputs).score for s in held], [s.bad for s in held])
    return Fitted(
        bins_out, scaling, gini, ks, len(train), len(held), defaults,
        dict(zip(features, coefficients, strict=True)),
    )  # fmt: skip


def _bad(loan_id: object) -> object:
    return or_(
        Loan.status == LoanStatus.WRITTEN_OFF,
        exists().where(
            LoanCategoryChange.loan_id == loan_id,
            LoanCategoryChange.category_to.in_(sorted(DEFAULTED_CATEGORIES)),
        ),
        exists().where(
            LoanDayState.loan_id == loan_id,
            LoanDayState.category.in_(sorted(DEFAULTED_CATEGORIES)),
        ),
    )


def training_samples(session: Session) -> list[Sample]:
    """Every loan with a known outcome (repaid or defaulted: see the module), with its
    member's features on its disbursement date."""
    bad = _bad(Loan.id)
    rows = session.execute(
        select(Loan.member_id, Loan.disbursed_on, bad.label("bad"))  # type: ignore[attr-defined]
        .where(or_(Loan.status == LoanStatus.CLOSED, bad))  # type: ignore[arg-type]
        .order_by(Loan.id)
    ).all()
    members = {
        m.id: m for m in session.scalars(select(Member).where(Member.id.in_({r[0] for r in rows})))
    }
    return [Sample(gather(session, members[m], day), bool(b)) for m, day, b in rows]


def write_version(session: Session, deps: CoreDeps, fitted: Fitted, note: str) -> int:
    """Write ``fitted`` as a new table version (the newest + 1); nothing is edited. Its
    bins must cover every value once (``check_bins``)."""
    for bins in fitted.bins.values():
        check_bins(bins)
    version = newest_version(session) + 1
    session.add(
        Scorecard(
            version=version,
            source="fitted",
            note=note[:200],
            pdo=fitted.scaling.pdo,
            base_score=fitted.scaling.base_score,
            base_odds=fitted.scaling.base_odds,
            factor=fitted.scaling.factor,
            offset=fitted.scaling.offset,
            metrics=json.dumps(fitted.metrics(), sort_keys=True),
            created_at=deps.now(),
        )
    )
    session.flush()
    for feature, bins in fitted.bins.items():
        for position, b in enumerate(bins):
            session.add(
                ScorecardBin(
                    scorecard_version=version, feature=feature, position=position,
                    lower=b.lower, upper=b.upper, points=b.points,
                )
            )  # fmt: skip
    session.flush()
    return version


def fit_from_book(
    session: Session, deps: CoreDeps, *, min_defaults: int = MIN_DEFAULTS, write: bool = False
) -> tuple[Fitted, int | None]:
    """Fit on the book's loans from the newest table; with ``write``, keep it as a new
    version (returned), else only report."""
    fitted = fit(training_samples(session), load_table(session), min_defaults=min_defaults)
    version = write_version(session, deps, fitted, "fitted on the SACCO's loans") if write else None
    return fitted, version
