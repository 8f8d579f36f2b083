"""The savings maker-checker actions (registered with ``core.approvals.engine``): a teller's
cash withdrawal above the till limit (``withdrawal.cash``) and a till day counted with a
difference (``till.close``), and the two verbs the API calls that may ask for them; and
``savings_product.create`` / ``savings_product.change`` (also how a product's rate is set
and how one is deactivated): asked by a holder of ``savings_products:manage``, decided by
another person holding ``approvals:decide_large`` (a manager): a product's rate is what
the SACCO owes every member under it (``core.savings.products``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.approvals.engine import ActionSpec, payload_amount, payload_of, register, request_approval
from core.approvals.vocabulary import ApprovalStatus
from core.kernel.deps import CoreDeps
from core.kernel.errors import IdempotencyConflict
from core.kernel.permissions import Principal
from core.ledger import entries as ledger
from core.members.approval_actions import AboveTillLimit, earlier_cash_request
from core.members.backoffice import check_cash_key, visible_member
from core.savings import products, year_end
from core.savings.tills import (
    TillFigures,
    TillRefused,
    cash_withdrawal,
    cash_withdrawal_key,
    check_may_withdraw,
    close_balanced,
    current_till,
    figures,
    post_difference,
    record_count,
)
from core.staff import accounts as staff
from db.models import ApprovalRequest, JournalEntry, Member, StaffUser
from db.models_tills import TillDay

# ------------------------------------------------------------ withdrawal.cash


def _withdrawal_payload(p: dict[str, Any]) -> tuple[int, str]:
    key = p.get("idempotency_key")
    return payload_amount(p), check_cash_key(key if isinstance(key, str) else "")


def _check_cash_withdrawal(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    assert member_id is not None
    amount, _ = _withdrawal_payload(p)
    check_may_withdraw(session, session.get_one(Member, member_id), amount)
    return amount


def _exec_cash_withdrawal(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    """``cash_withdrawal`` as the teller who pays the cash (the till's key), in the
    approval's transaction: the balance, dormancy and status are checked again now."""
    from core.staff.accounts import principal_for  # core.staff imports the members

    assert req.member_id is not None
    amount, key = _withdrawal_payload(p)
    maker = principal_for(session.get_one(StaffUser, req.maker_id))
    posted = cash_withdrawal(
        session, deps, maker, member_id=req.member_id, amount_cents=amount,
        idempotency_key=key, approval_id=req.id,
    )  # fmt: skip
    return {"entry": posted.reference, "amount_cents": amount}


def take_cash_withdrawal(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    member_id: int,
    amount_cents: int,
    idempotency_key: str,
    till_limit_cents: int,
    large_threshold_cents: int,
) -> ledger.PostedEntry | ApprovalRequest:
    """Cash out at the counter: paid at once up to ``till_limit_cents``; above it a pending
    request another person approves (the cash is paid when it is approved). The same key
    again returns the first withdrawal or request; with another amount, a conflict."""
    key = check_cash_key(idempotency_key)
    member = visible_member(session, actor, member_id)
    wanted = {"amount_cents": amount_cents, "idempotency_key": key}
    # One request per till key even when the same POST races itself.
    session.execute(select(Member.id).where(Member.id == member.id).with_for_update())
    earlier = earlier_cash_request(session, actor, member.id, key, "withdrawal.cash")
    if earlier is not None:
        if {k: payload_of(earlier).get(k) for k in wanted} != wanted:
            raise IdempotencyConflict(
                "this idempotency key was already used for a different withdrawal",
                idempotency_key=key,
            )
        return earlier
    if amount_cents <= till_limit_cents:
        return cash_withdrawal(
            session, deps, actor, member_id=member.id, amount_cents=amount_cents,
            idempotency_key=key,
        )  # fmt: skip
    if actor.kind != "staff":
        raise AboveTillLimit(
            "cash above the till limit needs a member of staff to ask and another to approve"
        )
    used = session.scalar(
        select(JournalEntry.id).where(
            JournalEntry.idempotency_key == cash_withdrawal_key(actor, key)
        )
    )
    if used is not None:
        raise IdempotencyConflict(
            "this idempotency key was already used for a different withdrawal",
            idempotency_key=key,
        )
    return request_approval(
        session, deps, actor, "withdrawal.cash", payload=wanted, member_id=member.id,
        note="cash withdrawal above the till limit", large_threshold_cents=large_threshold_cents,
    )  # fmt: skip


# ------------------------------------------------------------------ till.close


def _counted_till(session: Session, p: dict[str, Any]) -> TillDay:
    till_id = p.get("till_day_id")
    till = session.get(TillDay, till_id, with_for_update=True) if isinstance(till_id, int) else None
    if till is None or till.status != "counted" or not till.difference_cents:
        raise TillRefused("the till day is not waiting for its difference", reason="not_counted")
    if p.get("difference_cents") != till.difference_cents:
        raise TillRefused("the till was counted again since", reason="recounted")
    return till


def _check_till_close(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> int:
    return abs(_counted_till(session, p).difference_cents or 0)


def _exec_till_close(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    till = _counted_till(session, p)
    if till.approval_id != req.id:
        raise TillRefused("the till was counted again since", reason="recounted")
    reference = post_difference(session, deps, till, req.id)
    return {"till_day_id": till.id, "difference_cents": till.difference_cents, "entry": reference}


def count_till(
    session: Session,
    deps: CoreDeps,
    actor: Principal,
    *,
    counted_cents: int,
    explanation: str,
    large_threshold_cents: int,
) -> tuple[TillFigures, ApprovalRequest | None]:
    """The teller's count at day end. Equal to what the till should hold: the day closes.
    Different: the count and its explanation are kept and a supervisor is asked
    (``till.close``); approved, the difference posts and the day closes; rejected or
    failed, the teller counts again."""
    till = current_till(session, actor, lock=True)
    if till is None:
        raise TillRefused("you have no open till day", reason="not_open")
    if till.status == "counted" and till.approval_id is not None:
        pending = session.get_one(ApprovalRequest, till.approval_id)
        if pending.status == ApprovalStatus.PENDING:
            raise TillRefused("the count waits for a supervisor's decision",
                              reason="awaiting_approval")  # fmt: skip
    record_count(session, deps, till, counted_cents=counted_cents, explanation=explanation)
    found = figures(session, till, deps.now())
    if till.difference_cents == 0:
        till.approval_id = None
        close_balanced(session, deps, actor, till)
        return found, None
    session.flush()
    req = request_approval(
        session, deps, actor, "till.close",
        payload={"till_day_id": till.id, "difference_cents": till.difference_cents,
                 "expected_cents": till.expected_cents, "counted_cents": till.counted_cents,
                 "explanation": till.explanation},
        note=f"till {'over' if (till.difference_cents or 0) > 0 else 'short'}: "
        f"{till.explanation}"[:200],
        large_threshold_cents=large_threshold_cents,
    )  # fmt: skip
    till.approval_id = req.id
    req.branch = till.branch  # the teller's branch: its own supervisors may decide it
    session.flush()
    return found, req


# ------------------------------------------------------------ savings products


def _check_create(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    products.check_create(session, p)


def _check_change(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    products.check_change(session, p)


def _exec_create(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_create(session, deps, staff.checker_of(session, req), req.id, p)


def _exec_change(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return products.approve_change(session, deps, staff.checker_of(session, req), req.id, p)


# ------------------------------------------------------------ year_end.post


def _check_year_end(
    session: Session, deps: CoreDeps, member_id: int | None, p: dict[str, Any]
) -> None:
    year_end.check_post(session, p)


def _exec_year_end(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return year_end.post_run(session, deps, staff.checker_of(session, req), p)


def _reject_year_end(
    session: Session, deps: CoreDeps, req: ApprovalRequest, p: dict[str, Any]
) -> dict[str, Any]:
    return year_end.reject_run(session, p)


def register_actions() -> None:
    register(
        year_end.POST_ACTION,
        ActionSpec(
            year_end.MAKER_PERMISSION, "post a year's dividends and rebates", False,
            _check_year_end, _exec_year_end, checker_permission=year_end.CHECKER_PERMISSION,
            on_reject=_reject_year_end,
        ),
    )  # fmt: skip
    register(
        "withdrawal.cash",
        ActionSpec(
            "withdrawals:cash",
            "pay cash out of savings above the till limit",
            True,
            _check_cash_withdrawal,
            _exec_cash_withdrawal,
            one_pending_per_member=False,
        ),
    )
    register(
        "till.close",
        ActionSpec(
            "tills:operate",
            "post a till's counted difference and close its day",
            False,
            _check_till_close,
            _exec_till_close,
        ),
    )
    for action, describe, check, execute in (
        (products.CREATE_ACTION, "create a savings product", _check_create, _exec_create),
        (products.CHANGE_ACTION, "change a savings product", _check_change, _exec_change),
    ):
        register(
            action,
            ActionSpec(
                products.MAKER_PERMISSION, describe, False, check, execute,
                checker_permission=products.CHECKER_PERMISSION,
            ),
        )  # fmt: skip
