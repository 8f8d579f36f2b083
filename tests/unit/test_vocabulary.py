"""The typed vocabulary: account codes written once, every entry kind named on a statement
in both languages, one "who may deposit" rule, and no wall clock inside core."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from core.kernel.errors import MemberNotAllowed
from core.kernel.i18n import LANGUAGES
from core.ledger.chart import AccountType, MemberAccount, NormalSide, Purpose, SystemAccount
from core.ledger.statements import STATEMENT_LABELS, StatementLabel, statement_label
from core.ledger.vocabulary import EntryKind
from core.members.access import DEPOSIT, self_service_features
from core.members.status import MemberStatus, check_may_deposit, may_deposit

ROOT = Path(__file__).resolve().parents[2]
# Where the platform's own code lives (tests may name a code where they assert what the
# ledger must hold; migrations are history and keep theirs).
CODE = [ROOT / d for d in ("core", "db", "api", "ussd", "sms", "integrations", "workers")]
CODE += [ROOT / "manage.py", ROOT / "app_factory.py", ROOT / "config.py"]
ACCOUNT_CODES = {str(a) for a in SystemAccount} | {str(a) for a in MemberAccount}


def python_files() -> list[Path]:
    files: list[Path] = []
    for place in CODE:
        files += [place] if place.is_file() else sorted(place.rglob("*.py"))
    return [f for f in files if "migrations" not in f.parts]


def string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_account_code_is_written_outside_the_chart() -> None:
    allowed = {
        ROOT / "core" / "ledger" / "chart.py",
        ROOT / "core" / "kernel" / "pins.py",  # the commonest PINs, such as 1000 and 1010
    }
    found = [
        f"{path.relative_to(ROOT)}:{line} {value!r}"
        for path in python_files()
        if path not in allowed
        for line, value in string_constants(path)
        if value in ACCOUNT_CODES or value.split("-", 1)[0] in ACCOUNT_CODES and "-" in value
    ]
    assert found == [], "name the account (core.ledger.chart) instead of writing its code"


def test_the_chart_is_consistent() -> None:
    codes = [str(a) for a in SystemAccount] + [str(a) for a in MemberAccount]
    assert len(codes) == len(set(codes))
    for account in SystemAccount:
        contra = account is SystemAccount.LOAN_LOSS_PROVISION
        assert (account.normal_side == account.account_type.normal_side) is not contra
    assert AccountType.ASSET.normal_side is NormalSide.DEBIT
    assert AccountType.INCOME.normal_side is NormalSide.CREDIT
    assert [a.purpose for a in MemberAccount] == [Purpose.SAVINGS, Purpose.DEPOSITS, Purpose.SHARES]
    assert MemberAccount.SAVINGS.code_for("10019") == "2000-10019"
    assert MemberAccount.for_purpose("shares") is MemberAccount.SHARES
    assert str(SystemAccount.SUSPENSE) == "2200" and f"{SystemAccount.SUSPENSE}" == "2200"


def catalogue(lang: str) -> dict[str, str]:
    with (ROOT / "ussd" / "catalogues" / f"ussd.{lang}.toml").open("rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("kind", list(EntryKind))
def test_every_entry_kind_core_can_post_has_a_statement_label_in_both_languages(
    kind: EntryKind,
) -> None:
    """``post_entry`` takes an ``EntryKind`` (mypy refuses anything else), so this walks
    every kind core can post."""
    label = STATEMENT_LABELS[kind]
    assert label is not StatementLabel.OTHER, f"{kind} would read Other on a statement"
    assert statement_label(str(kind)) is label
    for lang in LANGUAGES:
        text = catalogue(lang).get(f"kind_{label}")
        assert text, f"kind_{label} missing from ussd.{lang}.toml"


def test_every_label_has_its_text_and_a_stored_kind_no_longer_posted_reads_other() -> None:
    for lang in LANGUAGES:
        texts = catalogue(lang)
        assert all(texts.get(f"kind_{label}") for label in StatementLabel), lang
    assert statement_label("loan.disbursement_v0") is StatementLabel.OTHER
    assert statement_label(str(EntryKind.MPESA_SUSPENSE_ASSIGN)) is StatementLabel.DEPOSIT


@pytest.mark.parametrize("status", list(MemberStatus))
def test_who_may_deposit_is_one_rule_and_the_self_service_menu_follows_it(
    status: MemberStatus,
) -> None:
    allowed = status in (MemberStatus.PENDING_KYC, MemberStatus.ACTIVE)
    assert may_deposit(status) is allowed
    assert (DEPOSIT in self_service_features(status)) is allowed
    if allowed:
        check_may_deposit(status)
    else:
        with pytest.raises(MemberNotAllowed, match=f"member is {status}") as refused:
            check_may_deposit(status)
        assert refused.value.context["reason"] == status


def test_no_other_module_writes_the_deposit_statuses_again() -> None:
    """A literal set of statuses that may deposit (``("pending_kyc", "active")``) outside
    ``core.members.status`` would be a second copy of the rule."""
    found = []
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if {"pending_kyc", "active"} <= values:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


# Reading the wall clock inside core. The one place allowed: the default clock a
# composition root may leave in CoreDeps (every audit row, too, takes deps.now()).
WALL_CLOCK_ALLOWED = {ROOT / "core" / "kernel" / "deps.py"}


def wall_clock_reads(path: Path) -> list[str]:
    reads = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "db.base":
            reads += [f"imports {a.name}" for a in node.names if a.name == "utcnow"]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"),
                        ("time", "time"), ("datetime", "today")}:  # fmt: skip
                reads.append(f"{pair[0]}.{pair[1]} at line {node.lineno}")
    return reads


def test_nothing_in_core_reads_the_wall_clock() -> None:
    found = {
        str(path.relative_to(ROOT)): reads
        for path in sorted((ROOT / "core").rglob("*.py"))
        if path not in WALL_CLOCK_ALLOWED and (reads := wall_clock_reads(path))
    }
    assert found == {}, "take the time from deps.now() (or a now= the caller passes)"
