"""The field types every request is validated with: what the API accepts, every backend can
store and every list can read back (``shipyard.stores.storable``). A refused value answers 422
``invalid_input`` naming the field, before anything runs or is stored.

- ``Text``: every string the API takes — body strings, path and query parameters, headers that
  carry ids — free of NUL and of lone surrogates.
- ``Metadata``: a JSON object of storable values, nested at most ``METADATA_MAX_DEPTH`` levels,
  at most ``METADATA_MAX_BYTES`` serialised.
- ``RunInputField``: a run's input (text or chat messages, a message may reference an
  artifact) whose every string is ``Text``.
- ``Int32``/``Int64`` bounds: integers that fit the column they are compared with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, AwareDatetime, Field
from pydantic_core import PydanticCustomError

from shipyard.agents.references import InputMessage
from shipyard.models.base import Message
from shipyard.stores.storable import (
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    StorableText,
    storable_value,
)

INT32_MAX = 2**31 - 1
"""The largest value of an ``INTEGER`` column (an event's ``seq``)."""
MAX_SECONDS = 10 * 366 * 86400
"""The longest duration a query takes in seconds (ten years)."""


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    storable_value(value)
    size = len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    if size > METADATA_MAX_BYTES:
        raise PydanticCustomError(
            "metadata_too_large",
            "metadata takes {size} bytes as JSON, over the limit of {limit}",
            {"size": size, "limit": METADATA_MAX_BYTES},
        )
    return value


def _run_input(value: str | list[Message]) -> str | list[Message]:
    storable_value(value)
    return value


def _future(value: datetime) -> datetime:
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "date out of range") from None
    if value <= datetime.now(UTC):
        raise PydanticCustomError("datetime_future", "must be in the future")
    return value


Text = StorableText
"""A string every backend can store (``stores.storable.StorableText``)."""

Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_metadata),
    Field(
        description=f"A JSON object stored as is: at most {METADATA_MAX_DEPTH} levels deep and "
        f"{METADATA_MAX_BYTES // 1024} KiB as JSON; text without NUL or lone surrogates; finite "
        "numbers; integers within 64 bits."
    ),
]

RunInputField = Annotated[str | list[InputMessage], AfterValidator(_run_input)]
"""A run's input: text, or chat messages whose every string is storable (a user message may
reference an artifact instead: ``agents.references``)."""

FutureDatetime = Annotated[AwareDatetime, AfterValidator(_future)]
"""A time zone aware moment that has not passed yet (normalised to UTC)."""
