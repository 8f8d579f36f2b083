"""A change of phone number through the maker-checker engine on the real PostgreSQL: the
new number is guarded like a fresh SIM swap for the SACCO's window (then clearable by
staff like any swap), a refused approval changes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals import engine as approvals
from core.kernel.deps import CoreDeps
from core.kernel.permissions import SYSTEM, Principal
from core.members.phone_change import phone_change_payload
from core.members.registration import has_pin_reset, start_pin_reset
from core.staff import accounts as staff
from db.models import Member, OutboxMessage
from db.models_mpesa import SimSwapEvent
from integrations.africastalking.standin import StandinHandle
from tests.integration.test_africastalking import control, make_checker
from tests.integration.test_mpesa_core import member
from tests.integration.test_sim_swap_guard import MORNING, POLICY, Clock, withdraw

OLD, NEW = "+254712000611", "+254733000612"


def person(session: Session, deps: CoreDeps, role: str, name: str) -> Principal:
    row = staff.create_staff(
        session, deps, SYSTEM, username=name, full_name=f"Test {role}", role=role,
        password="correct horse battery staple",
    )  # fmt: skip
    return staff.principal_for(row)


def change(session: Session, deps: CoreDeps, member_id: int, new: str) -> str:
    maker = person(session, deps, "teller", "maker611")
    checker = person(session, deps, "manager", "checker611")
    req = approvals.request_approval(
        session, deps, maker, "member.phone_change",
        payload=phone_change_payload(deps, new, id_checked=True), member_id=member_id,
        note="lost SIM", large_threshold_cents=10**9,
    )  # fmt: skip
    return approvals.decide(session, deps, checker, req.id, approve=True).status


def test_the_new_number_is_treated_as_a_fresh_sim_swap_for_the_window(
    db_session: Session, deps: CoreDeps, standin: StandinHandle
) -> None:
    clock = Clock(MORNING)
    timed = replace(deps, now=clock)
    m = member(db_session, timed, OLD, savings_kes=5_000)
    start_pin_reset(db_session, timed, m, business_key="pin_reset:611")  # its code went to OLD
    control(standin, number=NEW, swapped=False)  # the provider knows of no swap
    checker = make_checker(standin.url)
    assert change(db_session, timed, m, NEW) == "approved"
    moved = db_session.get_one(Member, m)
    assert moved.msisdn == NEW and not has_pin_reset(timed, moved)

    clock.at = MORNING + timedelta(days=1)
    assert withdraw(db_session, timed, m, 500, checker, "day-1") == "sim_swap_recent/recent_swap"
    event = db_session.scalars(select(SimSwapEvent).where(SimSwapEvent.member_id == m)).one()
    assert (event.msisdn, event.last_swap_at) == (NEW, MORNING)

    clock.at = MORNING + POLICY.sim_swap_window + POLICY.sim_swap_cache + timedelta(seconds=1)
    assert withdraw(db_session, timed, m, 500, checker, "after-window") == "allowed"


def test_staff_clear_the_phone_change_like_any_swap(
    db_session: Session, deps: CoreDeps, standin: StandinHandle
) -> None:
    clock = Clock(MORNING)
    timed = replace(deps, now=clock)
    m = member(db_session, timed, OLD, savings_kes=5_000)
    control(standin, number=NEW, swapped=False)
    checker = make_checker(standin.url)
    assert change(db_session, timed, m, NEW) == "approved"
    clock.at = MORNING + timedelta(hours=2)
    assert withdraw(db_session, timed, m, 500, checker, "refused") == "sim_swap_recent/recent_swap"
    event = db_session.scalars(select(SimSwapEvent).where(SimSwapEvent.member_id == m)).one()
    maker = person(db_session, timed, "teller", "maker613")
    req = approvals.request_approval(
        db_session, timed, maker, "sim_swap.clear",
        payload={"event_id": event.id, "in_person": True}, member_id=m,
        note="member at the counter with ID", large_threshold_cents=10**9,
    )  # fmt: skip
    boss = person(db_session, timed, "manager", "checker613")
    assert approvals.decide(db_session, timed, boss, req.id, approve=True).status == "approved"
    assert withdraw(db_session, timed, m, 500, checker, "cleared") == "allowed"


def test_an_approval_that_finds_the_number_taken_fails_and_changes_nothing(
    db_session: Session, deps: CoreDeps
) -> None:
    m = member(db_session, deps, OLD)
    maker = person(db_session, deps, "teller", "maker612")
    req = approvals.request_approval(
        db_session, deps, maker, "member.phone_change",
        payload=phone_change_payload(deps, NEW, id_checked=True), member_id=m,
        note="new line", large_threshold_cents=10**9,
    )  # fmt: skip
    member(db_session, deps, NEW)  # someone registered the number meanwhile
    checker = person(db_session, deps, "manager", "checker612")
    assert approvals.decide(db_session, deps, checker, req.id, approve=True).status == "failed"
    assert db_session.get_one(Member, m).msisdn == OLD
    sent = db_session.scalars(
        select(OutboxMessage.template).where(OutboxMessage.template.like("phone_changed%"))
    ).all()
    assert sent == []
