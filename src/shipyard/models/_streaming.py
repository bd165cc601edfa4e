"""What every provider's stream folds into, whatever its wire format.

Each provider's assembler (``openai.ChunkAssembler``, ``anthropic.EventAssembler``) only reads
its own events in ``feed``; the parts those events deliver (text pieces, tool calls keyed by
their position, cumulative token counts) and the final priced ``ModelResponse`` are the same for
all, so they live here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.models.base import AssistantMessage, ModelResponse, ToolCall
from shipyard.models.prices import price


@dataclass
class PartialCall:
    """A tool call as a stream delivers it: id and name first, the JSON arguments in pieces.

    ``default_id`` stands in for an id the stream never sent (some Chat Completions servers
    omit it), so a tool result can still name the call it answers.
    """

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    default_id: str = ""

    def tool_call(self) -> ToolCall:
        """The finished call; no arguments at all mean an empty JSON object."""
        arguments = "".join(self.arguments) or "{}"
        return ToolCall(id=self.id or self.default_id, name=self.name, arguments=arguments)


@dataclass
class StreamAssembly:
    """The parts of one answer as its stream delivers them; :meth:`response` puts them together.

    A server that sends no usage is counted as 0 tokens, never estimated.
    """

    model: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _text: list[str] = field(default_factory=list)
    _calls: dict[int, PartialCall] = field(default_factory=dict)

    def response(self, model_ref: str) -> ModelResponse:
        """The final response, priced for ``model_ref``; calls keep their stream order."""
        calls = tuple(call.tool_call() for _, call in sorted(self._calls.items()))
        return ModelResponse(
            message=AssistantMessage(content="".join(self._text) or None, tool_calls=calls),
            usage=price(model_ref, self.prompt_tokens, self.completion_tokens),
            model=self.model,
            finish_reason=self.finish_reason,
        )
