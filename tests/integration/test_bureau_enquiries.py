"""Credit-bureau enquiries on real PostgreSQL against the stand-in: no call without the
member's consent (the stand-in counts calls), the consent's reference in the call and kept
with the answer, the cache's time to live read from the injected clock, every call audited,
the bureau down → the decision says so and the score is the SACCO's own-record score, and
a score with a bureau answer replaying identically."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.bureau import BureauAccess
from core.kernel.deps import CoreDeps
from core.kernel.permissions import Principal
from core.loans import book
from core.loans.errors import LoanRefused
from core.members.registration import national_id_of
from core.scoring import bureau, scores
from db.models import AuditEvent
from db.models_scoring import BureauReport, CreditScore
from integrations.bureaus import standin as bureau_standin
from integrations.bureaus.metropol import MetropolBureau
from tests.integration.test_credit_scoring import EXPECTED_SCORE, TODAY, at, thin_file_member
from tests.loanutil import make_product

KES = 100
STAFF = Principal(kind="staff", id=7, name="officer", role="loan_officer", branch=None)
TTL = timedelta(hours=24)


@pytest.fixture
def bureau_server() -> Iterator[bureau_standin.StandinHandle]:
    with bureau_standin.start_standin() as handle:
        yield handle


def control(url: str, command: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{url}/_control", data=json.dumps(command).encode())
    urllib.request.urlopen(request, timeout=5).close()


def calls(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_calls", timeout=5) as answer:
        return len(json.load(answer)["calls"])


def with_bureau(deps: CoreDeps, url: str, moment: datetime, timeout: float = 3.0) -> CoreDeps:
    metropol = MetropolBureau(url, bureau_standin.PUBLIC_KEY, bureau_standin.PRIVATE_KEY,
                              timeout=timeout)  # fmt: skip
    return dataclasses.replace(deps, now=lambda: moment, bureau=BureauAccess(metropol, TTL))


def test_no_consent_no_call_and_staff_asking_outright_is_refused(
    db_session: Session, deps: CoreDeps, bureau_server: bureau_standin.StandinHandle
) -> None:
    s = db_session
    member = thin_file_member(s, deps)
    wired = with_bureau(deps, bureau_server.url, TODAY)
    check = bureau.check_bureau(s, wired, member.id, STAFF, loan_amount_cents=10_000 * KES)
    assert check.status is bureau.BureauStatus.NO_CONSENT
    with pytest.raises(bureau.ConsentRequired):
        bureau.check_bureau(s, wired, member.id, STAFF, loan_amount_cents=0, require_consent=True)
    # A product with a minimum score still decides, on the SACCO's own record.
    product = make_product(s, wired, min_score=EXPECTED_SCORE, guarantor_policy="none")
    book.apply_for_loan(s, wired, member.id, product.code, 10_000 * KES, 6, "ussd",
                        f"apply-{uuid4().hex[:12]}")  # fmt: skip
    kept = s.scalars(select(CreditScore).where(CreditScore.member_id == member.id)).one()
    assert (kept.score, kept.bureau_status, kept.bureau_report_id) == (
        EXPECTED_SCORE,
        "no_consent",
        None,
    )
    assert calls(bureau_server.url) == 0


def test_with_consent_one_call_cached_until_the_ttl_then_called_again(
    db_session: Session, deps: CoreDeps, bureau_server: bureau_standin.StandinHandle
) -> None:
    s = db_session
    member = thin_file_member(s, deps)
    consent = bureau.give_consent(s, at(deps, TODAY), member.id, STAFF, channel="staff",
                                  form_reference="CRB-FORM-0042")  # fmt: skip
    first = bureau.check_bureau(s, with_bureau(deps, bureau_server.url, TODAY), member.id, STAFF,
                                loan_amount_cents=10_000 * KES)  # fmt: skip
    assert first.status is bureau.BureauStatus.ANSWERED and not first.from_cache
    row = s.get(BureauReport, first.report_id)
    assert row is not None and row.consent_id == consent.id and row.bureau == "metropol"
    assert row.delinquency == "clean" and row.bureau_score == 682
    # The raw answer is evidence, kept encrypted: it names the member's ID.
    assert national_id_of(deps, member) not in row.raw_answer
    assert national_id_of(deps, member) in bureau.raw_answer(deps, row)
    audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "bureau.enquiry")).all()
    assert [json.loads(a.after or "{}")["consent_id"] for a in audit] == [consent.id]

    almost = TODAY + TTL - timedelta(seconds=1)
    again = bureau.check_bureau(s, with_bureau(deps, bureau_server.url, almost), member.id,
                                STAFF, loan_amount_cents=10_000 * KES)  # fmt: skip
    assert again.from_cache and again.report_id == first.report_id
    assert calls(bureau_server.url) == 1
    later = bureau.check_bureau(s, with_bureau(deps, bureau_server.url, TODAY + TTL), member.id,
                                STAFF, loan_amount_cents=10_000 * KES)  # fmt: skip
    assert not later.from_cache and later.report_id != first.report_id
    assert calls(bureau_server.url) == 2


def test_a_revoked_or_expired_consent_allows_no_call(
    db_session: Session, deps: CoreDeps, bureau_server: bureau_standin.StandinHandle
) -> None:
    s = db_session
    member = thin_file_member(s, deps)
    bureau.give_consent(s, at(deps, TODAY), member.id, STAFF, channel="ussd")
    assert bureau.revoke_consent(s, at(deps, TODAY), member.id, STAFF) == 1
    wired = with_bureau(deps, bureau_server.url, TODAY + timedelta(minutes=1))
    assert bureau.check_bureau(s, wired, member.id, STAFF, loan_amount_cents=0).status is (
        bureau.BureauStatus.NO_CONSENT
    )
    bureau.give_consent(s, at(deps, TODAY), member.id, STAFF, channel="ussd")
    expired = with_bureau(deps, bureau_server.url,
                          TODAY + timedelta(days=bureau.CONSENT_VALID_DAYS))  # fmt: skip
    assert bureau.check_bureau(s, expired, member.id, STAFF, loan_amount_cents=0).status is (
        bureau.BureauStatus.NO_CONSENT
    )
    assert calls(bureau_server.url) == 0


def test_bureau_down_the_decision_says_so_and_scores_on_the_own_record(
    db_session: Session, deps: CoreDeps, bureau_server: bureau_standin.StandinHandle
) -> None:
    s = db_session
    member = thin_file_member(s, deps)
    bureau.give_consent(s, at(deps, TODAY), member.id, STAFF, channel="ussd")
    control(bureau_server.url, {"hang_next": 1, "hang_seconds": 3})
    wired = with_bureau(deps, bureau_server.url, TODAY, timeout=0.5)
    strict = make_product(s, wired, min_score=EXPECTED_SCORE + 1, guarantor_policy="none")
    with pytest.raises(LoanRefused) as refused:
        book.apply_for_loan(s, wired, member.id, strict.code, 10_000 * KES, 6, "ussd",
                            f"apply-{uuid4().hex[:12]}")  # fmt: skip
    assert refused.value.context["score"] == EXPECTED_SCORE  # the SACCO's own-record score
    assert refused.value.context["bureau"] == "unavailable"
    assert "bureau unavailable" in refused.value.detail
    failed = s.scalars(select(BureauReport).where(BureauReport.member_id == member.id)).one()
    assert failed.status == "unavailable" and "timed out" in failed.error
    # An unavailable answer is never reused: the next application calls again, and the
    # bureau's clean record (+15 points) now lifts the score over the minimum.
    application = book.apply_for_loan(s, wired, member.id, strict.code, 10_000 * KES, 6, "ussd",
                                      f"apply-{uuid4().hex[:12]}")  # fmt: skip
    assert application.status == "pending_approval"
    statuses = s.scalars(select(BureauReport.status).where(BureauReport.member_id == member.id)
                         .order_by(BureauReport.id)).all()  # fmt: skip
    assert statuses == ["unavailable", "answered"]
    assert calls(bureau_server.url) == 1  # the stand-in records what it answered, not the hang


@pytest.mark.parametrize(("answer", "points"), [("clean", 15), ("delinquent", -80 - 60),
                                                ("not_found", 0)])  # fmt: skip
def test_a_score_with_the_bureaus_answer_replays_identically(
    db_session: Session, deps: CoreDeps, bureau_server: bureau_standin.StandinHandle,
    answer: str, points: int,
) -> None:  # fmt: skip
    s = db_session
    member = thin_file_member(s, deps)
    control(bureau_server.url, {"national_id": national_id_of(deps, member), "answer": answer})
    bureau.give_consent(s, at(deps, TODAY), member.id, STAFF, channel="ussd")
    wired = with_bureau(deps, bureau_server.url, TODAY)
    found = scores.verdict(s, wired, member.id, 1, amount_cents=10_000 * KES)
    assert found is not None and found.score == EXPECTED_SCORE + points
    kept = s.get(CreditScore, found.score_id)
    assert kept is not None and kept.bureau_report_id is not None
    assert kept.bureau_status == ("not_found" if answer == "not_found" else "answered")
    # The bureau's record changes and the cache expires: the kept score still replays.
    control(bureau_server.url, {"national_id": national_id_of(deps, member), "answer": "clean"})
    replayed = scores.replay(s, kept.id)
    assert (replayed.score, replayed.reasons) == (kept.score, tuple(kept.reasons.split()))
    assert calls(bureau_server.url) == 1


def test_a_preview_never_calls_the_bureau(
    db_session: Session, deps: CoreDeps, bureau_server: bureau_standin.StandinHandle
) -> None:
    s = db_session
    member = thin_file_member(s, deps)
    bureau.give_consent(s, at(deps, TODAY), member.id, STAFF, channel="ussd")
    found = scores.verdict(s, with_bureau(deps, bureau_server.url, TODAY), member.id, 1,
                           keep=False)  # fmt: skip
    assert found is not None and found.bureau == "not_asked" and found.score == EXPECTED_SCORE
    assert calls(bureau_server.url) == 0


def test_staff_consent_needs_the_signed_forms_reference(
    db_session: Session, deps: CoreDeps
) -> None:
    from core.kernel.errors import InvalidInput

    member = thin_file_member(db_session, deps)
    with pytest.raises(InvalidInput):
        bureau.give_consent(db_session, at(deps, TODAY), member.id, STAFF, channel="staff")
    assert bureau.active_consent(db_session, member.id, datetime(2026, 1, 21, tzinfo=UTC)) is None
