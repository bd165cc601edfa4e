"""Shipyard: serve AI agents in production — stateless runs, sessions and tasks.

Everything a user imports lives here::

    from shipyard import Agent, App, tool
"""

from shipyard._version import __version__
from shipyard.agents.agent import Agent, AgentLike, FunctionAgent, agent
from shipyard.agents.context import ContextBudget, RunContext, RunInput, RunRequest, RunResult
from shipyard.agents.delegate import (
    DelegatedTask,
    agent_tool,
    call_agent,
    submit_task,
    task_tool,
)
from shipyard.agents.memory import Memory
from shipyard.agents.references import ArtifactInput
from shipyard.agents.tool import Tool, tool
from shipyard.app import App
from shipyard.config import Settings
from shipyard.errors import (
    ConfigError,
    EgressDenied,
    ModelError,
    ModelRetry,
    RunTimeout,
    ShipyardError,
)
from shipyard.guard.base import Finding
from shipyard.guard.policy import GuardPolicy, GuardRule
from shipyard.guard.rules import EgressRules
from shipyard.models.base import (
    AssistantMessage,
    ChatModel,
    Message,
    ModelRequest,
    ModelResponse,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)
from shipyard.models.wrapper import WrapperModel
from shipyard.runtime.hooks import RunHook
from shipyard.telemetry.eventlog import Redactor, set_redactor
from shipyard.telemetry.events import Event, EventProcessor

__all__ = [
    "Agent",
    "AgentLike",
    "App",
    "ArtifactInput",
    "AssistantMessage",
    "ChatModel",
    "ConfigError",
    "ContextBudget",
    "DelegatedTask",
    "EgressDenied",
    "EgressRules",
    "Event",
    "EventProcessor",
    "Finding",
    "FunctionAgent",
    "GuardPolicy",
    "GuardRule",
    "Memory",
    "Message",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelRetry",
    "Redactor",
    "RunContext",
    "RunHook",
    "RunInput",
    "RunRequest",
    "RunResult",
    "RunTimeout",
    "Settings",
    "ShipyardError",
    "SystemMessage",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolMessage",
    "Usage",
    "UserMessage",
    "WrapperModel",
    "__version__",
    "agent",
    "agent_tool",
    "call_agent",
    "set_redactor",
    "submit_task",
    "task_tool",
    "tool",
]
