"""Secrets in text a run is about to send out: provider keys and tokens, private keys, JWTs,
passwords in connection strings and assignments, random-looking tokens, and the exact values
of the secret store that the run's tools used (docs/guards.md).

The provider patterns are Yelp's ``detect-secrets`` plugins, used as a library: each line goes
through every regex plugin's ``analyze_string`` (no verification, so no network), and each value
it yields is found again in the line to get its span. To those we add the providers it lacks
(newer OpenAI, Anthropic, Google, Hugging Face, fine-grained GitHub, Vault... tokens), whole PEM
private-key blocks (it flags only the header), bearer tokens, and an entropy test for unquoted
tokens (its entropy plugins look only inside quotes). What is not a secret, by decision: hex
strings of 64 characters or fewer (digests, commit ids), UUIDs, and words; see the docs.
"""

from __future__ import annotations

import base64
import math
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP, KeywordDetector

from shipyard.guard.base import Finding
from shipyard.guard.pii import resolve

MIN_KNOWN = 6
"""Shorter store values are not matched: a 3-character "secret" would flag ordinary words."""

_SKIPPED_PLUGINS = frozenset({"Public IP (ipv4)"})
"""detect-secrets plugins that find no secret (a public IP address is personal data at most)."""

_EXTRA = {
    "OPENAI_API_KEY": r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|sk-[A-Za-z0-9]{48}",
    "ANTHROPIC_API_KEY": r"sk-ant-[a-z]{3,6}\d{2}-[A-Za-z0-9_-]{32,}",
    "GOOGLE_API_KEY": r"AIza[0-9A-Za-z_-]{35}",
    "GOOGLE_OAUTH_TOKEN": r"ya29\.[0-9A-Za-z_-]{20,}",
    "GITHUB_TOKEN": r"github_pat_[A-Za-z0-9_]{22,}|gh[pousr]_[A-Za-z0-9]{36,}",
    "HUGGINGFACE_TOKEN": r"hf_[A-Za-z0-9]{30,}",
    "STRIPE_KEY": r"(?:sk|rk|pk)_(?:test|live)_[0-9A-Za-z]{20,}|whsec_[0-9A-Za-z]{24,}",
    "SLACK_TOKEN": r"xox[abposr]-[0-9A-Za-z-]{10,}",
    "GITLAB_TOKEN": r"gl(?:pat|ptt|dt|rt|cbt|oas)-[0-9A-Za-z_-]{20,}",
    "DIGITALOCEAN_TOKEN": r"do[pro]_v1_[a-f0-9]{64}",
    "SHOPIFY_TOKEN": r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    "DATABRICKS_TOKEN": r"dapi[a-f0-9]{32}(?:-\d)?",
    "VAULT_TOKEN": r"hv[sbr]\.[A-Za-z0-9_-]{24,}",
    "GROQ_API_KEY": r"gsk_[A-Za-z0-9]{48,}",
    "REPLICATE_TOKEN": r"r8_[A-Za-z0-9]{37}",
    "LINEAR_API_KEY": r"lin_api_[A-Za-z0-9]{40}",
    "POSTMAN_API_KEY": r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}",
    "NOTION_TOKEN": r"(?:secret|ntn)_[A-Za-z0-9]{43,46}",
    "MAILGUN_API_KEY": r"key-[0-9a-f]{32}",
    "AGE_SECRET_KEY": r"AGE-SECRET-KEY-1[0-9A-Z]{58}",
    "DOPPLER_TOKEN": r"dp\.(?:pt|st|ct|scim|audit)\.[A-Za-z0-9]{40,}",
    "NPM_TOKEN": r"npm_[A-Za-z0-9]{36}",
    "PYPI_TOKEN": r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    "AWS_ACCESS_KEY": r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
    "TWILIO_KEY": r"SK[0-9a-fA-F]{32}",
    "SENDGRID_API_KEY": r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
}
_EXTRA_RE = [
    (kind, re.compile(rf"(?<![A-Za-z0-9_])(?:{pattern})(?![A-Za-z0-9_])"))
    for kind, pattern in _EXTRA.items()
]
_EXTRA_MIN = 15
_LONG_TOKEN = re.compile(rf"[A-Za-z0-9_.-]{{{_EXTRA_MIN},}}")
"""What every ``_EXTRA`` match is: at least ``_EXTRA_MIN`` characters, all of this class
(tested). Text without such a run skips those patterns: one search instead of one per provider."""
_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:.*?-----END \1-----|[\sA-Za-z0-9+/=:,-]*)",
    re.S,
)
_BEARER = re.compile(r"(?i)\b(?:bearer|token)\s+([A-Za-z0-9._~+/-]{20,}=*)")
_CONN_PASSWORD = re.compile(r"(?i)\b(?:password|pwd|passwd)\s*=\s*([^;'\"\s]{4,})")
_PROSE_PASSWORD = re.compile(
    r"(?i)\b(?:password|passcode|passphrase|pin|pwd)\s+(?:is|was|=|:)\s*:?\s*['\"`]?"
    r"(?=[^\s'\"`]{4})([^\s'\"`]*[\d!@#$%^&*][^\s'\"`]*?)['\"`]?(?=[\s.,;!?)]*(?:\s|$))"
)
"""\"my password is hunter2\": a value with a digit or a symbol ("is required" is not one)."""
_URI_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s@/]+)@")
_TOKEN = re.compile(r"[A-Za-z0-9+/_=.~%-]{20,}")
_RUNS = re.compile(r"(.)\1{3,}")
_NOT_A_VALUE = re.compile(
    r"(?:secret|vault|env|file)://|\$\{|<|\*{3}|\.\.\.|os\.environ|settings\."
)
"""What follows ``password =`` but is not a secret: a reference, a placeholder, a mask, code."""
_CODE = re.compile(r"[\s()\[\]{},=`|]")
_KEYWORDS = re.compile(r"(?i)key|pass|pwd|secret|contrase")
_SEPARATORS = re.compile(r"[-_./+~=%]")
_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _type_name(secret_type: str) -> str:
    """detect-secrets' "AWS Access Key" as a finding type: ``AWS_ACCESS_KEY``."""
    return re.sub(r"[^A-Z0-9]+", "_", secret_type.upper()).strip("_")


def _plugins() -> list[tuple[str, RegexBasedDetector]]:
    found: list[tuple[str, RegexBasedDetector]] = []
    mapping: dict[str, type[Any]] = dict(get_mapping_from_secret_type_to_class())
    for secret_type, cls in mapping.items():
        if secret_type not in _SKIPPED_PLUGINS and issubclass(cls, RegexBasedDetector):
            found.append((_type_name(secret_type), cls()))
    return found


def _overrides_analyze(plugin: RegexBasedDetector) -> bool:
    return type(plugin).analyze_string is not RegexBasedDetector.analyze_string


def _plain_regexes(
    plugins: list[tuple[str, RegexBasedDetector]],
) -> list[tuple[str, tuple[re.Pattern[str], ...]]]:
    """The regexes of the plugins whose ``analyze_string`` is the base class's (its findall
    loop is then inlined in ``SecretsDetector._line``)."""
    return [(k, tuple(p.denylist)) for k, p in plugins if not _overrides_analyze(p)]


def entropy(token: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(token)
    return -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())


def looks_random(token: str) -> bool:
    """A token that is probably a credential: long, mixed letters and digits, and close to the
    entropy a random string of its length would have. Digests (hex up to 64 characters), UUIDs
    and paths are not."""
    token = token.strip("=.-_~")
    if len(token) < 20 or _UUID.fullmatch(token):
        return False
    if _HEX.fullmatch(token) and len(token) <= 64:
        return False
    has_digit = any(c.isdigit() for c in token)
    has_upper = any(c.isupper() for c in token)
    has_lower = any(c.islower() for c in token)
    if not (has_digit and (has_upper or has_lower)) or token.count("/") > 2:
        return False
    if not (has_upper and has_lower) and not _HEX.fullmatch(token):
        return False
    if max(len(part) for part in _SEPARATORS.split(token)) < 16:
        return False  # "SmolLM2-135M-Instruct", "v2.3.1-rc4-linux": words joined, not random
    # Padding runs ("AAAAAAAAAAAAAAAAAAAAA" opens every Twitter bearer token) say nothing.
    core = _RUNS.sub(r"\1", token)
    return len(core) >= 20 and entropy(core) >= 0.85 * math.log2(min(len(core), 64))


def _variants(value: str) -> set[str]:
    """A store value and the forms it commonly leaks in: base64 and URL-encoded."""
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        base64.b64encode(value.encode()).decode().rstrip("="),
    }
    return {f for f in forms if len(f) >= MIN_KNOWN}


class SecretsDetector:
    """Finds secrets; ``known`` are exact values to find too (the secret store values a run's
    tools used), with their base64 and URL-encoded forms."""

    name = "secrets"

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._plugins = _plugins()
        self._regexes = _plain_regexes(self._plugins)
        self._own = [(k, p) for k, p in self._plugins if _overrides_analyze(p)]
        self._keyword = KeywordDetector()
        values = sorted(
            {v for k in known if len(k) >= MIN_KNOWN for v in _variants(k)}, key=len, reverse=True
        )
        self._known = re.compile("|".join(map(re.escape, values))) if values else None

    def scan(self, text: str) -> list[Finding]:
        if not text:
            return []
        found = list(self._exact(text))
        found.extend(self._patterns(text))
        offset = 0
        for line in text.splitlines(keepends=True):
            if len(line.strip()) >= 8:
                found.extend(self._line(line, offset))
            offset += len(line)
        return resolve(found)

    def _plugin_values(self, line: str) -> Iterator[tuple[str, set[str]]]:
        """What each plugin finds in ``line``: the plugins that only run their regexes (as
        the base ``analyze_string`` does) through the regexes themselves, without a
        generator per plugin; the others through their own ``analyze_string``."""
        for kind, regexes in self._regexes:
            values: set[str] = set()
            for regex in regexes:
                for match in regex.findall(line):
                    if isinstance(match, tuple):
                        values.update(filter(None, match))
                    elif match:
                        values.add(match)
            yield kind, values
        for kind, plugin in self._own:
            yield kind, set(plugin.analyze_string(line))

    def _exact(self, text: str) -> Iterator[Finding]:
        if self._known is not None:
            for m in self._known.finditer(text):
                yield Finding(m.start(), m.end(), "KNOWN_SECRET", 1.0)

    def _patterns(self, text: str) -> Iterator[Finding]:
        for m in _PEM.finditer(text):
            yield Finding(m.start(), m.end(), "PRIVATE_KEY", 1.0)
        if _LONG_TOKEN.search(text):
            for kind, pattern in _EXTRA_RE:
                for m in pattern.finditer(text):
                    yield Finding(m.start(), m.end(), kind, 0.95)
        for pattern, kind in (
            (_URI_PASSWORD, "BASIC_AUTH_CREDENTIALS"),
            (_CONN_PASSWORD, "SECRET_KEYWORD"),
            (_PROSE_PASSWORD, "SECRET_KEYWORD"),
        ):
            for m in pattern.finditer(text):
                yield Finding(m.start(1), m.end(1), kind, 0.9)
        for m in _BEARER.finditer(text):
            yield Finding(m.start(1), m.end(1), "BEARER_TOKEN", 0.9)
        for m in _TOKEN.finditer(text):
            if looks_random(m.group()):
                yield Finding(m.start(), m.end(), "HIGH_ENTROPY_STRING", 0.6)

    def _line(self, line: str, offset: int) -> Iterator[Finding]:
        """detect-secrets' plugins on one line, their values mapped back to spans."""
        for kind, values in self._plugin_values(line):
            for value in values:
                yield from _spans(line, offset, value, kind)
        if not _KEYWORDS.search(line):
            return  # the keyword plugin's patterns are slow, and all need one of these words
        for groups in (None, CONFIG_DENYLIST_REGEX_TO_GROUP):
            for value in set(self._keyword.analyze_string(line, groups)):
                value = value.strip()
                if groups is not None and _CODE.search(value):
                    continue  # unquoted, "secret: str = Field(" is a type annotation
                if len(value.strip("'\"")) >= 4 and not _NOT_A_VALUE.match(value.strip("'\"`")):
                    yield from _spans(line, offset, value, "SECRET_KEYWORD")


def _spans(line: str, offset: int, value: str, kind: str) -> Iterator[Finding]:
    if not value:
        return
    start = line.find(value)
    while start >= 0:
        yield Finding(offset + start, offset + start + len(value), kind, 0.9)
        start = line.find(value, start + len(value))
