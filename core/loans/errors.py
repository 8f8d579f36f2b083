"""The loan book's refusals. Each carries a stable ``code`` (the API maps it to a status,
``api/v1/problems.py``) and a ``reason`` the channels turn into a text in both languages.
A refusal writes nothing: it is raised before the first write of its use case."""

from __future__ import annotations

from collections.abc import Sequence

from core.kernel.errors import DomainError
from core.loans.appraisal import Appraisal


class LoanRefused(DomainError):
    """The appraisal said no: ``reasons`` (``core.loans.appraisal.Reason`` codes, most
    fundamental first) and the member's ``limit_cents`` under the product."""

    code = "loan_refused"

    def __init__(
        self, detail: str = "", *, reasons: Sequence[str] = (), limit_cents: int = 0
    ) -> None:
        main = reasons[0] if reasons else "refused"
        super().__init__(
            detail or f"loan refused: {', '.join(reasons) or 'refused'}",
            reason=main,
            reasons=list(reasons),
            limit_cents=limit_cents,
        )
        self.reasons = tuple(reasons)
        self.reason = main
        self.limit_cents = limit_cents

    @classmethod
    def of(cls, found: Appraisal, min_score: int | None = None) -> LoanRefused:
        """The refusal of an appraisal that said no; below the product's minimum score, the
        detail names the score and its reasons (what staff read of the decision)."""
        reasons = [str(r) for r in found.reasons]
        detail = ""
        score = found.score
        if score is not None and not score.approve:
            why = ", ".join(score.reasons) or "none"
            bureau = (
                "; bureau unavailable: scored on the SACCO's own record"
                if score.bureau == "unavailable"
                else ""
            )
            detail = (
                f"loan refused: {', '.join(reasons)} (credit score {score.score} below "
                f"{min_score}; score reasons: {why}{bureau})"
            )
        refused = cls(detail, reasons=reasons, limit_cents=found.limit_cents)
        if score is not None:
            refused.context.update(
                score=score.score,
                score_reasons=list(score.reasons),
                score_id=score.score_id,
                bureau=score.bureau,
            )
        return refused


class ProductUnavailable(DomainError):
    """The product is inactive, or not open to the channel the member applied on."""

    code = "product_unavailable"


class GuaranteeRefused(DomainError):
    """A guarantee cannot be asked or accepted; ``reason``: ``self_guarantee``,
    ``guarantor_not_active``, ``lacks_deposits``, ``max_guarantees``, ``already_asked``,
    ``more_than_needed``, ``not_needed``."""

    code = "guarantee_refused"

    def __init__(self, detail: str = "", *, reason: str = "refused") -> None:
        super().__init__(detail or f"guarantee refused: {reason}", reason=reason)
        self.reason = reason


class LoanStateError(DomainError):
    """The application or guarantee is not in a state that allows this (``reason``: e.g.
    ``application_open``, ``not_pending_approval``, ``cover_incomplete``, ``decided``)."""

    code = "loan_state"

    def __init__(self, detail: str = "", *, reason: str = "state") -> None:
        super().__init__(detail or reason, reason=reason)
        self.reason = reason


class TopUpRefused(DomainError):
    """A top-up cannot go ahead (``reason``): ``not_offered`` (the product allows no
    top-ups), ``other_product`` (a loan of another product), ``too_early`` (fewer
    instalments paid than the product asks), ``loan_not_active`` (closed or written off),
    ``nothing_to_receive`` (the old loan's payoff, the commission and the fees take the
    whole principal)."""

    code = "top_up_refused"

    def __init__(self, detail: str = "", *, reason: str = "refused", **extra: object) -> None:
        super().__init__(detail or f"top-up refused: {reason}", reason=reason, **extra)
        self.reason = reason
