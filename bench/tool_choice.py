"""`python -m bench.tool_choice [--model local:smollm2] [--native]`: how often a model picks the
right tool of the example ``assistant`` (calculator, current_time, notes, or none).

Each labelled prompt of ``tool_choice.json`` is the user's first message to the assistant (its
instructions and tools, temperature 0); the first model call's answer counts: right when it calls
the labelled tool, or calls none where the label is null. Prints one line per prompt, then the
accuracy and the mean latency of a first step.

``--native`` measures the baseline that ``local:`` models had before their grammar-constrained
pick: the tools handed to llama.cpp's own chat template and tool-call parser in one call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from examples.assistant import assistant
from shipyard.models import local
from shipyard.models.base import ModelRequest, SystemMessage, UserMessage, complete
from shipyard.models.openai import chat_request_body
from shipyard.models.registry import create_model

CASES = Path(__file__).with_name("tool_choice.json")


def _request(prompt: str) -> ModelRequest:
    messages = (SystemMessage(content=assistant.instructions), UserMessage(content=prompt))
    return ModelRequest(messages=messages, tools=assistant.tool_specs, temperature=0)


async def _pick(model_ref: str, prompt: str) -> str | None:
    response = await complete(create_model(model_ref), _request(prompt))
    calls = response.message.tool_calls
    return calls[0].name if calls else None


async def _pick_native(prompt: str) -> str | None:
    """One call with the tools in llama.cpp's template (the baseline), capped at 64 tokens."""
    server = await asyncio.to_thread(local._load, "smollm2", 2048, 2)
    body = chat_request_body(_request(prompt), "smollm2") | {"max_tokens": 64}
    answer: dict[str, Any] = await asyncio.to_thread(server.handle_chat_completions, body)
    calls = answer["choices"][0]["message"].get("tool_calls") or []
    return calls[0]["function"]["name"] if calls else None


async def main(model_ref: str, native: bool) -> float:
    cases = json.loads(CASES.read_text())
    right, started = 0, time.perf_counter()
    for case in cases:
        got = await (_pick_native(case["prompt"]) if native else _pick(model_ref, case["prompt"]))
        right += got == case["tool"]
        mark = "ok " if got == case["tool"] else "BAD"
        print(f"{mark} {case['prompt']!r}: expected {case['tool']}, got {got}")
    elapsed = time.perf_counter() - started
    accuracy = right / len(cases)
    label = f"{model_ref} (native tools)" if native else model_ref
    per_step = elapsed / len(cases)
    print(f"{label}: {right}/{len(cases)} right ({accuracy:.0%}), {per_step:.2f} s a step")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local:smollm2")
    parser.add_argument("--native", action="store_true", help="baseline: llama.cpp's own tools")
    args = parser.parse_args()
    asyncio.run(main(args.model, args.native))
