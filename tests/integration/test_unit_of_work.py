"""One transaction per use case: core never commits; the edge commits once; jobs and kept
refusals follow the commit (core/kernel/uow.py, db/session.py)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from core.kernel import uow
from core.kernel.deps import CoreDeps
from core.kernel.errors import PinInvalid
from core.members import registration as members
from db.models import Member
from db.session import make_session_factory, run_in_transaction, unit_of_work

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ping(uow.Job):
    n: int


def test_no_module_in_core_commits_or_rolls_back() -> None:
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("commit", "rollback")
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()")
    assert offenders == []


def _register(session: object, deps: CoreDeps, phone: str) -> int:
    m = members.register_member(
        session,  # type: ignore[arg-type]
        deps,
        full_name="Wanjiru Kamau",
        msisdn=phone,
        national_id=phone[-8:],
        language="en",
        consent=True,
        pin="2468",
    )
    return m.id


def _exists(factory: object, member_id: int) -> bool:
    with factory() as s:  # type: ignore[operator]
        return s.get(Member, member_id) is not None


def test_the_edge_commits_once_and_an_error_leaves_nothing(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        kept = _register(s, deps, "+254711000601")
    assert _exists(factory, kept)

    with pytest.raises(RuntimeError), unit_of_work(factory) as s:
        lost = _register(s, deps, "+254711000602")
        raise RuntimeError("the edge failed after the use case")
    assert not _exists(factory, lost)


def test_a_kept_refusal_is_committed_before_it_reaches_the_caller(
    committed_pg: Engine, deps: CoreDeps
) -> None:
    factory = make_session_factory(committed_pg)
    with unit_of_work(factory) as s:
        member_id = _register(s, deps, "+254711000603")

    with pytest.raises(PinInvalid) as err:
        run_in_transaction(factory, lambda s: members.verify_pin(s, deps, member_id, "9999"))
    assert err.value.attempts_left == 2
    with factory() as s:
        assert s.scalar(select(Member.pin_failed_count).where(Member.id == member_id)) == 1


def test_jobs_are_handed_over_after_the_commit_and_forgotten_on_a_rollback(
    committed_pg: Engine,
) -> None:
    factory = make_session_factory(committed_pg)
    queued: list[uow.Job] = []
    uow.install_jobs(factory, queued.append)
    uow.install_jobs(factory, queued.append)  # once per factory, however often it is asked

    with unit_of_work(factory) as s:
        uow.defer(s, Ping(1))
        assert queued == []  # not before the commit
    assert queued == [Ping(1)]

    with pytest.raises(RuntimeError), unit_of_work(factory) as s:
        uow.defer(s, Ping(2))
        raise RuntimeError("rolled back")
    with unit_of_work(factory) as s:
        uow.defer(s, Ping(3))
        with pytest.raises(RuntimeError), uow.savepoint(s):
            uow.defer(s, Ping(4))  # undone with its savepoint
            raise RuntimeError("the approved action refused")
    assert queued == [Ping(1), Ping(3)]
    assert Ping(7).args() == (7,)


def test_a_released_savepoint_hands_over_nothing_before_the_unit_of_work_commits(
    committed_pg: Engine,
) -> None:
    """SQLAlchemy fires ``after_commit`` when a SAVEPOINT is released: the jobs deferred
    inside it (an auto-approved loan's B2C send) must still wait for the real commit,
    or the worker looks for a payout row nobody else can see yet and the loan is never
    paid. A rolled-back savepoint forgets only its own jobs."""
    factory = make_session_factory(committed_pg)
    queued: list[uow.Job] = []
    uow.install_jobs(factory, queued.append)

    with unit_of_work(factory) as s:
        uow.defer(s, Ping(10))
        with uow.savepoint(s):
            uow.defer(s, Ping(11))
        assert queued == []  # released, not committed
        with pytest.raises(RuntimeError), uow.savepoint(s):
            uow.defer(s, Ping(12))
            raise RuntimeError("refused inside")
        assert queued == []
        assert uow.deferred(s) == [Ping(10), Ping(11)]
    assert queued == [Ping(10), Ping(11)]
