"""What every backend can store and read back: the one definition, for the API's edge (which
refuses the rest with 422) and for the stores' reads (which skip a row an older version wrote).

Text: Unicode code points that UTF-8 can encode (no lone surrogate, ``"\\ud800"``, which a JSON
body can spell), without NUL (``"\\u0000"``), which PostgreSQL's text refuses. Numbers: finite
(JSON has no NaN or Infinity, PostgreSQL's ``json`` refuses them), integers within 64 bits (read
back exactly). Nesting: bounded (the JSON serialiser stops at 255 levels; metadata takes
``METADATA_MAX_DEPTH``).
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel
from pydantic_core import PydanticCustomError, PydanticSerializationError, to_json

METADATA_MAX_DEPTH = 32
"""Levels of nesting a ``metadata`` object may have (the object itself is level 1)."""
METADATA_MAX_BYTES = 64 * 1024
"""The most a ``metadata`` object may take, serialised as compact JSON."""
READ_MAX_DEPTH = 200
"""Nesting a stored value may have and still be served (the responses add a few levels)."""

Problem = tuple[str, str]
"""``(path, reason)``: where in a value the first unstorable part is, and why."""


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or ``None``."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not a Unicode character)"
    return None


def value_problem(value: Any, *, max_depth: int = READ_MAX_DEPTH, path: str = "") -> Problem | None:
    """The first part of a JSON-like value (dicts, lists, strings, numbers, models) that a store
    cannot hold, or ``None``; ``path`` names it in the dotted form of validation errors."""
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            reason = text_problem(item)
            if reason is not None:
                return where, reason
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where, "is not a finite number"
        elif isinstance(item, int):
            if not -(2**63) <= item < 2**63:
                return where, "is an integer beyond 64 bits"
        elif isinstance(item, dict | list | tuple | BaseModel):
            if depth > max_depth:
                return where, f"is nested deeper than {max_depth} levels"
            stack.extend(_children(item, where, depth + 1))
    return None


def _children(item: Any, where: str, depth: int) -> list[tuple[Any, str, int]]:
    def at(key: object) -> str:
        return f"{where}.{key}" if where else str(key)

    if isinstance(item, BaseModel):
        item = dict(item)
    if isinstance(item, dict):
        found: list[tuple[Any, str, int]] = []
        for key, child in item.items():
            if isinstance(key, str):
                found.append((key, at(_printable(key)), depth))  # a bad key is reported as such
            found.append((child, at(_printable(key)), depth))
        return found
    return [(child, at(index), depth) for index, child in enumerate(item)]


def _printable(key: object) -> str:
    """A key as it can appear in an error message (which must itself be storable JSON)."""
    text = str(key)
    if text_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


def storable_text(value: str) -> str:
    """A pydantic validator: ``value``, or a ``unstorable_text`` error saying what is wrong."""
    reason = text_problem(value)
    if reason is not None:
        raise PydanticCustomError("unstorable_text", "text {reason}", {"reason": reason})
    return value


def storable_value(value: Any, *, max_depth: int = METADATA_MAX_DEPTH) -> Any:
    """A pydantic validator: ``value``, or a ``unstorable_value`` error naming where in it the
    first unstorable part is."""
    problem = value_problem(value, max_depth=max_depth)
    if problem is not None:
        where, reason = problem
        raise PydanticCustomError(
            "unstorable_value",
            "{where} {reason}",
            {"where": f"value at {where}" if where else "value", "reason": reason},
        )
    return value


StorableText = Annotated[str, AfterValidator(storable_text)]
"""A string every backend can store: no NUL (``\\u0000``), no lone surrogate (``\\ud800``)."""


TOO_DEEP = f"(nested deeper than {READ_MAX_DEPTH} levels: not served)"
"""What ``servable`` puts in place of a value nested too deep."""


def servable(value: Any, *, max_depth: int = READ_MAX_DEPTH) -> Any:
    """``value`` (text, numbers, dicts, lists, models) with what no JSON answer can carry and no
    store can hold replaced: a lone surrogate by U+FFFD (a surrogate pair becomes the character
    it spells), a number that is not finite by ``None``, a dict or list nested deeper than
    ``max_depth`` by ``TOO_DEEP``. ``value`` itself when it has none of them (the usual case).
    NUL is kept: JSON carries it (PostgreSQL's text does not; the API refuses it as input)."""
    return _servable(value, 1, max_depth)


def without_lone_surrogates(value: Any) -> Any:
    """``servable(value)`` if the JSON serialiser refuses ``value`` (a lone surrogate in its
    text, nesting past its limit), else ``value`` itself: the rule for what a run produces, with
    one fast pass of the serialiser (about 1 µs for an event) in the usual case."""
    try:
        to_json(value)
    except PydanticSerializationError:
        return servable(value)
    return value


def _servable(value: Any, depth: int, max_depth: int) -> Any:
    if type(value) in _PLAIN or (type(value) is str and value.isascii()):
        return value  # the usual case, first
    if isinstance(value, str):
        if _utf8(value):
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, dict | list | tuple | BaseModel):
        return value
    if depth > max_depth:
        return TOO_DEEP
    if isinstance(value, BaseModel):
        fields = dict(value)
        clean = _servable(fields, depth, max_depth)
        return value if clean is fields else value.model_copy(update=clean)
    if isinstance(value, dict):
        return _servable_dict(value, depth, max_depth)
    children = [_servable(child, depth + 1, max_depth) for child in value]
    if all(new is old for new, old in zip(children, value, strict=True)):
        return value
    return type(value)(children)


_PLAIN = frozenset({int, bool, type(None)})


def _servable_dict(value: dict[Any, Any], depth: int, max_depth: int) -> dict[Any, Any]:
    """``value``, or a copy from its first key or value that had to change."""
    copy: dict[Any, Any] | None = None
    for index, (key, child) in enumerate(value.items()):
        new_key = _servable(key, depth, max_depth)
        new_child = _servable(child, depth + 1, max_depth)
        if copy is None and (new_key is not key or new_child is not child):
            copy = dict(itertools.islice(value.items(), index))
        if copy is not None:
            copy[new_key] = new_child
    return value if copy is None else copy


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
