"""``@tool``: a typed Python function becomes a tool the model can call.

The JSON schema comes from the signature (types, defaults) and the docstring (the summary and the
per-argument descriptions). Arguments are validated before the function runs; whatever goes wrong
becomes an error result for the model, never an exception that ends the run.

A parameter annotated ``RunContext`` (any name, usually ``ctx``) is not shown to the model: it
receives the run's context — its ids and request, ``ctx.http`` (the server's HTTP client, under
the egress policy), ``ctx.emit`` for events of the tool's own.

``@tool(secrets=["github"])``: the tool's calls through ``ctx.http`` get the credentials the
operator's rules attach to those names (``SHIPYARD_TOOL_SECRETS``), added at the egress edge:
the tool itself never holds them (see ``shipyard.guard.tool_secrets``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_json

from shipyard.agents.context import RunContext
from shipyard.errors import ConfigError, ModelRetry
from shipyard.guard.tool_secrets import granted_secrets
from shipyard.models.base import ToolSpec


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave back to the model: ``content`` on success, or an ``error`` text."""

    ok: bool
    content: str
    error_kind: str | None = None  # invalid_arguments | timeout | error | retry | unknown_tool


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable the model may use. Build one with ``@tool``.

    ``spec`` (the JSON schema shown to the model) and ``is_async`` are worked out once, when the
    tool is built: the loop reads the spec at every model step and calls tools on the hot path.
    """

    name: str
    description: str
    args_model: type[BaseModel]
    fn: Callable[..., Any]
    timeout_s: float | None = None
    context_arg: str | None = None
    """The parameter that receives the run's ``RunContext`` (hidden from the model), if any."""
    secrets: tuple[str, ...] = ()
    """Names of the credentials its ``ctx.http`` calls carry (rules in SHIPYARD_TOOL_SECRETS)."""
    pure: bool = False
    """Its result depends on its arguments alone (no clock, network, store): a model call that
    offers only pure tools may be answered from the model cache (``models.cache``)."""
    spec: ToolSpec = field(init=False, repr=False, compare=False)
    is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        spec = ToolSpec(name=self.name, description=self.description, parameters=schema)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))

    async def call(
        self, arguments: str, *, default_timeout_s: float, ctx: RunContext | None = None
    ) -> ToolResult:
        """Validate ``arguments`` (JSON text), run under a timeout, report the outcome;
        ``ctx`` goes to the tool's context parameter, if it has one."""
        try:
            args = self.args_model.model_validate_json(arguments or "{}")
        except ValidationError as exc:
            return ToolResult(
                False, f"invalid arguments for {self.name}: {_brief(exc)}", "invalid_arguments"
            )
        timeout = self.timeout_s or default_timeout_s
        kwargs = {k: getattr(args, k) for k in type(args).model_fields}
        if self.context_arg is not None:
            kwargs[self.context_arg] = ctx
        if not self.secrets:
            return await self._run(kwargs, timeout)
        with granted_secrets(self.secrets) as grant:
            result = await self._run(kwargs, timeout)
        if not grant.sent:
            return result
        return ToolResult(result.ok, grant.scrub(result.content), result.error_kind)

    async def _run(self, kwargs: dict[str, Any], limit_s: float) -> ToolResult:
        try:
            async with asyncio.timeout(limit_s):
                value = await self._invoke(kwargs)
        except TimeoutError:
            return ToolResult(False, f"{self.name} timed out after {limit_s:g}s", "timeout")
        except ModelRetry as exc:
            return ToolResult(False, str(exc), "retry")
        except Exception as exc:  # a tool's failure is information for the model
            return ToolResult(False, f"{self.name} failed: {type(exc).__name__}: {exc}", "error")
        return ToolResult(True, value if isinstance(value, str) else to_json(value).decode())

    async def _invoke(self, kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(**kwargs)
        return await asyncio.to_thread(self.fn, **kwargs)


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
    )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    secrets: Sequence[str] = (),
    pure: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    secrets: Sequence[str] = (),
    pure: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool of a typed function (sync or async). Use bare (``@tool``) or with options;
    ``secrets`` names the credentials its ``ctx.http`` calls carry (see the module doc);
    ``pure``: its result depends on its arguments alone (the model cache may serve its steps)."""

    def build(func: Callable[..., Any]) -> Tool:
        return make_tool(
            func,
            name=name,
            description=description,
            timeout_s=timeout_s,
            secrets=secrets,
            pure=pure,
        )

    return build(fn) if fn is not None else build


def make_tool(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    secrets: Sequence[str] = (),
    pure: bool = False,
) -> Tool:
    doc = docstring_parser.parse(inspect.getdoc(func) or "")
    arg_docs = {p.arg_name: p.description for p in doc.params}
    hints = get_type_hints(func)
    fields: dict[str, Any] = {}
    context_arg: str | None = None
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"tool {func.__name__}: *args and **kwargs cannot be described")
        if param.name not in hints:
            raise ConfigError(f"tool {func.__name__}: argument {param.name!r} needs a type hint")
        if hints[param.name] is RunContext:
            context_arg = param.name
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            hints[param.name],
            Field(default, description=arg_docs.get(param.name)),
        )
    args_model = create_model(
        f"{func.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields
    )
    summary = "\n\n".join(p for p in (doc.short_description, doc.long_description) if p)
    return Tool(
        name=name or func.__name__,
        description=description if description is not None else summary,
        args_model=args_model,
        fn=func,
        timeout_s=timeout_s,
        context_arg=context_arg,
        secrets=tuple(secrets),
        pure=pure,
    )


ToolLike = Tool | Callable[..., Any] | Callable[..., Awaitable[Any]]


def as_tool(item: ToolLike) -> Tool:
    return item if isinstance(item, Tool) else make_tool(item)
