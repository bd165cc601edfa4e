"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from shipyard.api.fields import FutureDatetime, Metadata, RunInputField, Text
from shipyard.models.base import Message, ToolSpec, Usage
from shipyard.runtime.invoke import RunOutcome
from shipyard.stores.records.base import RunRecord, SessionRecord, TaskRecord, TaskTransition
from shipyard.telemetry.events import Event


class InvokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: RunInputField = Field(
        description="The user's text, or the whole conversation as chat messages.",
        min_length=1,
    )
    metadata: Metadata = Field(default_factory=dict, description="Stored with the run.")


class InvokeResponse(BaseModel):
    run_id: str
    agent: str
    status: str = "succeeded"
    output: str
    usage: Usage
    trace_id: str
    latency_ms: float
    session_id: str | None = None

    @classmethod
    def of(cls, outcome: RunOutcome, session_id: str | None = None) -> InvokeResponse:
        return cls(
            run_id=outcome.run_id,
            agent=outcome.agent,
            output=outcome.answer,
            usage=outcome.usage,
            trace_id=outcome.trace_id,
            latency_ms=outcome.latency_ms,
            session_id=session_id,
        )


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: Text = Field(min_length=1)
    metadata: Metadata = Field(default_factory=dict)
    ttl_seconds: float | None = Field(
        None, gt=0, le=30 * 86400, description="Idle time before it expires (sliding)."
    )
    on_busy: Literal["reject", "enqueue", "interrupt"] = Field(
        "reject",
        description="What a turn does while another is running: reject it (409), enqueue it "
        "(wait, bounded by SHIPYARD_SESSION_QUEUE_S), or interrupt the running one.",
    )


class SessionInfo(BaseModel):
    id: str
    agent: str
    metadata: dict[str, Any]
    ttl_seconds: float
    created_at: datetime

    @classmethod
    def of(cls, record: SessionRecord) -> SessionInfo:
        return cls(
            id=record.id,
            agent=record.agent,
            metadata=record.metadata,
            ttl_seconds=record.ttl_s,
            created_at=record.created_at,
        )


class SessionDetail(SessionInfo):
    on_busy: str
    turns: int
    history: list[Message]


class SessionPage(BaseModel):
    sessions: list[SessionInfo]
    next_cursor: str | None = None


class TurnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: RunInputField = Field(
        description="The user's next message, or several messages to add.", min_length=1
    )


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


class RevealedPseudonyms(BaseModel):
    """The originals behind a run's tokens (``pii:reveal``)."""

    run_id: str
    session_id: str | None = None
    tokens: dict[str, str]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class SubmitTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: Text = Field(min_length=1)
    input: RunInputField = Field(min_length=1)
    metadata: Metadata = Field(default_factory=dict)
    session_id: Text | None = Field(None, description="Run the task as a turn of this session.")
    webhook_url: AnyHttpUrl | None = None
    idempotency_key: Text | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The same key (per tenant) with the same body returns the same task; with "
        "another body it answers 409 idempotency_conflict.",
    )
    priority: int = Field(0, ge=0, le=9, description="Higher runs first among waiting tasks.")
    deadline: FutureDatetime | None = Field(
        None,
        description="A task not started by then fails with deadline_exceeded; one already "
        "past is refused (422).",
    )


class TaskAccepted(BaseModel):
    task_id: str
    status: str
    links: dict[str, str]


class TaskView(BaseModel):
    id: str
    agent: str
    status: str
    session_id: str | None
    priority: int
    attempts: int
    run_id: str | None
    output: str | None
    error: dict[str, Any] | None
    usage: Usage
    created_at: datetime
    updated_at: datetime
    transitions: list[TaskTransition] | None = None

    @classmethod
    def of(cls, task: TaskRecord, transitions: list[TaskTransition] | None = None) -> TaskView:
        return cls(
            id=task.id,
            agent=task.agent,
            status=task.status,
            session_id=task.session_id,
            priority=task.priority,
            attempts=task.attempts,
            run_id=task.run_id,
            output=task.output,
            error=task.error,
            usage=Usage(
                prompt_tokens=task.prompt_tokens,
                completion_tokens=task.completion_tokens,
                cost_usd=task.cost_usd,
            ),
            created_at=task.created_at,
            updated_at=task.updated_at,
            transitions=transitions,
        )


class TaskPage(BaseModel):
    tasks: list[TaskView]
    next_cursor: str | None = None
