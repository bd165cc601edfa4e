"""Prices per million tokens, by model reference. Unknown models cost 0."""

from __future__ import annotations

from shipyard.models.base import Usage

# (input USD / 1M tokens, output USD / 1M tokens). Public list prices; override with
# ``register_price`` for negotiated rates or self-hosted models with an internal cost.
PRICES: dict[str, tuple[float, float]] = {
    "openai:gpt-4.1": (2.00, 8.00),
    "openai:gpt-4.1-mini": (0.40, 1.60),
    "openai:gpt-4.1-nano": (0.10, 0.40),
    "openai:gpt-4o": (2.50, 10.00),
    "openai:gpt-4o-mini": (0.15, 0.60),
    "openai:o4-mini": (1.10, 4.40),
    "anthropic:claude-opus-4-1": (15.00, 75.00),
    "anthropic:claude-sonnet-4-5": (3.00, 15.00),
    "anthropic:claude-haiku-4-5": (1.00, 5.00),
    "anthropic:claude-3-5-haiku-latest": (0.80, 4.00),
    "local:smollm2": (0.0, 0.0),
    # embeddings: input tokens only
    "openai:text-embedding-3-small": (0.02, 0.0),
    "openai:text-embedding-3-large": (0.13, 0.0),
    "openai:text-embedding-ada-002": (0.10, 0.0),
}


def register_price(model: str, input_per_million: float, output_per_million: float) -> None:
    PRICES[model] = (input_per_million, output_per_million)


def price(model: str, prompt_tokens: int, completion_tokens: int) -> Usage:
    """Usage with its cost; ``model`` is ``provider:model`` (query options are ignored)."""
    per_in, per_out = PRICES.get(model.split("?", 1)[0], (0.0, 0.0))
    cost = (prompt_tokens * per_in + completion_tokens * per_out) / 1_000_000
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=round(cost, 10)
    )
