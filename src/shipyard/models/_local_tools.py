"""How a small local model is given tools: a grammar-constrained pick, then constrained arguments.

SmolLM2-135M does not write ``<tool_call>`` by itself: offered tools in its chat template (with
llama.cpp's lazy tool-call grammar), it answered 21 of 21 labelled prompts in prose
(``python -m bench.tool_choice``). So a request with tools, whose last message is the user's,
takes up to three model calls, each constrained by a JSON schema (llama.cpp turns it into a
grammar, so the answer is always well formed):

1. the pick: the tools' names and descriptions in the system turn, the answer one of the names or
   ``none`` (:func:`pick_body`, :func:`picked`);
2. for a tool: its arguments, constrained by the tool's own parameter schema
   (:func:`arguments_body`); the response is one tool call;
3. for ``none``: the answer in text, streamed, without the tools.

After a tool's result (the last message is a tool message) the model answers in text: one tool
call per user turn, which keeps a 135M model out of call loops.
"""

from __future__ import annotations

import json
from typing import Any

from shipyard.models.base import Message, ModelRequest, SystemMessage, ToolSpec, UserMessage
from shipyard.models.openai import wire_message

NO_TOOL = "none"
_PICK_OVERHEAD_TOKENS = 16
"""``{"tool": ""}`` and its whitespace; the name itself takes at most a token a character."""

# SmolLM2's ChatML template plus the Hermes tool format (tools in the system turn, calls inside
# <tool_call></tool_call>), so that a conversation holding earlier tool calls and results renders.
# Without tools it renders exactly like SmolLM2's own template.
CHATML_TOOLS_TEMPLATE = """\
{%- set default_system = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' -%}
{%- if messages[0]['role'] == 'system' -%}{%- set system = messages[0]['content'] -%}
{%- else -%}{%- set system = default_system -%}{%- endif -%}
{{- '<|im_start|>system\\n' + system -}}
{%- if tools -%}
{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}
{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    'arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n'
    '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- for message in messages -%}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first)
      or (message.role == 'assistant' and not message.tool_calls) -%}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}
{%- elif message.role == 'assistant' -%}
{{- '<|im_start|>assistant' -}}
{%- if message.content -%}{{- '\\n' + message.content -}}{%- endif -%}
{%- for call in message.tool_calls -%}
{%- if call.function is defined -%}{%- set call = call.function -%}{%- endif -%}
{{- '\\n<tool_call>\\n{"name": "' + call.name + '", "arguments": ' + (call.arguments | tojson)
    + '}\\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\\n' -}}
{%- elif message.role == 'tool' -%}
{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' -%}
{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' -}}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}
"""


def wants_a_pick(request: ModelRequest) -> bool:
    """Whether the model should choose a tool: it has some, and the user spoke last."""
    return bool(request.tools) and isinstance(request.messages[-1], UserMessage)


def _split_system(messages: tuple[Message, ...]) -> tuple[str, list[Message]]:
    if messages and isinstance(messages[0], SystemMessage):
        return messages[0].content, list(messages[1:])
    return "", list(messages)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _constrained(system: str, rest: list[Message], schema: dict[str, Any]) -> dict[str, Any]:
    messages = [wire_message(SystemMessage(content=system)), *(wire_message(m) for m in rest)]
    return {
        "messages": messages,
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    }


def pick_body(request: ModelRequest) -> dict[str, Any]:
    """The body of the pick: which tool (or ``none``) the user's last message needs."""
    instructions, rest = _split_system(request.messages)
    listing = "\n".join(f"- {t.name}: {_first_line(t.description)}" for t in request.tools)
    system = (
        f"{instructions}\n\nTools:\n{listing}\n- {NO_TOOL}: no tool is needed; answer directly."
        "\n\nName the tool the user's message needs."
    ).strip()
    names = [t.name for t in request.tools]
    schema = {
        "type": "object",
        "properties": {"tool": {"type": "string", "enum": [*names, NO_TOOL]}},
        "required": ["tool"],
        "additionalProperties": False,
    }
    longest = max(len(name) for name in [*names, NO_TOOL])
    return _constrained(system, rest, schema) | {"max_tokens": _PICK_OVERHEAD_TOKENS + longest}


def picked(content: str | None, tools: tuple[ToolSpec, ...]) -> ToolSpec | None:
    """The tool the pick named; ``None`` for ``none`` or an answer cut short."""
    try:
        name = json.loads(content or "")["tool"]
    except (ValueError, KeyError, TypeError):
        return None
    return next((t for t in tools if t.name == name), None)


def arguments_body(request: ModelRequest, tool: ToolSpec) -> dict[str, Any]:
    """The body that writes ``tool``'s arguments, constrained by its parameter schema."""
    instructions, rest = _split_system(request.messages)
    system = (
        f"{instructions}\n\nCall the tool {tool.name} ({_first_line(tool.description)}) "
        "for the user's message: write its arguments as a JSON object."
    ).strip()
    return _constrained(system, rest, tool.parameters)
