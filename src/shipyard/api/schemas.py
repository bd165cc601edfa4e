"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shipyard.models.base import Message, ToolSpec, Usage
from shipyard.stores.records.base import RunRecord
from shipyard.telemetry.events import Event


class InvokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[Message] = Field(
        description="The user's text, or the whole conversation as chat messages.",
        min_length=1,
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Stored with the run.")


class InvokeResponse(BaseModel):
    run_id: str
    agent: str
    status: str = "succeeded"
    output: str
    usage: Usage
    trace_id: str
    latency_ms: float


class AgentInfo(BaseModel):
    name: str
    description: str
    tools: list[ToolSpec]


class AgentList(BaseModel):
    agents: list[AgentInfo]


class RunPage(BaseModel):
    runs: list[RunRecord]
    next_cursor: str | None = None


class EventList(BaseModel):
    events: list[Event]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
