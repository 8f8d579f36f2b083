"""The points scorecard, pure: the scaling of the seeded expert table, bins, the score as the
sum of its points, the reasons as the largest shortfalls, and the fit on synthetic loans
(weight of evidence + logistic regression) with its held-out Gini and KS."""

from __future__ import annotations

import importlib.util
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.loans.appraisal import Reason
from core.messaging.notifications import SMS
from core.scoring.features import FEATURES
from core.scoring.fit import NotEnoughHistory, Sample, fit, gini_ks
from core.scoring.scorecard import Bin, Scaling, Table, check_bins, score
from ussd.texts import CATALOGUE

MIGRATION = Path(__file__).parents[2] / "db/migrations/versions/0030_credit_scoring.py"


def _migration() -> Any:
    spec = importlib.util.spec_from_file_location("m0030", MIGRATION)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SEED = _migration()
EXPERT = Table(
    1,
    Scaling(Decimal(SEED.PDO), SEED.BASE_SCORE, Decimal(SEED.BASE_ODDS)),
    {f: tuple(Bin(lo, hi, p) for lo, hi, p in rows) for f, rows in SEED.EXPERT_BINS},
)


def test_the_expert_tables_scaling_and_bins() -> None:
    scaling = EXPERT.scaling
    assert scaling.factor == Decimal("28.85390082")  # 20 / ln 2
    assert scaling.offset == Decimal(str(round(600 - 20 / math.log(2) * math.log(50), 8)))
    assert math.isclose(scaling.odds(600), 50) and math.isclose(scaling.odds(620), 100)
    assert tuple(EXPERT.bins) == FEATURES  # every feature gathered is scored, in order
    for bins in EXPERT.bins.values():
        check_bins(bins)
    with pytest.raises(ValueError, match="without gap"):
        check_bins((Bin(None, 3, 1), Bin(4, None, 2)))


def test_reasons_are_the_largest_shortfalls_in_table_order_on_ties() -> None:
    table = Table(
        9,
        EXPERT.scaling,
        {
            "a": (Bin(None, 1, 0), Bin(1, None, 10)),
            "b": (Bin(None, 1, 0), Bin(1, None, 30)),
            "c": (Bin(None, 1, 0), Bin(1, None, 10)),
            "d": (Bin(None, 1, 5), Bin(1, None, 10)),
        },
    )
    got = score(table, {"a": 0, "b": 0, "c": 0, "d": 0})
    assert (got.score, got.reasons) == (5, ("b", "a", "c"))
    best = score(table, {"a": 5, "b": 5, "c": 5, "d": 5})
    assert (best.score, best.reasons) == (60, ())


values = st.integers(min_value=-(10**9), max_value=10**10)


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries(dict.fromkeys(FEATURES, values)))
def test_a_score_is_the_sum_of_its_points_within_the_tables_range(inputs: dict[str, int]) -> None:
    got = score(EXPERT, inputs)
    assert got.score == sum(got.points.values())
    low = sum(min(b.points for b in bins) for bins in EXPERT.bins.values())
    high = sum(max(b.points for b in bins) for bins in EXPERT.bins.values())
    assert low <= got.score <= high
    gaps = [max(b.points for b in EXPERT.bins[f]) - got.points[f] for f in got.reasons]
    assert all(g > 0 for g in gaps) and gaps == sorted(gaps, reverse=True)
    assert score(EXPERT, dict(inputs)) == got  # the same inputs, the same number


def synthetic(n: int, seed: int) -> list[Sample]:
    """Loans whose chance of default falls with months of deposits and rises with days past
    due; the other features are noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        months, dpd = int(rng.integers(0, 13)), int(rng.choice([0, 0, 0, 10, 45, 120]))
        logit = -0.35 * months + 0.03 * dpd + 0.5
        bad = bool(rng.random() < 1 / (1 + math.exp(-logit)))
        inputs = {f: int(rng.integers(0, 50)) for f in FEATURES}
        inputs.update(deposit_months_12=months, max_days_past_due=dpd)
        out.append(Sample(inputs, bad))
    return out


def test_the_fit_finds_the_planted_signal_and_reports_held_out_discrimination() -> None:
    samples = synthetic(1_500, seed=7)
    fitted = fit(samples, EXPERT, min_defaults=100)
    assert fitted.defaults == sum(s.bad for s in samples) >= 100
    assert (fitted.trained_on, fitted.held_out) == (1_050, 450)
    assert fitted.gini > 0.4 and 0.3 < fitted.ks < 1
    months = [b.points for b in fitted.bins["deposit_months_12"]]
    dpd = [b.points for b in fitted.bins["max_days_past_due"]]
    assert months == sorted(months) and months[-1] - months[0] > 30  # more months, more points
    assert dpd == sorted(dpd, reverse=True)  # later, fewer points
    # The fitted points keep the scaling: a bin's points are (βWoE + α/n)·factor + offset/n.
    assert abs(fitted.coefficients["deposit_months_12"]) > 0.5
    with pytest.raises(NotEnoughHistory, match="at least 10000 are needed"):
        fit(samples, EXPERT, min_defaults=10_000)


def test_gini_and_ks_of_perfect_and_useless_scores() -> None:
    assert gini_ks([1, 2, 3, 4], [True, True, False, False]) == (1.0, 1.0)
    assert gini_ks([5, 5, 5, 5], [True, False, True, False]) == (0.0, 0.0)
    assert gini_ks([4, 3, 2, 1], [True, True, False, False]) == (-1.0, 1.0)


def test_every_appraisal_reason_has_words_for_the_member_in_both_languages() -> None:
    """The member hears the main reason in plain words (``low_score`` too): USSD's
    ``ln_why_<reason>`` and the SMS replies' ``term_why_<reason>``, in English and Swahili."""
    for language in ("en", "sw"):
        for reason in Reason:
            assert CATALOGUE.text(f"ln_why_{reason}", language)
            assert SMS.text(f"term_why_{reason}", language)
    assert CATALOGUE.text("ln_why_low_score", "sw") == "alama ya mkopo iko chini"
