"""Identity values: phone numbers, member numbers, national IDs, e-mail addresses. Pure
functions."""

from __future__ import annotations

import functools
import re
import unicodedata

import phonenumbers

from core.kernel.errors import InvalidInput

DEFAULT_REGION = "KE"

# Damm algorithm (quasigroup of order 10): one check digit that catches every
# single-digit error and every adjacent transposition, which is what a member
# typing on a keypad gets wrong.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
MEMBER_NUMBER_BASE = 1000  # the first member gets 1000 + their row id, then a check digit


def damm_digit(digits: str) -> int:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][int(ch)]
    return interim


def member_number_for(seq: int) -> str:
    """``1001`` -> ``10014``: a short number plus its Damm check digit."""
    if seq <= 0:
        raise ValueError("sequence must be positive")
    body = str(MEMBER_NUMBER_BASE + seq)
    return body + str(damm_digit(body))


def is_valid_member_number(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9]{5,11}", text)) and damm_digit(text) == 0


def normalize_msisdn(text: str, region: str = DEFAULT_REGION) -> str:
    """Any way a Kenyan mobile number is written -> E.164 (``+2547…`` or ``+2541…``)."""
    if not isinstance(text, str) or not 6 <= len(text.strip()) <= 20:
        raise InvalidInput("not a phone number", field="msisdn", reason="format")
    raw = re.sub(r"[\s\-().]", "", text.strip())
    if raw.startswith("254") and not raw.startswith("+"):
        raw = "+" + raw
    e164, why = _e164(raw, region)
    if why:
        raise InvalidInput(_WHY_NOT[why], field="msisdn", reason=why)
    return e164


_WHY_NOT = {
    "format": "not a phone number",
    "invalid": "not a valid phone number",
    "region": "not a Kenyan number",
    "not_mobile": "not a mobile number",
}


@functools.lru_cache(maxsize=8192)
def _e164(raw: str, region: str) -> tuple[str, str]:
    """(E.164, "") or ("", the reason it is not a mobile number of ``region``). Cached:
    parsing costs ~0.1-0.2 ms and every USSD hop of a session brings the same number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return "", "format"
    if not phonenumbers.is_valid_number(number):
        return "", "invalid"
    if phonenumbers.region_code_for_number(number) != region:
        return "", "region"
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return "", "not_mobile"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""


def normalize_national_id(text: str) -> str:
    """A Kenyan national ID: 6 to 9 digits once spaces are removed."""
    if not isinstance(text, str) or len(text) > 30:
        raise InvalidInput("not an ID number", field="national_id", reason="format")
    digits = re.sub(r"\s", "", text)
    if not re.fullmatch(r"[0-9]{6,9}", digits):
        raise InvalidInput("ID number must be 6-9 digits", field="national_id", reason="format")
    return digits.lstrip("0") or "0"


def normalize_name(text: str) -> str:
    """A member's full name: 2+ words of letters, apostrophes or hyphens, at most 60 characters."""
    if not isinstance(text, str) or len(text) > 200:
        raise InvalidInput("name too long", field="full_name", reason="too_long")
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not 3 <= len(name) <= 60:
        raise InvalidInput("name must be 3-60 characters", field="full_name", reason="length")
    words = name.split(" ")
    if len(words) < 2 or not all(re.fullmatch(r"[^\W\d_]+(?:['-][^\W\d_]+)*", w) for w in words):
        raise InvalidInput(
            "give first and last name in letters", field="full_name", reason="format"
        )
    return " ".join(w[:1].upper() + w[1:] for w in words)


# One plain address: a local part and a domain with a dot, printable ASCII, nothing that
# could start a second address or a header (``,;<>"()[]\``, spaces, line breaks).
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
EMAIL_MAX = 254  # the longest address SMTP carries (RFC 5321 path, less the brackets)


def normalize_email(text: str) -> str:
    """A staff member's e-mail address, one plain address, the domain lower-cased."""
    address = text.strip() if isinstance(text, str) else ""
    if len(address) > EMAIL_MAX or not _EMAIL.fullmatch(address):
        raise InvalidInput("not a single plain e-mail address", field="email", reason="format")
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def mask_msisdn(msisdn: str) -> str:
    """+254712345678 -> +2547*****678: enough to recognise, not to call. The one phone
    masker: staff screens, member SMS, audit and logs all show a number this way. Anything
    longer than an E.164 number (a forged gateway field) shows as ``****``, never itself."""
    if len(msisdn) < 8 or len(msisdn) > 16:
        return "*" * min(len(msisdn), 4)
    return msisdn[:5] + "*" * (len(msisdn) - 8) + msisdn[-3:]
