"""The submission file's layout and validator, pure (core.loans.crb): every file the
builder's row functions produce, over any amounts and dates, passes its own validator; a
row that breaks a rule is named with its field; the layout data is complete."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from core.loans.crb import layout as lay
from core.loans.crb.submission import LoanFacts, account_row, split_name, trailer
from core.loans.vocabulary import LoanStatus

LAYOUT = lay.current_layout()
AS_OF = date(2026, 3, 31)
cents = st.integers(min_value=0, max_value=10**13)
days = st.dates(min_value=date(2000, 1, 1), max_value=AS_OF)

facts = st.builds(
    LoanFacts,
    reference=st.from_regex(r"L[0-9]{7}", fullmatch=True),
    product_code=st.from_regex(r"[A-Z0-9]{1,8}", fullmatch=True),
    status=st.sampled_from(list(LoanStatus)),
    disbursed_on=days,
    principal_cents=st.integers(min_value=1, max_value=10**13),
    term=st.integers(min_value=1, max_value=480),
    instalment_cents=cents,
    balance_cents=st.integers(min_value=-(10**6), max_value=10**13),
    arrears_cents=cents,
    days_past_due=st.integers(min_value=0, max_value=5000),
    listable=st.booleans(),
    closed_on=st.none() | days,
    written_off_on=st.none() | days,
    last_payment_on=st.none() | days,
)


def consumer(national_id: str, n: int) -> dict[str, str]:
    surname, forename, others = split_name("Amina Njeri Wanjiru")
    return {"record_type": "C", "surname": surname, "forename_1": forename,
            "forename_2": others, "national_id": national_id, "date_of_birth": "19900101",
            "gender": "", "mobile_number": "254712000001", "postal_address": "",
            "member_number": f"M{n:06d}"}  # fmt: skip


def build(loans: list[LoanFacts]) -> bytes:
    header = {"record_type": "H", "institution_name": "Test SACCO", "reporting_month": "202603",
              "reporting_date": "20260331", "layout_version": LAYOUT.version}  # fmt: skip
    consumers, accounts = [], []
    for n, f in enumerate(loans):
        row = account_row(f, AS_OF)
        if row is None:
            continue
        national_id = str(20_000_000 + n)
        consumers.append(consumer(national_id, n))
        accounts.append({"national_id": national_id, **row})
    records = [header, *consumers, *accounts, trailer(len(consumers), accounts, 0)]
    return lay.render(LAYOUT, records)


@given(st.lists(facts, max_size=20, unique_by=lambda f: f.reference))
def test_every_file_the_rows_make_passes_its_own_validator(loans: list[LoanFacts]) -> None:
    content = build(loans)
    assert lay.validate(LAYOUT, content) == []
    # Negative information only for what close of day marked listable.
    for line in content.decode().splitlines():
        if line.startswith("A|"):
            row = dict(zip(LAYOUT.names("A"), line.split("|"), strict=True))
            if row["listing_flag"] == "N":
                assert row["account_status"] in ("A", "B") and row["overdue_balance"] == "0.00"


@given(facts)
def test_the_status_code_follows_the_loan_and_its_mark(f: LoanFacts) -> None:
    row = account_row(f, AS_OF)
    if f.status == LoanStatus.WRITTEN_OFF and not f.listable:
        assert row is None  # withheld
        return
    assert row is not None
    want = {
        LoanStatus.CLOSED: "A",
        LoanStatus.WRITTEN_OFF: "E",
        LoanStatus.ACTIVE: ("D" if f.days_past_due > 90 else "C") if f.listable else "B",
    }[LoanStatus(f.status)]
    assert row["account_status"] == want


def test_a_bad_row_is_named_with_its_field() -> None:
    good = LoanFacts("L0000001", "DEV", LoanStatus.ACTIVE, date(2026, 1, 10), 10_000_000, 12,
                     888_488, 9_000_000, 0, 0, False, None, None, None)  # fmt: skip
    content = build([good]).decode()
    cases = {
        "20260110|100000.00": ("20261310|100000.00", "date_opened", "not a date (YYYYMMDD)"),
        "|B|": ("|Z|", "account_status", "not one of A, B, C, D, E"),
        "|12|": ("|1x|", "term_months", "not a whole number"),
    }
    for old, (new, field, reason) in cases.items():
        broken = content.replace(old, new, 1).encode()
        problems = lay.validate(LAYOUT, broken)
        assert [(p.record, p.field, p.reason) for p in problems] == [
            ("account L0000001", field, reason)
        ], old
    # A trailer that does not add up is refused too.
    trailer_line = content.strip().splitlines()[-1]
    wrong = content.replace(trailer_line, trailer_line.replace("|1|1|0|", "|1|2|0|")).encode()
    assert [(p.record, p.field) for p in lay.validate(LAYOUT, wrong)] == [
        ("trailer", "account_count")
    ]
    # Arrears on a loan not listable are negative information: refused.
    leak = content.replace("|0.00|0|B|", "|5.00|3|B|").encode()
    assert ("account L0000001", "overdue_balance") in [
        (p.record, p.field) for p in lay.validate(LAYOUT, leak)
    ]


def test_the_layout_describes_every_record_and_code() -> None:
    assert set(LAYOUT.records) == {"H", "C", "A", "G", "T"}
    assert set(LAYOUT.account_status) == {"A", "B", "C", "D", "E"}
    assert all(f.type in lay.FIELD_TYPES for r in LAYOUT.records.values() for f in r.fields)


def test_names_split_surname_last() -> None:
    assert split_name("Amina Njeri Wanjiru") == ("Wanjiru", "Amina", "Njeri")
    assert split_name("  Otieno  Kamau ") == ("Kamau", "Otieno", "")
    assert split_name("Wanjiru") == ("Wanjiru", "", "")
