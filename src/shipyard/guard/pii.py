"""Personal data in text: the spans a policy redacts, masks or pseudonymises (docs/guards.md).

Each type is found by a pattern wide enough to catch the formats people write and then checked
by what the format itself guarantees, where it guarantees anything: cards by Luhn, IBANs by
their mod-97 check (``python-stdnum``), SSNs by the SSA's area/group rules, IP addresses by
``ipaddress``, phone numbers by Google's libphonenumber (``phonenumbers``), which knows every
region's numbering plan. Types with no checksum (driver licences, dates of birth) need a context
word nearby. Street addresses and person names live in their own modules (no library of ours
finds them offline: spaCy's models cannot be installed here). No model, no network: everything
loads from installed packages, and a 2 KB text scans in a few milliseconds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.us import ssn as std_ssn

from shipyard.guard.base import Finding
from shipyard.guard.pii_address import find_addresses
from shipyard.guard.pii_names import find_names

TYPES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "US_DRIVER_LICENSE",
    "STREET_ADDRESS",
    "DATE_TIME",
    "PERSON",
)
"""What the detector reports, named as Presidio names them (dates of birth are DATE_TIME)."""

PRIORITY = {
    t: -i
    for i, t in enumerate(
        (
            "IBAN_CODE",
            "EMAIL_ADDRESS",
            "CREDIT_CARD",
            "US_SSN",
            "IP_ADDRESS",
            "US_DRIVER_LICENSE",
            "DATE_TIME",
            "PHONE_NUMBER",
            "STREET_ADDRESS",
            "PERSON",
        )
    )
}
"""On overlap the higher wins: checksummed types first, then the ones a context word or an exact
format vouches for, then phone numbers (libphonenumber takes any digit run of the right length),
then the shapes (addresses, names)."""

_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]+@(?:[\w-]+\.)+[^\W\d_]{2,}(?![\w-])")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\w-])(\d{3})([- .]?)(\d{2})\2(\d{4})(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_DL = re.compile(r"(?<![\w*-])[A-Za-z0-9][A-Za-z0-9*-]{4,19}(?![\w-])")
"""A licence number: states use every format (digits, letters and digits, even letters only)."""
_DL_RIGHT_AFTER = re.compile(
    r"(?:licen[cs]e|\bDL)\s*(?:number|no\.?|#|id)?\s*(?:is|:|=)?\s*$", re.I
)
_GROUPED = re.compile(r"(?<![\w.+-])\d{2,4}([ .-])\d{2,4}(?:\1\d{2,4}){1,4}(?![\w-]|\.\d)")
_ESCAPE = re.compile(r"\\[nrt]")
_CARD_CONTEXT = re.compile(r"card|visa|master|maestro|amex|debit|credit|\bcc\b|pan\b", re.I)
_DL_CONTEXT = re.compile(
    r"driv\w*['\u2019]?s?\s+licen[cs]e|licen[cs]e\s*(?:number|no\b|#|id\b)|\bDL\b|\bD\.L\.|"
    r"permis de conduire|f[üu]hrerschein|patente|carn[eé] de conducir",
    re.I,
)
_SSN_CONTEXT = re.compile(r"social|security|ssn|\bss#|taxpayer|\btin\b", re.I)
_PHONE_CONTEXT = re.compile(
    r"phone|call|tel\b|tel:|mobile|cell|fax|sms|text|whats|reach|contact|dial|number|desk|"
    r"messag|registered|ring|landline|hotline|\bno\.|#|appel|t[ée]l[ée]phon|anruf|handy|llam|chiam|numer|"
    r"nummer|n[úu]mero|celular|portable",
    re.I,
)
_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = re.compile(
    r"(?<![\w/.-])(?:"
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS},?\s+\d{{4}}"
    rf"|{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    r")(?![\w/]|[.-]\d)"
)


def _emails(text: str) -> Iterator[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding(m.start(), m.end(), "EMAIL_ADDRESS", 1.0)


def _cards(text: str) -> Iterator[Finding]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if not luhn.is_valid(digits) or len(set(digits)) < 2:
            continue
        groups = [len(g) for g in re.split(r"[ -]", m.group())]
        grouped_as_card = (set(groups[:-1]) == {4} and groups[-1] >= 3) or groups in (
            [4, 6, 5],
            [4, 6, 4],
        )
        if len(groups) > 1 and not grouped_as_card:
            continue  # "21 232 291 1232" is grouped as a phone number, not as a card
        # One random number in ten passes Luhn: twelve digits (Maestro's shortest) need a word.
        if len(digits) > 12 or _CARD_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            yield Finding(m.start(), m.end(), "CREDIT_CARD", 1.0)


def _ibans(text: str) -> Iterator[Finding]:
    for m in _IBAN.finditer(text):
        span = m.group()
        # The pattern is greedy: a following word or number may have joined; shrink until valid.
        for end in range(len(span), 14, -1):
            if span[end - 1] != " " and std_iban.is_valid(span[:end]):
                yield Finding(m.start(), m.start() + end, "IBAN_CODE", 1.0)
                break


def _ssns(text: str) -> Iterator[Finding]:
    for m in _SSN.finditer(text):
        digits = m.group(1) + m.group(3) + m.group(4)
        if not std_ssn.is_valid(digits):
            continue
        # Nine bare digits are as often an order number: they need a word saying what they are.
        if m.group(2) or _SSN_CONTEXT.search(text, max(0, m.start() - 60), m.start()):
            yield Finding(m.start(), m.end(), "US_SSN", 0.9 if m.group(2) else 0.7)


def _ips(text: str) -> Iterator[Finding]:
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            candidate = m.group()
            if (pattern is _IPV6 and candidate.count(":") < 2) or candidate.startswith(":::"):
                continue
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                continue
            yield Finding(m.start(), m.end(), "IP_ADDRESS", 0.95)


def _licences(text: str) -> Iterator[Finding]:
    """A token with a digit near a word such as "licence", or any token right after one
    ("my driver's license number is eorDwZSw")."""
    if not _DL_CONTEXT.search(text):
        return
    for m in _DL.finditer(text):
        near = max(0, m.start() - 50), m.start()
        token = m.group()
        has_digit = any(c.isdigit() for c in token)
        mixed = any(c.isupper() for c in token[1:]) and any(c.islower() for c in token)
        if (has_digit and _DL_CONTEXT.search(text, *near)) or (
            (has_digit or mixed) and _DL_RIGHT_AFTER.search(text, *near)
        ):
            yield Finding(m.start(), m.end(), "US_DRIVER_LICENSE", 0.6)


def _dates(text: str) -> Iterator[Finding]:
    for m in _DATE.finditer(text):
        parts = re.split(r"[/.-]", m.group())
        if len(parts) == 3 and parts[0].isdigit() and len(parts[0]) <= 2:
            day_month = sorted(int(p) for p in parts[:2])
            if day_month[0] < 1 or day_month[0] > 12 or day_month[1] > 31:
                continue  # "27-40-00-64" is a phone number, not a date
        yield Finding(m.start(), m.end(), "DATE_TIME", 0.6)


def _phones(text: str) -> Iterator[Finding]:
    """libphonenumber's matcher in a lenient plan (Italy's: 6 to 11 digits, any grouping)
    proposes every possible number; one is kept when it is valid in the US plan or written with
    a ``+`` country code (valid anywhere), written like a phone number (parentheses), or
    preceded by a word such as "call" or "fax". One pass over the text, not one per region."""
    seen: set[tuple[int, int]] = set()
    lenient = phonenumbers.PhoneNumberMatcher(text, "IT", leniency=phonenumbers.Leniency.POSSIBLE)
    for match in lenient:
        start, end, raw = match.start, match.end, match.raw_string
        if sum(c.isdigit() for c in raw) < 7:
            continue
        seen.add((start, end))
        if raw[0] == "+" and phonenumbers.is_valid_number(match.number):
            yield Finding(start, end, "PHONE_NUMBER", 0.95)
        elif (
            (raw[0] == "(" and ")" in raw)
            or _PHONE_CONTEXT.search(text, max(0, start - 40), start)
            or _valid_us(raw)
        ):
            yield Finding(start, end, "PHONE_NUMBER", 0.7)
    # Short local numbers ("68 90 46") and dotted ones ("01.84.17.61.18") that the plan above
    # does not propose: groups of 2-4 digits with one separator, after a word saying what they are.
    for m in _GROUPED.finditer(text):
        if (m.start(), m.end()) not in seen and _PHONE_CONTEXT.search(
            text, max(0, m.start() - 40), m.start()
        ):
            yield Finding(m.start(), m.end(), "PHONE_NUMBER", 0.5)


def _phone_shaped(raw: str) -> bool:
    """Written as phone numbers are, whatever the words around: a trunk prefix and 9+ digits
    ("0488 51 54 25", "06-60999851"), or 8+ digits in three or more groups ("73 353 810 1")."""
    digits = sum(c.isdigit() for c in raw)
    groups = len(re.findall(r"\d+", raw))
    return (raw[0] == "0" and digits >= 9 and groups >= 2) or (digits >= 8 and groups >= 3)


def _valid_us(raw: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(raw, "US"))
    except phonenumbers.NumberParseException:
        return False


_DIGIT = re.compile(r"\d")
_AT = re.compile("@")
_DIGIT_OR_COLON = re.compile(r"[\d:]")
_FINDERS: tuple[tuple[Callable[[str], Iterator[Finding]], re.Pattern[str] | None], ...] = (
    (_emails, _AT),
    (_ibans, _DIGIT),
    (_cards, _DIGIT),
    (_ssns, _DIGIT),
    (_ips, _DIGIT_OR_COLON),  # IPv6 may be all letters ("fe80::abcd")
    (_phones, _DIGIT),
    (_licences, None),  # a licence "number" may have no digit; it has a context test of its own
    (_dates, _DIGIT),
    (find_addresses, None),  # "the corner of Oak and Main" has no digit
    (find_names, None),
)
"""Each finder, with what a text must hold for it to find anything (None: no such test). The
fast path: most short texts (a greeting, a chat answer) have no ``@`` and no digit, so the
checksum finders and libphonenumber — a third of the cost — are never called for them. What
each finds is unchanged: every pattern behind them needs that character."""


def resolve(findings: list[Finding]) -> list[Finding]:
    """Non-overlapping findings in order of ``start``: on overlap the type of higher priority
    wins, then the longer span."""
    ranked = sorted(findings, key=lambda f: (-PRIORITY.get(f.type, -99), -(f.end - f.start)))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def _join_addresses(findings: list[Finding], text: str) -> list[Finding]:
    """Adjacent address parts separated only by commas, spaces or one line break ("599 Piroska
    u. 76." then "Italy 33093" on the next lines) are one address."""
    joined: list[Finding] = []
    for f in findings:
        previous = joined[-1] if joined else None
        if (
            previous is not None
            and previous.type == f.type == "STREET_ADDRESS"
            and len(text[previous.end : f.start]) <= 12
            and not text[previous.end : f.start].strip(" ,.\n")
        ):
            joined[-1] = Finding(previous.start, f.end, f.type, max(previous.score, f.score))
        else:
            joined.append(f)
    return joined


class PiiDetector:
    """Finds personal data (``TYPES``). ``types`` limits what is reported."""

    name = "pii"

    def __init__(self, types: tuple[str, ...] | None = None) -> None:
        self.types = frozenset(types or TYPES)

    def scan(self, text: str) -> list[Finding]:
        if not text:
            return []
        # Text that went through JSON twice carries literal "\\n": blank such escapes (same
        # length, so spans stay right) or "\\n555 0100" would not start at a word boundary.
        plain = _ESCAPE.sub("  ", text)
        found: list[Finding] = []
        has: dict[re.Pattern[str], bool] = {}
        for finder, needs in _FINDERS:
            if needs is not None:
                if needs not in has:
                    has[needs] = needs.search(plain) is not None
                if not has[needs]:
                    continue
            found.extend(finder(plain))
        return [f for f in _join_addresses(resolve(found), plain) if f.type in self.types]
