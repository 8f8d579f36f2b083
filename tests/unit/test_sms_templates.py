"""Every SMS template, in both languages, fits one SMS part with worst-case data."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.kernel.gsm import GSM7_BASIC, GSM7_EXTENSION, is_gsm7, sms_length, to_gsm7
from core.messaging.notifications import SMS, Term, first_name, render_sms, sms_datetime
from core.messaging.sms_commands import mini_lines

# Worst cases the platform allows (docs/channels/sms.md, "Templates and SMS length").
WORST = {
    "sacco": "Mwangaza Wakulima SA",  # SACCO_NAME: keep it to 20 characters
    "first_name": first_name("Wanjirumwangikamau Otieno"),  # cut to 15
    "member_number": "99999999999",  # 11 digits
    "ussd_code": "*384*44135*99#",
    "amount": "KES 9,999,999.99",
    "balance": "KES 9,999,999.99",
    "savings": "KES 9,999,999.99",
    "deposits": "KES 9,999,999.99",
    "shares": "KES 9,999,999.99",
    "reference": "RKL51ZDR4F",  # 10 characters
    "paybill_account": "99999999999WWWWWWWW",  # a member number and a product code
    "code": "ABCDEFGHIJ",
    "date": sms_datetime(datetime(2026, 12, 31, 20, 59, tzinfo=UTC)),
    "until": "23:59",
    "account": Term("deposits"),
    "receipt": "RKL51ZDR4F",  # M-Pesa receipts are 10 characters
    "msisdn": "+254712345678",
    "fee": "KES 108",
    "days": "30",
    "reason": "x" * 60,  # staff reason for a KYC refusal: 3-60 characters
    "pledge": "KES 9,999,999.99",  # loans: a guarantor's pledge
    "remaining": "KES 9,999,999.99",
    "received": "KES 9,999,999.99",
    "sent": "KES 9,999,999",  # a loan's M-Pesa payout: whole shillings
    "branch": "KES 0.99",  # an exit refunded by M-Pesa: the odd cents paid at the branch
    "instalment": "KES 9,999,999.99",
    "due_on": "31/12/2026",
    "loan": "L7K2M9QX",  # a loan's reference: L + 7
    "product": "W" * 20,  # a loan product's name, cut (core.messaging.sms_commands)
    "limit": "KES 9,999,999.99",
    "arrears": "KES 9,999,999.99",
    "list_on": "31/12/2026",  # close of day: from when a loan may be listed with a CRB
    "why": Term("why_guaranteed_default"),  # every why_/state_ term: test below
    "state": Term("state_pending_approval"),
    "tax": "KES 999,999.99",  # savings interest: withholding tax
    "net": "KES 9,999,999.99",
    "year": "2026",  # year end: the financial year and a member's dividend and rebate
    "dividend": "KES 9,999,999.99",
    "rebate": "KES 9,999,999.99",
    "loans": "KES 9,999,999.99",  # STATEMENT: what the member owes on all their loans
    "digits": "9999",  # bank transfers: the last four digits of the member's account
    "lines": mini_lines([(datetime(2026, 12, 31, tzinfo=UTC), -999_999_999)] * 3),
}
TEMPLATES = [k for k in sorted(SMS.texts["en"]) if not k.startswith("term_")]


def test_catalogues_agree_between_languages() -> None:
    assert SMS.problems() == []


@pytest.mark.parametrize("language", ["en", "sw"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_is_one_gsm7_part_with_worst_case_data(template: str, language: str) -> None:
    fields = SMS.placeholders(SMS.text(template, language))
    assert fields <= set(WORST), f"add worst-case values for {fields - set(WORST)}"
    body = render_sms(template, language, WORST)
    length = sms_length(body)
    assert length.encoding == "GSM-7", body
    assert length.parts == 1, f"{template}/{language}: {length.units} septets: {body}"


def test_terms_render_in_the_message_language() -> None:
    data = {**WORST, "account": Term("savings")}
    assert "into your savings account" in render_sms("deposit_received", "en", data)
    assert "akaunti yako ya akiba" in render_sms("deposit_received", "sw", data)


def test_gsm7_single_and_multipart_boundaries() -> None:
    assert sms_length("a" * 160).parts == 1
    assert sms_length("a" * 161).parts == 2
    assert sms_length("a" * 306).parts == 2
    assert sms_length("a" * 307).parts == 3
    # extension characters count twice and an escape pair is never split
    assert sms_length("€" * 80).parts == 1 and sms_length("€" * 81).parts == 2
    assert sms_length("a" * 158 + "€").parts == 1  # 160 septets
    assert sms_length("a" * 159 + "€").parts == 2  # 161 septets
    split = sms_length("a" * 152 + "€" + "a" * 7)  # the pair moves whole to part 2
    assert (split.units, split.parts) == (161, 2)


def test_one_non_gsm_character_switches_to_ucs2() -> None:
    assert sms_length("Habari " + "ŵ").encoding == "UCS-2"
    assert sms_length("ŵ" * 70).parts == 1 and sms_length("ŵ" * 71).parts == 2
    assert sms_length("ŵ" * 134).parts == 2 and sms_length("ŵ" * 135).parts == 3
    assert sms_length("😀" * 35).parts == 1 and sms_length("😀" * 36).parts == 2


def test_typographic_look_alikes_are_replaced_to_stay_gsm7() -> None:
    assert to_gsm7("Karibu \u201cUmoja\u201d \u2013 it\u2019s\u2026") == 'Karibu "Umoja" - it\'s...'
    assert is_gsm7(to_gsm7("\u2018x\u2019\u00a0y"))


@given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=800))
def test_gsm7_parts_are_enough_and_minimal(text: str) -> None:
    length = sms_length(text)
    assert length.encoding == "GSM-7"
    if length.units <= 160:
        assert length.parts == 1
    else:
        assert (length.parts - 1) * 153 < length.units <= length.parts * 153


@given(st.text(min_size=1, max_size=300))
def test_any_text_gets_a_positive_part_count(text: str) -> None:
    length = sms_length(text)
    assert length.parts >= 1 and length.characters == len(text)
    assert (length.encoding == "GSM-7") == is_gsm7(text)


def test_placeholders_are_simple_names() -> None:
    for template in TEMPLATES:
        for lang in ("en", "sw"):
            for field in SMS.placeholders(SMS.text(template, lang)):
                assert set(field) <= set(string.ascii_lowercase + "_")


@pytest.mark.parametrize("language", ["en", "sw"])
@pytest.mark.parametrize("kind", ["why", "state"])
def test_loan_replies_fit_with_every_reason_and_status(kind: str, language: str) -> None:
    terms = [k.removeprefix("term_") for k in SMS.texts["en"] if k.startswith(f"term_{kind}_")]
    assert terms
    for template in TEMPLATES:
        if kind not in SMS.placeholders(SMS.text(template, language)):
            continue
        for term in terms:
            body = render_sms(template, language, {**WORST, kind: Term(term)})
            assert sms_length(body).parts == 1, f"{template}/{language}/{term}: {body}"
