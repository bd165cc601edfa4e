"""Writes a second PII test set from templates of our own (not presidio-evaluator's), filled
with Faker values of ten locales: a check on text the detector was not tuned on.

    pip install faker   # not a project dependency: only this script needs it
    python scripts/pii_testset.py > /tmp/pii_own.jsonl
    shipyard guard eval pii /tmp/pii_own.jsonl

The templates were written after the detector, without running it on them first; they are
chat messages, support tickets, signatures, logs and forms. Rows carry ``spans``.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable

from faker import Faker

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "pl_PL", "nl_NL", "sv_SE", "pt_BR"]
TEMPLATES = [
    "Hi, this is {PERSON}. Can you call me back on {PHONE_NUMBER}?",
    "Customer {PERSON} ({EMAIL_ADDRESS}) reported that the card {CREDIT_CARD} was charged twice.",
    "Please send the contract to {STREET_ADDRESS} before Friday.",
    "Best regards,\n{PERSON}\nTel. {PHONE_NUMBER}\n{EMAIL_ADDRESS}",
    "2026-12-06 10:15:02 WARN login failed for {EMAIL_ADDRESS} from {IP_ADDRESS}",
    "Name: {PERSON}\nDate of birth: {DATE_TIME}\nAddress: {STREET_ADDRESS}",
    "Refund to IBAN {IBAN_CODE}, account holder {PERSON}.",
    "My SSN is {US_SSN} and my date of birth is {DATE_TIME}.",
    "Forwarding from {PERSON}: the new office is at {STREET_ADDRESS}, ring {PHONE_NUMBER}.",
    '{{"user": "{EMAIL_ADDRESS}", "ip": "{IP_ADDRESS}", "card": "{CREDIT_CARD}"}}',
    "Could {PERSON} and {PERSON} join the call tomorrow?",
    "The parcel for {PERSON} came back from {STREET_ADDRESS}.",
    "Meeting notes: {PERSON} will follow up with the bank about {IBAN_CODE}.",
    "I moved last month, my new address is {STREET_ADDRESS}. Phone stays {PHONE_NUMBER}.",
    "Driver's licence no. {US_DRIVER_LICENSE}, issued to {PERSON}.",
]


def value(fake: Faker, us: Faker, kind: str) -> str:
    """A Faker value of ``kind``: names, phones, addresses and IBANs in the row's locale; cards,
    SSNs, licences and IP addresses from the US locale (the others have none)."""
    makers: dict[str, Callable[[], object]] = {
        "PERSON": lambda: re.sub(
            r"^(?:Dr|Mr|Mrs|Ms|Prof|Herr|Frau|Mme|M|Sr|Sra)\.? ", "", fake.name()
        ),
        "PHONE_NUMBER": fake.phone_number,
        "EMAIL_ADDRESS": fake.email,
        "CREDIT_CARD": us.credit_card_number,
        "IBAN_CODE": fake.iban,
        "IP_ADDRESS": lambda: us.ipv4() if random.random() < 0.8 else us.ipv6(),
        "STREET_ADDRESS": lambda: fake.address().replace("\n", ", "),
        "DATE_TIME": lambda: fake.date_of_birth().strftime(
            random.choice(["%Y-%m-%d", "%d/%m/%Y", "%B %d, %Y"])
        ),
        "US_SSN": us.ssn,
        "US_DRIVER_LICENSE": lambda: us.bothify(
            random.choice(["?#######", "#########", "??######"])
        ).upper(),
    }
    return str(makers[kind]())


def main(count: int = 600) -> None:
    random.seed(21)
    Faker.seed(21)
    us = Faker("en_US")
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for _ in range(count):
        fake = fakers[random.choice(LOCALES)]
        template = random.choice(TEMPLATES)
        text, spans, cursor = "", [], 0
        for m in re.finditer(r"\{([A-Z_]+)\}", template):
            text += template[cursor : m.start()].replace("{{", "{").replace("}}", "}")
            filled = value(fake, us, m.group(1))
            spans.append({"start": len(text), "end": len(text) + len(filled), "type": m.group(1)})
            text += filled
            cursor = m.end()
        text += template[cursor:].replace("{{", "{").replace("}}", "}")
        sys.stdout.write(json.dumps({"text": text, "spans": spans}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
