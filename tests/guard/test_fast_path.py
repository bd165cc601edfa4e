"""The guards' fast path: a run scans each text once (the stream does not scan what it cannot
release yet, and the final answer reuses its last response's scan), a scan is never reused by
another run, the PII detector's character tests skip finders without changing a finding, and
the secrets detector runs detect-secrets' regexes itself with the plugins' own results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shipyard import Agent, GuardPolicy, GuardRule
from shipyard.guard import pii, registry, secrets_scan
from shipyard.guard.base import Finding
from shipyard.testing import ScriptedModel, run_agent
from tests.guard.detectors import CARD, CardDetector

SECRETS_EVAL = Path(__file__).parent / "data" / "secrets_eval.jsonl"


class CountingCards(CardDetector):
    """The test card detector, counting the texts it scans."""

    name = "test_counting"
    scanned: list[str] = []

    def scan(self, text: str) -> list[Finding]:
        CountingCards.scanned.append(text)
        return super().scan(text)


registry.register("test_counting", CountingCards)
POLICY = GuardPolicy(
    rules=(GuardRule(detector="test_counting", surfaces=("output",), action="redact"),)
)


@pytest.fixture(autouse=True)
def _count() -> None:
    CountingCards.scanned = []


async def test_a_short_answer_is_scanned_once() -> None:
    agent = Agent(name="a", model=ScriptedModel(echo=True), guards=POLICY)
    result, events = await run_agent(agent, "hello there")
    assert result.output == "echo: hello there"
    assert CountingCards.scanned == ["echo: hello there"]  # not per delta, not again at the end
    deltas = "".join(e.data["text"] for e in events if e.type == "llm.delta")
    assert deltas == "echo: hello there"


async def test_a_long_answer_is_still_filtered_everywhere() -> None:
    words = " ".join(f"word{n}" for n in range(40))
    agent = Agent(name="a", model=ScriptedModel(echo=True), guards=POLICY)
    result, events = await run_agent(agent, f"{words} pay {CARD} {words}")
    assert CARD not in result.output and "[CREDIT_CARD]" in result.output
    streamed = "".join(e.data["text"] for e in events if e.type == "llm.delta")
    assert streamed == result.output
    assert CountingCards.scanned.count(result.output.replace("[CREDIT_CARD]", CARD)) == 1


async def test_a_scan_is_never_reused_by_another_run() -> None:
    agent = Agent(name="a", model=ScriptedModel(echo=True), guards=POLICY)
    await run_agent(agent, "same words")
    await run_agent(agent, "same words")
    assert CountingCards.scanned == ["echo: same words", "echo: same words"]


def _every_finder(text: str) -> list[Finding]:
    """The detector without its character tests: every finder on every text."""
    plain = pii._ESCAPE.sub("  ", text)
    found = [f for finder, _ in pii._FINDERS for f in finder(plain)]
    return pii._join_addresses(pii.resolve(found), plain)


TEXTS = [
    "hello",
    "Call me at +1 415 555 0134 or mail jo@example.com",
    "Meet Anna Kowalska at the corner of Oak Street and Main Street",
    "server fe80::abcd:ef01 and dead:beef::cafe answered",
    "my driver's license number is eorDwZSw",
    "Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, SSN 123-45-6789",
    "Born 14 March 1987, lives at 12 Baker Street, London",
    "call 0123 456 789".translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}),  # full width
    "Dear Mr. Nowak, your order ships Monday.",
    "Hi, I am Maria Garcia from Lisbon; reach me on 06-60999851 or at Rua Augusta 21, 2º",
    "PSC 4115, Box 8234, APO AA 07843",
    "ip 10.0.0.1 and 2001:db8::1, phone (555) 010-4477, dob 03/04/1990",
    "nothing here at all, just words and Capitalised Words",
]


def test_the_character_tests_change_no_finding() -> None:
    detector = pii.PiiDetector()
    for text in [*TEXTS, " ".join(TEXTS), "\n".join(TEXTS)]:
        assert detector.scan(text) == _every_finder(text), text
    assert sum(bool(detector.scan(text)) for text in TEXTS) >= len(TEXTS) - 3  # real findings


def test_the_secrets_plugins_regexes_find_what_the_plugins_find() -> None:
    fast = secrets_scan.SecretsDetector()
    plugins = secrets_scan.SecretsDetector()
    plugins._regexes, plugins._own = [], plugins._plugins  # each plugin's analyze_string
    texts = [json.loads(line)["text"] for line in SECRETS_EVAL.read_text().splitlines()]
    for text in [*texts, *TEXTS, "\n".join(texts)]:
        assert fast.scan(text) == plugins.scan(text), text
    assert sum(bool(fast.scan(text)) for text in texts) >= len(texts) // 3  # real findings


def test_the_provider_patterns_are_skipped_only_where_none_can_match() -> None:
    """Every provider pattern's match is a run the gate finds (long enough, of its class), and
    the detector finds the same with the gate and without it."""
    for _, pattern in secrets_scan._EXTRA_RE:
        shortest = re._parser.parse(pattern.pattern).getwidth()[0]  # type: ignore[attr-defined]
        assert shortest >= secrets_scan._EXTRA_MIN, pattern.pattern
        assert secrets_scan._LONG_TOKEN.fullmatch(shortest * "a")
    texts = [json.loads(line)["text"] for line in SECRETS_EVAL.read_text().splitlines()]
    detector = secrets_scan.SecretsDetector()
    gated = [detector.scan(text) for text in [*texts, *TEXTS]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(secrets_scan, "_LONG_TOKEN", re.compile(""))  # finds something anywhere
        assert [detector.scan(text) for text in [*texts, *TEXTS]] == gated
    assert not secrets_scan._LONG_TOKEN.search("echo: hello, how are you today?")
