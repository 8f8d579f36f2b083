"""Both credit-bureau adapters against the stand-in, over real HTTP: each kind of answer
read into the same typed report, and every failure (error answer, unreadable answer, HTTP
500, timeout, wrong credentials) one ``BureauUnavailable``, never anything else."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from core.kernel.bureau import BureauRequest, BureauUnavailable, CreditBureau, Delinquency
from integrations.bureaus import standin as bureau_standin
from integrations.bureaus.metropol import MetropolBureau
from integrations.bureaus.transunion import TransUnionBureau

ID = "28765432"


@pytest.fixture
def bureau_server() -> Iterator[bureau_standin.StandinHandle]:
    with bureau_standin.start_standin() as handle:
        yield handle


def control(url: str, command: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{url}/_control", data=json.dumps(command).encode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def calls(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_calls", timeout=5) as answer:
        return list(json.load(answer)["calls"])


def adapter(kind: str, url: str, *, timeout: float = 3.0, good: bool = True) -> CreditBureau:
    if kind == "metropol":
        return MetropolBureau(url, bureau_standin.PUBLIC_KEY,
                              bureau_standin.PRIVATE_KEY if good else "wrong", timeout=timeout)  # fmt: skip
    return TransUnionBureau(
        url + bureau_standin.SOAP_PATH, bureau_standin.TU_USERNAME,
        bureau_standin.TU_PASSWORD if good else "wrong", bureau_standin.TU_CODE, timeout=timeout,
    )  # fmt: skip


REQUEST = BureauRequest(ID, 50_000_00, "new_loan", "BC-7", "BQtest1")
KINDS = ["metropol", "transunion"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("answer", "found", "delinquency", "score", "worst", "listings"),
    [
        ("clean", True, Delinquency.CLEAN, 682, 0, 0),
        ("historical", True, Delinquency.HISTORICAL, 575, 45, 0),
        ("delinquent", True, Delinquency.DELINQUENT, 401, 120, 1),
        ("no_record", True, Delinquency.NO_RECORD, None, 0, 0),
        ("not_found", False, Delinquency.NO_RECORD, None, 0, 0),
    ],
)
def test_each_answer_reads_into_the_same_report(
    bureau_server: bureau_standin.StandinHandle, kind: str, answer: str, found: bool,
    delinquency: Delinquency, score: int | None, worst: int, listings: int,
) -> None:  # fmt: skip
    control(bureau_server.url, {"national_id": ID, "answer": answer})
    report = adapter(kind, bureau_server.url).fetch_report(REQUEST)
    assert (report.found, report.delinquency, report.score) == (found, delinquency, score)
    assert (report.worst_days_past_due, report.listings) == (worst, listings)
    assert report.raw and report.bureau_ref  # the evidence and the bureau's reference
    # The call named the member's ID and carried the consent's reference.
    assert calls(bureau_server.url)[-1]["national_id"] == ID
    assert calls(bureau_server.url)[-1]["consent_reference"] == "BC-7"


@pytest.mark.parametrize("kind", KINDS)
def test_identity_is_verified(bureau_server: bureau_standin.StandinHandle, kind: str) -> None:
    found = adapter(kind, bureau_server.url).verify_identity(REQUEST)
    assert found.found and found.full_name == "Wanjiru Kamau"
    control(bureau_server.url, {"national_id": ID, "answer": "not_found"})
    assert not adapter(kind, bureau_server.url).verify_identity(REQUEST).found


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("answer", ["error", "malformed"])
def test_error_and_unreadable_answers_are_unavailable(
    bureau_server: bureau_standin.StandinHandle, kind: str, answer: str
) -> None:
    control(bureau_server.url, {"national_id": ID, "answer": answer})
    with pytest.raises(BureauUnavailable):
        adapter(kind, bureau_server.url).fetch_report(REQUEST)


@pytest.mark.parametrize("kind", KINDS)
def test_http_500_and_a_timeout_are_unavailable(
    bureau_server: bureau_standin.StandinHandle, kind: str
) -> None:
    control(bureau_server.url, {"fail_next": 1})
    with pytest.raises(BureauUnavailable):
        adapter(kind, bureau_server.url).fetch_report(REQUEST)
    control(bureau_server.url, {"hang_next": 1, "hang_seconds": 3})
    with pytest.raises(BureauUnavailable, match="timed out"):
        adapter(kind, bureau_server.url, timeout=0.5).fetch_report(REQUEST)
    # The bureau is back: the next call answers.
    assert adapter(kind, bureau_server.url).fetch_report(REQUEST).found


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_credentials_are_unavailable_and_reach_no_report(
    bureau_server: bureau_standin.StandinHandle, kind: str
) -> None:
    with pytest.raises(BureauUnavailable):
        adapter(kind, bureau_server.url, good=False).fetch_report(REQUEST)
    assert calls(bureau_server.url) == []  # refused before any report was looked up


def test_a_bureau_that_is_not_listening_is_unavailable() -> None:
    with pytest.raises(BureauUnavailable):
        adapter("metropol", "http://127.0.0.1:9", timeout=1).fetch_report(REQUEST)
