"""``servable``: what no JSON answer can carry and no store can hold is replaced, the rest kept
as is (the same objects, so the usual case costs no copy)."""

from __future__ import annotations

from typing import Any

from shipyard.models.base import AssistantMessage
from shipyard.stores.storable import TOO_DEEP, servable, without_lone_surrogates


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_lone_surrogates_become_u_fffd_and_pairs_their_character() -> None:
    assert servable("a\ud800b") == "a\ufffdb"
    assert servable("\ud83d\ude00 \udfff") == "\U0001f600 \ufffd"
    assert servable({"k\udc00": ["x", "é\ud800", 1, None]}) == {
        "k\ufffd": ["x", "é\ufffd", 1, None]
    }
    assert servable("a\x00b") == "a\x00b"  # JSON carries a NUL


def test_what_needs_no_change_is_returned_as_is() -> None:
    value = {"a": ["b", {"c": 1.5, "d": True}], "e": ("é", None)}
    assert servable(value) is value
    assert without_lone_surrogates(value) is value
    message = AssistantMessage(content="fine")
    assert servable(message) is message


def test_models_numbers_and_depth() -> None:
    message = servable(AssistantMessage(content="x\ud800"))
    assert isinstance(message, AssistantMessage) and message.content == "x\ufffd"
    assert servable({"n": float("nan"), "i": float("-inf")}) == {"n": None, "i": None}
    cut = servable(nested(300))
    levels = 0
    while isinstance(cut, dict):
        cut, levels = cut["a"], levels + 1
    assert (levels, cut) == (200, TOO_DEEP)
    assert without_lone_surrogates(("x\ud800", [AssistantMessage(content="\udfff")])) == (
        "x\ufffd",
        [AssistantMessage(content="\ufffd")],
    )
