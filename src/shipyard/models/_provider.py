"""What the HTTP providers share: reading reference options, and mapping SDK errors.

The ``openai`` and ``anthropic`` SDKs are generated from one template, so their options
(``api_key_env``, ``base_url``, ``timeout``, ``max_retries``) read alike and their exceptions
form the same tree (status error, timeout, connection error, any other SDK error). Only the
classes and the shape of an error body differ; :class:`SdkErrors` names those per SDK.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shipyard.errors import ConfigError, ModelError
from shipyard.models.base import ModelRequest

# Sent when no key is configured: compatible local servers ignore it, real APIs answer 401.
PLACEHOLDER_API_KEY = "not-needed"

StatusError = TypeVar("StatusError", bound=Exception)


def check_options(prefix: str, options: Mapping[str, str], known: Collection[str]) -> None:
    """Reject options outside ``known``: a typo must not pass silently as "use the default"."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{prefix}: unknown options {unknown}; known: {', '.join(known)}")


def named_api_key(provider: str, options: Mapping[str, str]) -> str | None:
    """The key in the variable ``api_key_env`` names; ``None`` when no variable is named.

    Naming a variable that is not set is a ``ConfigError`` rather than a silent fallback to the
    SDK's default key, which would send requests under another account.
    """
    key_env = options.get("api_key_env")
    if not key_env:
        return None
    if key_env not in os.environ:
        raise ConfigError(f"{provider}: api_key_env names {key_env!r}, which is not set")
    return os.environ[key_env]


def client_settings(provider: str, options: Mapping[str, str]) -> dict[str, Any]:
    """``base_url``, ``timeout`` and ``max_retries`` as SDK client keyword arguments.

    Options left out stay out, so the SDK's own defaults (and environment variables) apply.
    """
    settings: dict[str, Any] = {}
    if options.get("base_url"):
        settings["base_url"] = options["base_url"]
    try:
        if "timeout" in options:
            settings["timeout"] = float(options["timeout"])
        if "max_retries" in options:
            settings["max_retries"] = int(options["max_retries"])
    except ValueError as exc:
        raise ConfigError(f"{provider}: timeout and max_retries must be numbers: {exc}") from exc
    return settings


@dataclass(frozen=True, slots=True)
class SdkErrors(Generic[StatusError]):
    """One SDK's exception classes, and how to read its HTTP status errors.

    ``read_status`` returns the HTTP status, the server's message (from the body when it has
    one) and the ``details`` of the ``ModelError``.
    """

    status: type[StatusError]
    timeout: type[Exception]
    connection: type[Exception]
    base: type[Exception]
    read_status: Callable[[StatusError], tuple[int, str, dict[str, Any]]]


@contextmanager
def translate_errors(model: str, sdk: SdkErrors[StatusError]) -> Iterator[None]:
    """Map the SDK's exceptions to ``ModelError``, naming the model and the HTTP status."""
    try:
        yield
    except sdk.status as exc:
        status, detail, details = sdk.read_status(exc)
        raise ModelError(
            f"{model}: the server answered HTTP {status}: {detail}", details=details
        ) from exc
    except sdk.timeout as exc:  # a subclass of the connection error: caught first
        raise ModelError(f"{model}: the request timed out") from exc
    except sdk.connection as exc:  # str() of an SDK error is its message
        raise ModelError(f"{model}: cannot reach the server: {exc}") from exc
    except sdk.base as exc:  # errors inside a stream, bad responses
        raise ModelError(f"{model}: {exc}") from exc


def trace_headers(request: ModelRequest) -> dict[str, str] | None:
    """The ``traceparent`` header of a model call (None: the SDK adds nothing)."""
    return {"traceparent": request.traceparent} if request.traceparent else None
