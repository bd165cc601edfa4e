# ruff: noqa: RUF001  (the look-alike letters are the point of this module)
"""Undo the cheap disguises before anything is scored.

Attackers hide instructions from filters with tricks a model still reads: full-width or
mathematical letters (NFKC folds them), zero-width and control characters, invisible Unicode
"tag" characters that spell ASCII, Cyrillic or Greek look-alikes inside Latin words, letters
spaced apart, and payloads in base64, hex, URL-encoding, rot13, leetspeak or reversed. The
``normalize`` function removes the first group; ``decoded_segments`` returns readable text
recovered from the second so the detector can score it too.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from urllib.parse import unquote

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb]"
)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_SPACED = re.compile(r"(?<!\w)(?:\w[ .\-_*|]){3,}\w(?!\w)")
_WHITESPACE = re.compile(r"[ \t]+")
_WORD = re.compile(r"\w+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"(?:(?:0x|\\x)?[0-9a-fA-F]{2}[\s:,]?){8,}")
_URLENC = re.compile(r"(?:%[0-9a-fA-F]{2}){4,}")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_LEET_WORD = re.compile(r"\b(?=\w*[a-zA-Z])(?=[\w@$]*[013457@$])[\w@$]{3,20}\b")

# Cyrillic and Greek letters drawn like Latin ones: folded only inside words that mix scripts,
# so genuine Russian or Greek text is left as written.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
        "ԛ": "q", "ԝ": "w", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H",
        "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S",
        "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
        "ı": "i", "ℓ": "l", "ɡ": "g", "ɑ": "a",
    }
)  # fmt: skip
_CONFUSABLE_CHARS = frozenset(chr(c) for c in _CONFUSABLES)
_COMMON = frozenset(
    [
        "the",
        "you",
        "and",
        "to",
        "of",
        "a",
        "is",
        "are",
        "your",
        "all",
        "ignore",
        "previous",
        "instructions",
        "instruction",
        "now",
        "system",
        "prompt",
        "tell",
        "me",
        "say",
        "print",
        "reveal",
        "what",
        "this",
        "that",
        "with",
        "for",
        "from",
        "rules",
    ]
)


def _untag(match: re.Match[str]) -> str:
    return " " + "".join(chr(ord(c) - 0xE0000) for c in match.group()) + " "


def _fold_word(match: re.Match[str]) -> str:
    word = match.group()
    if any(c in _CONFUSABLE_CHARS for c in word) and any("a" <= c.lower() <= "z" for c in word):
        return word.translate(_CONFUSABLES)
    return word


def _unspace(match: re.Match[str]) -> str:
    return re.sub(r"[ .\-_*|]", "", match.group())


def normalize(text: str) -> str:
    """``text`` with compatibility forms folded, invisible characters removed (tag characters
    become the ASCII they hide), look-alike letters in mixed-script words made Latin,
    stacked combining marks dropped, and s p a c e d letters joined."""
    text = _TAGS.sub(_untag, text)
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    marks = sum(1 for c in text if unicodedata.category(c) == "Mn") if not text.isascii() else 0
    if marks * 10 > len(text):  # "zalgo" text: the marks hide the words
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    if not text.isascii():
        text = _WORD.sub(_fold_word, text)
    text = _SPACED.sub(_unspace, text)
    return _WHITESPACE.sub(" ", text)


def _readable(raw: bytes) -> str | None:
    try:
        out = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in out if c.isprintable() or c in "\n\t")
    letters = sum(1 for c in out if c.isalpha())
    if len(out) < 6 or printable < 0.95 * len(out) or letters < 0.5 * len(out):
        return None
    return out


def _b64(segment: str) -> str | None:
    if segment.isalnum() and (segment.isdigit() or segment.isalpha()):
        return None  # a plain word or number, not an encoding
    padded = segment + "=" * (-len(segment) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(raw)


def _hex(segment: str) -> str | None:
    digits = re.sub(r"0x|\\x|[\s:,]", "", segment)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _readable(bytes.fromhex(digits))
    except ValueError:
        return None


def _common_ratio(text: str) -> float:
    words = _WORD.findall(text.lower())
    return sum(1 for w in words if w in _COMMON) / len(words) if words else 0.0


def decoded_segments(text: str, limit: int = 8) -> list[str]:
    """Readable text hidden in ``text`` (already normalised): base64, hex and URL-encoded runs
    that decode to mostly letters, and the whole text un-rot13'd, reversed or de-leeted when
    that reads more like English. At most ``limit`` segments, so a crafted text stays cheap."""
    found: list[str] = []
    for match in _BASE64.finditer(text):
        if (decoded := _b64(match.group())) is not None:
            found.append(decoded)
    for match in _HEX.finditer(text):
        if (decoded := _hex(match.group())) is not None:
            found.append(decoded)
    if "%" in text and _URLENC.search(text):
        found.append(unquote(text))
    if text.isascii() and any(c.isalpha() for c in text):
        base = _common_ratio(text)
        for variant in (codecs.encode(text, "rot13"), text[::-1]):
            if _common_ratio(variant) > max(0.12, 2 * base):
                found.append(variant)
    leet = _LEET_WORD.findall(text)
    if len(leet) >= 3:  # one "mp3" or "v2" is not leetspeak; a sentence of it is
        found.append(_LEET_WORD.sub(lambda m: m.group().translate(_LEET), text))
    return found[:limit]
