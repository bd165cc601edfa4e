"""The secrets detector finds provider keys, private keys, JWTs, passwords in connection
strings and the exact values it is given, and leaves digests, UUIDs and prose alone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from shipyard.guard.evaluate_spans import evaluate, score_lines
from shipyard.guard.secrets_scan import SecretsDetector, looks_random

DATA = Path(__file__).parent / "data" / "secrets_eval.jsonl"
DETECTOR = SecretsDetector()
# Assembled at run time so that no scanner mistakes this file for a leak.
GITHUB = "ghp_" + "Xq7RkW2mZp9LvT4nB8cY1dF6gH3jK5sA0eUi"
AWS = "AKIA" + "QWERTYUIOPASDFGH"
STRIPE = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
OPENAI = (
    "sk-proj-"
    + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7CD0EF"
    + "T3BlbkFJ"
    + "aB3cD4eF5gH6iJ7kL8mN9oP0"
)
GOOGLE = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"


def _spans(text: str, detector: SecretsDetector = DETECTOR) -> list[str]:
    return [text[f.start : f.end] for f in detector.scan(text)]


@pytest.mark.parametrize("value", [GITHUB, AWS, STRIPE, SLACK, OPENAI, GOOGLE])
def test_provider_keys_are_found_whole(value: str) -> None:
    assert _spans(f"Use {value} to call the API.") == [value]


def test_a_private_key_block_is_found_whole_and_so_is_a_truncated_one() -> None:
    body = base64.b64encode(bytes(range(256)) * 2).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    block = f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----"
    assert _spans(f"here it is:\n{block}\nbye") == [block]
    truncated = f"-----BEGIN PRIVATE KEY-----\n{lines[:200]}"
    assert _spans(truncated) == [truncated]


def test_a_jwt_and_passwords_in_connection_strings() -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256"}).encode()).decode().rstrip("=")
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "42"}).encode()).decode().rstrip("=")
    token = f"{header}.{claims}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    assert token in _spans(f"Authorization: Bearer {token}")
    assert _spans("postgresql://app:Tr0ub4dor3xyz@db:5432/orders") == ["Tr0ub4dor3xyz"]
    found = _spans("Server=sql;User ID=svc;Password=Tr0ub4dor3xyz;Encrypt=True;")
    assert any("Tr0ub4dor3xyz" in span for span in found)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("my password is hunter2.", "hunter2"),
        ("Your passcode was: Xy7!pq", "Xy7!pq"),
        ("password: hunter2hunter", "hunter2hunter"),
        ("DB_PASSWORD=Sup3rS3cret!", "Sup3rS3cret!"),
    ],
)
def test_passwords_in_prose_and_assignments(text: str, value: str) -> None:
    assert _spans(text) == [value]


@pytest.mark.parametrize(
    "text",
    [
        "The password is required.",
        "The password is 2 characters too short.",
        "secret: str = Field(default='')",
        "Set api_key=secret://llm/openai#key in the agent's options.",
    ],
)
def test_password_words_without_a_password_are_left_alone(text: str) -> None:
    assert _spans(text) == []


def test_known_values_are_found_exactly_with_their_encodings() -> None:
    secret = "correct horse battery"
    detector = SecretsDetector(known=[secret, "abc"])  # "abc" is too short to match
    text = f"the tool said {secret}, then {base64.b64encode(secret.encode()).decode()}; abc"
    found = detector.scan(text)
    assert next((f.type, text[f.start : f.end]) for f in found) == ("KNOWN_SECRET", secret)
    assert len([f for f in found if f.type == "KNOWN_SECRET"]) == 2
    assert SecretsDetector().scan(f"the tool said {secret}; abc") == []  # found only as known


@pytest.mark.parametrize(
    "text",
    [
        "The release commit is 3f786850e387550fdab836ed7e6dc881de23001b and it passed CI.",
        "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  app.tar.gz",
        "Run 123e4567-e89b-12d3-a456-426614174000 finished in 2.3 s.",
        "The module lives at /usr/lib/python3.11/site-packages/shipyard/guard/secrets_scan.py",
        "Version 2026.10.11549 ships the SmolLM2-135M-Instruct model.",
        "Please reset your password using the link in the email.",
    ],
)
def test_benign_random_looking_text_is_left_alone(text: str) -> None:
    assert _spans(text) == []


def test_entropy_rule() -> None:
    assert looks_random("Zx8Qw3Ls9Df2Gh7Jk4Lp1Mn6Bv5Cx0Rt")
    assert not looks_random("aaaaaaaaaaaaaaaaaaaaaaaa1A")
    assert not looks_random("ThisIsAnOrdinaryIdentifier2")


def test_the_generated_set_is_found_and_scored() -> None:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    report = evaluate(DETECTOR, rows, match_type=False)
    assert report["recall"] >= 0.95 and report["precision"] >= 0.9
    assert report["types"]["PRIVATE_KEY"]["recall"] == 1.0
    lines = list(score_lines(DETECTOR, ['{"text": "key ' + GITHUB + '"}', "", "not json"]))
    assert json.loads(lines[0])["found"] == [{"start": 4, "end": 44, "type": "GITHUB_TOKEN"}]
    assert "error" in json.loads(lines[1])
