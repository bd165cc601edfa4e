"""The PII detector finds each type in a sentence, and the checksums reject near-misses."""

# ruff: noqa: E501  (a table of sentences reads better one per line)

from __future__ import annotations

import itertools

import pytest

from shipyard.guard.pii import PiiDetector

DETECTOR = PiiDetector()


def _found(text: str) -> set[tuple[str, str]]:
    return {(f.type, text[f.start : f.end]) for f in DETECTOR.scan(text)}


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Write to maria.lopez+billing@example.co.uk today.", "EMAIL_ADDRESS", "maria.lopez+billing@example.co.uk"),
        ("Call me on +44 20 7946 0958 after six.", "PHONE_NUMBER", "+44 20 7946 0958"),
        ("My number is (415) 555-2671.", "PHONE_NUMBER", "(415) 555-2671"),
        ("Tu peux m'appeler au 01.84.17.61.18 demain.", "PHONE_NUMBER", "01.84.17.61.18"),
        ("Charge it to 4111 1111 1111 1111 please.", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("My Amex is 378282246310005.", "CREDIT_CARD", "378282246310005"),
        ("Wire it to GB82WEST12345698765432 by Friday.", "IBAN_CODE", "GB82WEST12345698765432"),
        ("Das Konto DE89 3704 0044 0532 0130 00 ist neu.", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
        ("His social security number is 123-45-6789.", "US_SSN", "123-45-6789"),
        ("The login came from 203.0.113.42 at noon.", "IP_ADDRESS", "203.0.113.42"),
        ("Blocked 2001:db8::8a2e:370:7334 again.", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
        ("My driver's license number is D1234567.", "US_DRIVER_LICENSE", "D1234567"),
        ("Ship it to 1600 Pennsylvania Avenue NW, Washington, DC 20500 please.", "STREET_ADDRESS",
         "1600 Pennsylvania Avenue NW, Washington, DC 20500"),
        ("Meine Adresse: Hauptstraße 5, 10115 Berlin.", "STREET_ADDRESS", "Hauptstraße 5, 10115 Berlin"),
        ("I was born on 14 March 1987 in Leeds.", "DATE_TIME", "14 March 1987"),
        ("Date of birth: 1987-03-14", "DATE_TIME", "1987-03-14"),
        ("Please ask Jennifer Reid to sign the form.", "PERSON", "Jennifer Reid"),
        ("My name is Qoqa Arsanukayev.", "PERSON", "Qoqa Arsanukayev"),
        ("I'd like to join accounts with ms. Ludmiła", "PERSON", "Ludmiła"),
        ("Signed by Þorkell H. Hallbjörnsson yesterday.", "PERSON", "Þorkell H. Hallbjörnsson"),
    ],
)  # fmt: skip
def test_each_type_is_found_in_a_sentence(text: str, kind: str, value: str) -> None:
    assert (kind, value) in _found(text)


@pytest.mark.parametrize(
    "text",
    [
        "Charge it to 4111 1111 1111 1112 please.",  # Luhn fails on the last digit
        "My Amex is 378282246310006.",
        "Wire it to GB82WEST12345698765433 by Friday.",  # mod-97 fails
        "Das Konto DE89 3704 0044 0532 0130 01 ist neu.",
        "His social security number is 666-45-6789.",  # area 666 is never issued
        "The login came from 203.0.113.420 at noon.",  # not an address
    ],
)
def test_checksums_reject_near_misses(text: str) -> None:
    kinds = {kind for kind, _ in _found(text)}
    assert not kinds & {"CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS"}


@pytest.mark.parametrize(
    "text",
    [
        "The Detector protocol returns findings in order of start.",
        "Run make test before you open a pull request; the suite takes 7 minutes.",
        "Version 2.3.1 shipped on the 5th with 14 fixes and 3 new features.",
        "Will you send the Grant Access form to the North Office?",
    ],
)
def test_ordinary_prose_has_no_personal_data(text: str) -> None:
    assert _found(text) == set()


def test_spans_are_ordered_and_disjoint_and_odd_input_is_fine() -> None:
    text = "Jennifer Reid, jr@example.com, +1 415 555 2671, card 4111111111111111."
    found = DETECTOR.scan(text)
    assert [f.start for f in found] == sorted(f.start for f in found)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))
    assert DETECTOR.scan("") == []
    assert DETECTOR.scan("\x00\u200b\\n" * 50) == []


def test_types_limit_what_is_reported() -> None:
    only_email = PiiDetector(types=("EMAIL_ADDRESS",))
    text = "Jennifer Reid, jr@example.com"
    assert [f.type for f in only_email.scan(text)] == ["EMAIL_ADDRESS"]
