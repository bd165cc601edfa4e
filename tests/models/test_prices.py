"""The price table: shipped for the common providers, extended by an operator's file without
code, by ``register_price``, and a call's worst case estimated before it is made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.errors import ConfigError
from shipyard.models import prices
from shipyard.models.base import ModelRequest, UserMessage


@pytest.fixture(autouse=True)
def restore_prices() -> Iterator[None]:
    before, by_name = dict(prices.PRICES), dict(prices._BY_NAME)
    yield
    prices.PRICES.clear()
    prices.PRICES.update(before)
    prices._BY_NAME.clear()
    prices._BY_NAME.update(by_name)


def test_the_shipped_table_covers_the_common_providers() -> None:
    providers = {ref.partition(":")[0] for ref in prices.PRICES}
    assert {"openai", "anthropic", "google", "mistral"} <= providers
    usage = prices.price("openai:gpt-4.1-mini", 1_000_000, 1_000_000)
    assert usage.cost_usd == pytest.approx(0.40 + 1.60)
    assert prices.price("anthropic:claude-sonnet-4-5?temperature=0", 2000, 1000).cost_usd == (
        pytest.approx((2000 * 3.0 + 1000 * 15.0) / 1e6)
    )


def test_a_model_is_found_by_its_bare_name_through_another_provider() -> None:
    assert prices.price_of("openai-compatible:gpt-4.1-mini") == (0.40, 1.60)
    assert prices.price("unknown:model", 1000, 1000).cost_usd == 0.0


def test_an_operator_file_extends_and_overrides_the_table(tmp_path: Path) -> None:
    file = tmp_path / "prices.json"
    file.write_text(
        '{"_comment": "ours", "openai:gpt-4.1": {"input": 1.0, "output": 4.0},'
        ' "vllm:our-llama": {"input": 0.02, "output": 0.02}}'
    )
    assert prices.load_prices(file) == 2
    assert prices.price_of("openai:gpt-4.1") == (1.0, 4.0)
    assert prices.price("vllm:our-llama", 500_000, 500_000).cost_usd == pytest.approx(0.02)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"no-provider": {"input": 1, "output": 1}}',
        '{"a:b": {"input": -1, "output": 1}}',
        '{"a:b": {"input": 1}}',
        '{"a:b": {"input": 1, "output": 1, "cached": 0}}',
    ],
)
def test_a_malformed_prices_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    file = tmp_path / "prices.json"
    file.write_text(text)
    with pytest.raises(ConfigError, match="prices file"):
        prices.load_prices(file)


def test_a_missing_prices_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        prices.load_prices(tmp_path / "absent.json")


def test_register_price_checks_its_numbers() -> None:
    prices.register_price("scripted:priced", 1.0, 2.0)
    assert prices.price("scripted:priced", 10, 10).cost_usd == pytest.approx(30 / 1e6)
    with pytest.raises(ValueError):
        prices.register_price("scripted:priced", -1.0, 2.0)


def test_the_estimate_counts_the_prompt_and_the_longest_answer() -> None:
    prices.register_price("scripted:priced", 1_000_000, 1_000_000)  # one dollar a token
    request = ModelRequest(messages=(UserMessage(content="x" * 40),), max_tokens=7)
    worst = prices.estimate("scripted:priced", request, output_tokens=1000)
    assert worst.completion_tokens == 7
    assert worst.prompt_tokens == 10 + 4
    assert worst.cost_usd == pytest.approx(21.0)
    unbounded = ModelRequest(messages=(UserMessage(content="hi"),))
    assert prices.estimate("scripted:priced", unbounded, output_tokens=50).completion_tokens == 50
