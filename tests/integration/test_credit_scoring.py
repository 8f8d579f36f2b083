"""Credit scoring on real PostgreSQL: a thin-file member's features read from the ledger and
the loan book, the expert table's points, every score kept and replaying to the same number
whatever happens later, the appraisal refusing below a product's minimum score with the
score's reasons (the score kept even then), and the fit writing a new version only."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.calendar import business_date
from core.kernel.deps import CoreDeps
from core.loans import book
from core.loans.errors import LoanRefused
from core.savings.accounts import Credit, CreditSource, credit_member
from core.scoring import scores
from core.scoring.features import gather
from core.scoring.fit import Fitted, NotEnoughHistory, fit_from_book, write_version
from core.scoring.scorecard import Bin, score
from db.models import Member
from db.models_close_day import LoanCategoryChange
from db.models_scoring import CreditScore, Scorecard, ScorecardBin
from db.session import unit_of_work
from tests.loanutil import disbursed_loan, funded_member, make_product, pay


def _migration(name: str) -> Any:
    path = Path(__file__).parents[2] / "db/migrations/versions" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPERT_BINS = _migration("0030_credit_scoring.py").EXPERT_BINS
BUREAU_BINS = _migration("0034_credit_bureaus.py").BUREAU_BINS
KES = 100
JOINED = datetime(2025, 1, 15, 7, 0, tzinfo=UTC)  # 10:00 in Nairobi
TODAY = datetime(2026, 1, 20, 7, 0, tzinfo=UTC)
# The thin-file member below under the expert table (version 1, migration 0030):
# 65 (12 months) + 48 (4 months with a deposit) + 52 (KES 8,000) + 62 (up KES 5,000)
# + 70 (never late) + 45 (no loan repaid) + 58 (no pledge) + 52 (2 M-Pesa) + 48 (KES 3,000)
EXPECTED_SCORE = 500
# Shortfalls from the best bins: deposit months 27, loans repaid 25, balance 20, ...
EXPECTED_REASONS = ("deposit_months_12", "loans_repaid", "deposit_balance_cents")


def at(deps: CoreDeps, moment: datetime) -> CoreDeps:
    return dataclasses.replace(deps, now=lambda: moment)


def deposit(s: Session, deps: CoreDeps, member: Member, cents: int, source: CreditSource) -> None:
    key = f"score:{uuid4().hex[:12]}"
    credit_member(s, deps, Credit(member.id, "deposits", cents, source, key, key))


def thin_file_member(s: Session, deps: CoreDeps) -> Member:
    """Joined 15 Jan 2025; cash in Mar and Sep 2025 (KES 3,000 and 2,000), M-Pesa in Nov
    2025 and Jan 2026 (KES 1,500 each)."""
    member = funded_member(s, at(deps, JOINED))
    for moment, cents, source in (
        (datetime(2025, 3, 3, 9, tzinfo=UTC), 3_000 * KES, CreditSource.CASH),
        (datetime(2025, 9, 5, 9, tzinfo=UTC), 2_000 * KES, CreditSource.CASH),
        (datetime(2025, 11, 7, 9, tzinfo=UTC), 1_500 * KES, CreditSource.MPESA),
        (datetime(2026, 1, 10, 9, tzinfo=UTC), 1_500 * KES, CreditSource.MPESA),
    ):
        deposit(s, at(deps, moment), member, cents, source)
    return member


def test_a_thin_file_members_features_score_and_reasons(
    any_session: Session, deps: CoreDeps
) -> None:
    """On PostgreSQL and on the embedded SQLite default alike."""
    s = any_session
    member = thin_file_member(s, deps)
    assert gather(s, member, date(2026, 1, 20)) == {
        "membership_months": 12,
        "deposit_months_12": 4,  # Feb 2025 - Jan 2026: Mar, Sep, Nov, Jan
        "deposit_balance_cents": 8_000 * KES,
        "deposit_trend_cents": 5_000 * KES,  # KES 3,000 on 20 Jul 2025
        "max_days_past_due": 0,
        "loans_repaid": 0,
        "guarantees_outstanding": 0,
        "mpesa_inflows_count": 2,
        "mpesa_inflows_cents": 3_000 * KES,
    }
    # On 20 Dec 2026 only January 2026 is in the window; the balance has not moved since.
    later = gather(s, member, date(2026, 12, 20))
    assert later["deposit_months_12"] == 1 and later["deposit_trend_cents"] == 0
    assert later["mpesa_inflows_count"] == 1 and later["membership_months"] == 23

    kept = scores.score_member(s, at(deps, TODAY), member.id)
    assert kept.scored.score == EXPECTED_SCORE and kept.scored.reasons == EXPECTED_REASONS
    row = s.get(CreditScore, kept.id)
    # The newest table is version 2 (migration 0034: version 1 and the bureau's optional
    # features); without a bureau answer the score is the same number as under version 1.
    assert row is not None and row.scorecard_version == 2 and row.score == EXPECTED_SCORE
    assert row.reasons == " ".join(EXPECTED_REASONS)
    assert json.loads(row.inputs)["deposit_months_12"] == 4
    assert scores.replay(s, kept.id).score == EXPECTED_SCORE


def test_a_kept_score_replays_to_the_same_number_after_the_book_and_the_table_change(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = thin_file_member(s, deps)
    first = scores.score_member(s, at(deps, TODAY), member.id)
    deposit(s, at(deps, TODAY), member, 200_000 * KES, CreditSource.CASH)  # balance bin moves
    table = scores.load_table(s, 2)
    shifted = {f: tuple(Bin(b.lower, b.upper, b.points + 10) for b in bins)
               for f, bins in table.bins.items()}  # fmt: skip
    version = write_version(
        s, deps, Fitted(shifted, table.scaling, 0.5, 0.4, 10, 5, 3, {}), "test version"
    )
    assert version == 3
    now = scores.score_member(s, at(deps, TODAY), member.id)
    # Ten more points in each of nine features, and the balance bin KES 100,000+ (+20); the
    # bureau's features, not asked, add nothing.
    assert now.scored.version == 3 and now.scored.score == EXPECTED_SCORE + 9 * 10 + 20
    replayed = scores.replay(s, first.id)
    assert (replayed.version, replayed.score, replayed.reasons) == (
        2, EXPECTED_SCORE, EXPECTED_REASONS,
    )  # fmt: skip
    assert scores.replay(s, now.id).score == now.scored.score


def test_version_1_is_kept_as_written_and_a_v1_score_replays_identically(
    db_session: Session, deps: CoreDeps
) -> None:
    """Migration 0034 wrote the bureau's bins into a new version 2; version 1 is the expert
    table of migration 0030, bin for bin, and a score kept under it (before 0034) replays to
    its number and reasons."""
    s = db_session
    seeded = {f: tuple(Bin(lo, hi, p) for lo, hi, p in rows) for f, rows in EXPERT_BINS}
    v1, v2 = scores.load_table(s, 1), scores.load_table(s, 2)
    assert v1.bins == seeded and v1.scaling == v2.scaling
    assert v2.bins == {**seeded, **{f: tuple(Bin(lo, hi, p) for lo, hi, p in rows)
                                    for f, rows in BUREAU_BINS}}  # fmt: skip
    assert [c.version for c in s.scalars(select(Scorecard).order_by(Scorecard.version))] == [1, 2]
    member = thin_file_member(s, deps)
    inputs = gather(s, member, business_date(TODAY))
    kept = CreditScore(
        member_id=member.id, scorecard_version=1, business_date=business_date(TODAY),
        inputs=json.dumps(inputs), score=EXPECTED_SCORE, reasons=" ".join(EXPECTED_REASONS),
        created_at=TODAY,
    )  # fmt: skip
    s.add(kept)
    s.flush()
    replayed = scores.replay(s, kept.id)
    assert (replayed.version, replayed.score, replayed.reasons) == (
        1, EXPECTED_SCORE, EXPECTED_REASONS,
    )  # fmt: skip
    # Under version 2 a bureau answer counts: 91+ days past due and a listing.
    worse = score(v2, {**inputs, "bureau_worst_dpd": 95, "bureau_listings": 1})
    assert worse.score == EXPECTED_SCORE - 80 - 60


def test_repayment_history_and_pledges_count(db_session: Session, deps: CoreDeps) -> None:
    s = db_session
    fixed = at(deps, TODAY)
    loan, borrower, guarantor = disbursed_loan(
        s, fixed, amount_cents=10_000 * KES, deposits_cents=5_000 * KES,
        guarantor_deposits_cents=20_000 * KES, pledge_cents=5_000 * KES,
    )  # fmt: skip
    assert guarantor is not None
    today = business_date(TODAY)
    assert gather(s, guarantor, today)["guarantees_outstanding"] == 1
    # Close of day once saw the loan 45 days late (its category history).
    s.add(LoanCategoryChange(
        loan_id=loan.id, business_date=today + timedelta(days=60), category_from="watch",
        category_to="substandard", days_past_due=45, missed_instalments=2,
        exposure_cents=10_000 * KES, band_version=1,
    ))  # fmt: skip
    s.flush()
    assert gather(s, borrower, today + timedelta(days=59))["max_days_past_due"] == 0
    pay(s, at(deps, TODAY + timedelta(days=61)), loan, 20_000 * KES, f"pay-{uuid4().hex[:8]}")
    after = gather(s, borrower, today + timedelta(days=61))
    assert after["max_days_past_due"] == 45 and after["loans_repaid"] == 1
    assert gather(s, guarantor, today + timedelta(days=61))["guarantees_outstanding"] == 0
    assert gather(s, guarantor, today)["guarantees_outstanding"] == 1  # as it stood then


def test_below_the_products_minimum_score_the_appraisal_refuses_with_the_reasons(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    member = thin_file_member(s, deps)
    fixed = at(deps, TODAY)
    strict = make_product(s, fixed, min_score=EXPECTED_SCORE + 1, guarantor_policy="none")
    with pytest.raises(LoanRefused) as refused:
        book.apply_for_loan(s, fixed, member.id, strict.code, 10_000 * KES, 6, "staff",
                            f"apply-{uuid4().hex[:12]}")  # fmt: skip
    assert refused.value.reasons == ("low_score",)
    assert refused.value.context["score"] == EXPECTED_SCORE
    assert refused.value.context["score_reasons"] == list(EXPECTED_REASONS)
    assert "credit score 500 below 501" in refused.value.detail
    assert "deposit_months_12, loans_repaid, deposit_balance_cents" in refused.value.detail
    assert getattr(refused.value, "keep_work", False)  # the edge commits the kept score
    kept = s.get(CreditScore, refused.value.context["score_id"])
    assert kept is not None and kept.member_id == member.id and kept.score == EXPECTED_SCORE

    fair = make_product(s, fixed, min_score=EXPECTED_SCORE, guarantor_policy="none")
    application = book.apply_for_loan(s, fixed, member.id, fair.code, 10_000 * KES, 6, "staff",
                                      f"apply-{uuid4().hex[:12]}")  # fmt: skip
    assert application.status == "pending_approval"
    assert s.scalar(select(func.count()).select_from(CreditScore)) == 2

    plain = make_product(s, fixed, guarantor_policy="none")  # no minimum: no score taken
    book.withdraw_application(s, fixed, member_id=member.id, application_id=application.id)
    book.apply_for_loan(s, fixed, member.id, plain.code, 10_000 * KES, 6, "staff",
                        f"apply-{uuid4().hex[:12]}")  # fmt: skip
    assert s.scalar(select(func.count()).select_from(CreditScore)) == 2


def test_fit_refuses_without_enough_defaults_and_writes_a_new_version_only(
    db_session: Session, deps: CoreDeps
) -> None:
    s = db_session
    fixed = at(deps, TODAY)
    with pytest.raises(NotEnoughHistory, match="0 defaulted loans: at least 100"):
        fit_from_book(s, fixed)
    good, _, _ = disbursed_loan(s, fixed, amount_cents=5_000 * KES, deposits_cents=2_000 * KES)
    pay(s, fixed, good, 10_000 * KES, f"pay-{uuid4().hex[:8]}")
    bad, _, _ = disbursed_loan(s, fixed, amount_cents=5_000 * KES, deposits_cents=2_000 * KES)
    s.add(LoanCategoryChange(
        loan_id=bad.id, business_date=business_date(TODAY) + timedelta(days=200),
        category_from="substandard", category_to="doubtful", days_past_due=181,
        missed_instalments=6, exposure_cents=5_000 * KES, band_version=1,
    ))  # fmt: skip
    s.flush()
    before = [(b.scorecard_version, b.feature, b.position, b.points) for b in
              s.scalars(select(ScorecardBin).order_by(ScorecardBin.id))]  # fmt: skip
    fitted, version = fit_from_book(s, fixed, min_defaults=1, write=True)
    assert (fitted.defaults, fitted.trained_on + fitted.held_out, version) == (1, 2, 3)
    card = s.scalars(select(Scorecard).where(Scorecard.version == 3)).one()
    assert card.source == "fitted" and json.loads(card.metrics)["defaults"] == 1
    assert before == [(b.scorecard_version, b.feature, b.position, b.points) for b in
                      s.scalars(select(ScorecardBin).where(ScorecardBin.scorecard_version < 3)
                                .order_by(ScorecardBin.id))]  # fmt: skip


def test_a_refused_score_is_committed_by_the_edge(
    factory: sessionmaker[Session], deps: CoreDeps
) -> None:
    fixed = at(deps, TODAY)
    with unit_of_work(factory) as s:
        member_id = thin_file_member(s, deps).id
        code = make_product(s, fixed, min_score=900, guarantor_policy="none").code
    with pytest.raises(LoanRefused), unit_of_work(factory) as s:
        book.apply_for_loan(s, fixed, member_id, code, 10_000 * KES, 6, "ussd",
                            f"apply-{uuid4().hex[:12]}")  # fmt: skip
    with unit_of_work(factory) as s:
        kept = s.scalars(select(CreditScore).where(CreditScore.member_id == member_id)).all()
        assert [k.score for k in kept] == [EXPECTED_SCORE]
        assert scores.replay(s, kept[0].id).score == EXPECTED_SCORE
