"""Input that references an artifact instead of carrying it.

A run's input (invoke, session turn, task) may hold ``{"role": "user", "artifact_id":
"art_..."}``: a user message whose text is an uploaded artifact's (``POST /v1/artifacts``). The
run pipeline reads it at the start of the run (``runtime.references``); the run's record keeps
the reference, not the text.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator
from pydantic.json_schema import SkipJsonSchema

from shipyard.models.base import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolMessage,
    UserMessage,
)

__all__ = ["ArtifactInput", "InputMessage", "references"]


class ArtifactInput(UserMessage):
    """A user message whose text is the artifact ``artifact_id`` of the run's tenant.

    A ``UserMessage`` until the run reads it, so every input type takes it; its ``content``
    stays empty and is never serialised (the record shows the reference)."""

    content: SkipJsonSchema[str] = Field("", exclude=True)  # not in the API's schema either
    artifact_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")

    @model_validator(mode="before")
    @classmethod
    def _no_content(cls, value: Any) -> Any:
        if isinstance(value, dict) and "content" in value:
            raise ValueError("a message with artifact_id takes its content from the artifact")
        return value


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):  # the role may be left out of a reference, as its schema says
        role = value.get("role")
        return "artifact" if "artifact_id" in value and role in (None, "user") else role
    if isinstance(value, ArtifactInput):
        return "artifact"
    return getattr(value, "role", None)


InputMessage = Annotated[
    Annotated[SystemMessage, Tag("system")]
    | Annotated[UserMessage, Tag("user")]
    | Annotated[ArtifactInput, Tag("artifact")]
    | Annotated[AssistantMessage, Tag("assistant")]
    | Annotated[ToolMessage, Tag("tool")],
    Discriminator(_kind),
]
"""A message of a run's input: a chat message, or a user message that references an artifact."""


def references(input: str | list[Message]) -> bool:
    """Whether ``input`` references an artifact (cheap: a text input never does)."""
    return not isinstance(input, str) and any(isinstance(m, ArtifactInput) for m in input)
