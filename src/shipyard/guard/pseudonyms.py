"""Reversible pseudonymisation: personal data replaced by stable tokens, and put back.

A policy rule with the action ``pseudonymize`` replaces each finding by a token such as
``<PERSON_1>`` (the finding's type and a number per type) before the model reads the text, so
the provider never receives the value. The same value always gets the same token within one
``Pseudonyms`` mapping — a run's, or a session's across its turns — so the model can still
tell two people apart and refer back to them. ``restore`` puts the originals back in text the
caller receives; ``Restorer`` does it on streamed deltas without ever releasing part of a
token. The mapping is kept in the state store by ``runtime.pseudonyms`` and is never logged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

TOKEN = re.compile(r"<([A-Z][A-Z0-9_]*)_([1-9][0-9]*)>")
"""A token: ``<TYPE_n>``."""
_PARTIAL = re.compile(r"<[A-Z0-9_]*$")
"""The end of a text that may be the beginning of a token."""
TOKEN_MAX = 64
"""The longest token a ``Restorer`` holds back (a type name of up to ~55 characters)."""


class Pseudonyms:
    """One mapping between originals and tokens (a run's, or a session's).

    ``changed`` says whether a token was added since the mapping was loaded (so that it is
    saved only then)."""

    __slots__ = ("_by_token", "_by_value", "_counts", "changed")

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._by_token: dict[str, str] = {}
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.changed = False
        self.merge(tokens or {})

    def __len__(self) -> int:
        return len(self._by_token)

    def merge(self, tokens: Mapping[str, str]) -> None:
        """Add ``tokens`` (token -> original), as loaded from the store."""
        for token, value in tokens.items():
            found = TOKEN.fullmatch(token)
            if found is None:
                continue
            type_, number = found.group(1), int(found.group(2))
            self._by_token[token] = value
            self._by_value[(type_, value)] = token
            self._counts[type_] = max(self._counts.get(type_, 0), number)

    def token(self, type_: str, value: str) -> str:
        """The token of ``value`` (found as ``type_``): the one it already has, else a new one."""
        kind = re.sub(r"[^A-Z0-9_]", "_", type_.upper()) or "PII"
        if not kind[0].isalpha():
            kind = f"PII_{kind}"
        known = self._by_value.get((kind, value))
        if known is not None:
            return known
        number = self._counts.get(kind, 0) + 1
        token = f"<{kind}_{number}>"
        self._counts[kind] = number
        self._by_token[token] = value
        self._by_value[(kind, value)] = token
        self.changed = True
        return token

    def restore(self, text: str) -> str:
        """``text`` with each known token replaced by its original (unknown ones stay)."""
        if not self._by_token or "<" not in text:
            return text
        return TOKEN.sub(lambda m: self._by_token.get(m.group(0), m.group(0)), text)

    def restore_data(self, data: Any) -> Any:
        """``restore`` on every string inside JSON-like ``data`` (tool arguments, event data)."""
        if isinstance(data, str):
            return self.restore(data)
        if isinstance(data, dict):
            return {key: self.restore_data(value) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return [self.restore_data(value) for value in data]
        return data

    def restore_json(self, text: str) -> str:
        """``restore`` inside the strings of a JSON document (a tool call's arguments), so an
        original with quotes or backslashes keeps the document valid; other text as ``restore``."""
        if not self._by_token or "<" not in text:
            return text
        try:
            data = json.loads(text)
        except ValueError:
            return self.restore(text)
        return json.dumps(self.restore_data(data), ensure_ascii=False)

    def tokens(self) -> dict[str, str]:
        """Token -> original (what ``pii:reveal`` shows)."""
        return dict(self._by_token)

    def dumps(self) -> bytes:
        return json.dumps(self._by_token, ensure_ascii=False).encode()

    @classmethod
    def loads(cls, raw: bytes | None) -> Pseudonyms:
        """The mapping stored as ``dumps`` made it (None or a damaged value: an empty one)."""
        if not raw:
            return cls()
        try:
            found = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(found, dict):
            return cls()
        return cls({k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)})


class Restorer:
    """Restores tokens in streamed text: each piece is released restored, except a tail that
    may be the start of a token still arriving (at most ``TOKEN_MAX`` characters), so neither
    part of a token nor part of an original leaves before the whole token is known."""

    __slots__ = ("_held", "_pseudonyms")

    def __init__(self, pseudonyms: Pseudonyms) -> None:
        self._pseudonyms = pseudonyms
        self._held = ""

    def feed(self, text: str) -> str:
        """What may be released of the held text plus ``text``, restored."""
        text = self._held + text
        partial = _PARTIAL.search(text, max(0, len(text) - TOKEN_MAX))
        cut = partial.start() if partial is not None else len(text)
        self._held = text[cut:]
        return self._pseudonyms.restore(text[:cut])

    def flush(self) -> str:
        """The held tail, restored (the stream's text has ended)."""
        text, self._held = self._held, ""
        return self._pseudonyms.restore(text)


__all__ = ["TOKEN", "Pseudonyms", "Restorer"]
