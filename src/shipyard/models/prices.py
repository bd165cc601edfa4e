"""Prices per million tokens, by model reference; a model without a price costs 0.

The table ships in the package (``prices.json``: list prices of the common providers' current
models). An operator extends or overrides it without code: ``SHIPYARD_PRICES_FILE`` names a
file of the same format, read when the server starts (``load_prices``); code calls
``register_price`` (negotiated rates, a self-hosted model's internal cost, a test's model).

A reference is looked up as given (its ``?options`` ignored), then by its bare model name, so
``openai-compatible``-style references to a known model (a gateway serving ``gpt-4.1-mini``)
are priced too.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import ConfigError
from shipyard.models.base import Message, ModelRequest, Usage

_Usd = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class ModelPrice(BaseModel):
    """One entry of a prices file: USD per million input (prompt) and output tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: _Usd
    output: _Usd


PRICES: dict[str, tuple[float, float]] = {}
"""(input USD / 1M tokens, output USD / 1M tokens) by model reference."""
_BY_NAME: dict[str, tuple[float, float]] = {}
CHARS_PER_TOKEN = 4
"""The prompt estimate of ``estimate``: about four characters a token, rounded up."""


def read_prices(text: str, source: str) -> dict[str, tuple[float, float]]:
    """The table of a prices file's JSON text (keys starting with ``_`` are comments);
    ``ConfigError`` naming ``source`` and the entry when it is malformed."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"prices file {source} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"prices file {source} must hold an object of model references")
    table: dict[str, tuple[float, float]] = {}
    for model, entry in raw.items():
        if model.startswith("_"):
            continue
        if ":" not in model:
            raise ConfigError(f"prices file {source}: {model!r} is not a provider:model reference")
        try:
            found = ModelPrice.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(f"prices file {source}: bad price for {model!r}: {exc}") from exc
        table[model] = (found.input, found.output)
    return table


def load_prices(path: str | Path) -> int:
    """Add (or override) the prices of an operator's file; how many it holds."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the prices file {file}: {exc}") from exc
    table = read_prices(text, str(file))
    for model, (per_in, per_out) in table.items():
        register_price(model, per_in, per_out)
    return len(table)


def register_price(model: str, input_per_million: float, output_per_million: float) -> None:
    """Price ``model`` (``provider:model``) in USD per million input and output tokens."""
    checked = ModelPrice(input=input_per_million, output=output_per_million)
    ref = model.split("?", 1)[0]
    PRICES[ref] = _BY_NAME[ref.partition(":")[2]] = (checked.input, checked.output)


def price_of(model: str) -> tuple[float, float] | None:
    """``model``'s (input, output) USD per million tokens, or None if it has no price."""
    ref = model.split("?", 1)[0]
    found = PRICES.get(ref)
    return found if found is not None else _BY_NAME.get(ref.partition(":")[2])


def price(model: str, prompt_tokens: int, completion_tokens: int) -> Usage:
    """Usage with its cost; ``model`` is ``provider:model`` (query options are ignored)."""
    per_in, per_out = price_of(model) or (0.0, 0.0)
    cost = (prompt_tokens * per_in + completion_tokens * per_out) / 1_000_000
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=round(cost, 10)
    )


def estimate(model: str, request: ModelRequest, output_tokens: int) -> Usage:
    """A call's worst case before it is made: its prompt estimated from its text, and the
    request's ``max_tokens`` (else ``output_tokens``) as its answer."""
    chars = sum(_chars(m) for m in request.messages)
    chars += sum(len(t.name) + len(t.description) + len(str(t.parameters)) for t in request.tools)
    prompt = math.ceil(chars / CHARS_PER_TOKEN) + 4 * len(request.messages)
    return price(model, prompt, request.max_tokens or output_tokens)


def _chars(message: Message) -> int:
    text = message.content or ""
    calls = getattr(message, "tool_calls", ())
    return len(text) + sum(len(c.name) + len(c.arguments) for c in calls)


def _load_shipped() -> None:
    text = resources.files("shipyard.models").joinpath("prices.json").read_text(encoding="utf-8")
    for model, (per_in, per_out) in read_prices(text, "shipyard/models/prices.json").items():
        register_price(model, per_in, per_out)


_load_shipped()
