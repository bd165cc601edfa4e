"""One error tree for everything Shipyard raises on purpose.

::

    ShipyardError                      status  code
    ├── ConfigError                    500     config_error        misuse: bad settings, bad agent
    │   ├── InvalidEvent               500     config_error        ctx.emit() of a bad type or data
    │   └── SecretNotFound             500     secret_not_found    a secret:// reference to nothing
    ├── NotFound                       404     not_found
    │   ├── AgentNotFound              404     agent_not_found
    │   ├── RunNotFound                404     run_not_found
    │   ├── SessionNotFound            404     session_not_found
    │   └── SessionExpired             404     session_expired
    │   └── TaskNotFound               404     task_not_found
    │   └── TenantNotFound             404     tenant_not_found
    │   └── ArtifactNotFound           404     artifact_not_found
    │   └── MemoryNotFound             404     memory_not_found
    ├── TaskFinished                   409     task_finished       cancel of a finished task
    ├── TaskNotEnded                   409     task_not_ended      retry of a task still going
    ├── IdempotencyConflict            409     idempotency_conflict  a key reused, another body
    ├── PolicyConflict                 409     policy_conflict     a tenant policy changed since
    ├── SessionBusy                    409     session_busy        a turn is already running
    │   └── TurnInterrupted            409     turn_interrupted    a newer turn cancelled it
    ├── ContextOverflow                422     context_overflow    history beyond the budget
    ├── AuthError                      401     unauthorized
    ├── Forbidden                      403     forbidden
    │   └── RegionDenied               403     region_denied       artifact outside the home region
    ├── InputBlocked                   400     input_blocked       a guard refused the run's input
    ├── InvalidInput                   422     invalid_input
    │   └── EgressDenied               422     egress_denied       a URL aims at a denied address
    ├── PayloadTooLarge                413     payload_too_large   body over SHIPYARD_MAX_BODY_BYTES
    ├── RequestTimeout                 408     request_timeout     body not received in time
    ├── RangeNotSatisfiable            416     range_not_satisfiable  a Range past the end
    ├── RateLimited                    429     rate_limited        requests or model tokens
    │   └── TooManyRuns                429     too_many_runs       the tenant's runs in flight
    ├── RunFailure                     500     run_failed          the run itself failed
    │   ├── ModelError                 502     model_error         provider failed
    │   ├── RunTimeout                 504     run_timeout
    │   ├── RunCancelled               499     cancelled           shutdown, or the caller left
    │   ├── MaxStepsExceeded           500     max_steps_exceeded  (surfaced as a failed run)
    │   └── BudgetExceeded             402     budget_exceeded     a spend budget has no room
    └── StoreError                     503     store_unavailable   a backing store failed
        ├── StoreRejected              500     store_rejected      ...or refused the data
        └── ChecksumMismatch           500     checksum_mismatch   a blob's bytes changed

``ModelRetry`` is control flow: a tool raises it to tell the model to try again. It is not a
``ShipyardError`` and never reaches HTTP; the loop turns it into a tool error result.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class ShipyardError(Exception):
    """Base of every deliberate Shipyard error; ``status`` and ``code`` drive the HTTP answer."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body

    def http_headers(self) -> dict[str, str]:
        """Headers the HTTP answer carries besides the JSON body (none but a 429's)."""
        return {}


class ConfigError(ShipyardError):
    code = "config_error"


class InvalidEvent(ConfigError, ValueError):
    """An event an agent tried to emit that the event schema does not allow; raised by
    ``ctx.emit`` in the agent's own code (also a ``ValueError``)."""


class SecretNotFound(ConfigError):
    """A ``secret://path#key`` reference the secret store has no value for (the message names
    the reference, never a value)."""

    code = "secret_not_found"


class NotFound(ShipyardError):
    status = 404
    code = "not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class RunNotFound(NotFound):
    code = "run_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class SessionExpired(NotFound):
    """The session existed but its live state expired; its turns stay in the records."""

    code = "session_expired"


class SessionBusy(ShipyardError):
    status = 409
    code = "session_busy"


class TurnInterrupted(SessionBusy):
    """A newer turn of a session with the ``interrupt`` policy cancelled this one."""

    code = "turn_interrupted"


class ContextOverflow(ShipyardError):
    """The session's history outgrew the agent's context budget under the ``error`` policy."""

    status = 422
    code = "context_overflow"


class TaskNotFound(NotFound):
    code = "task_not_found"


class TenantNotFound(NotFound):
    code = "tenant_not_found"


class ArtifactNotFound(NotFound):
    code = "artifact_not_found"


class MemoryNotFound(NotFound):
    code = "memory_not_found"


class TaskFinished(ShipyardError):
    """The task already reached a final state: nothing to cancel."""

    status = 409
    code = "task_finished"


class TaskNotEnded(ShipyardError):
    """A retry (a new task with the same request) asked of a task that has not ended."""

    status = 409
    code = "task_not_ended"


class IdempotencyConflict(ShipyardError):
    """An idempotency key already used by the tenant for a request with another body."""

    status = 409
    code = "idempotency_conflict"


class PolicyConflict(ShipyardError):
    """A tenant policy write that expected another version than the stored one (someone else
    changed it in between): read it again and retry."""

    status = 409
    code = "policy_conflict"


class AuthError(ShipyardError):
    status = 401
    code = "unauthorized"


class Forbidden(ShipyardError):
    status = 403
    code = "forbidden"


class InputBlocked(ShipyardError):
    """A guard policy's ``block`` rule found something in the run's input (the details name
    the detectors and entity types, never the text)."""

    status = 400
    code = "input_blocked"


class RegionDenied(Forbidden):
    """A write or read that would cross regions (data residency): refused and logged."""

    code = "region_denied"


class InvalidInput(ShipyardError):
    status = 422
    code = "invalid_input"


class EgressDenied(InvalidInput):
    """A URL the caller gave aims at an address the egress policy refuses (private, loopback,
    link-local, metadata...), or carries credentials."""

    code = "egress_denied"


class PayloadTooLarge(ShipyardError):
    status = 413
    code = "payload_too_large"


class RangeNotSatisfiable(ShipyardError):
    """A download's ``Range`` starts past the end of the artifact."""

    status = 416
    code = "range_not_satisfiable"


class RequestTimeout(ShipyardError):
    status = 408
    code = "request_timeout"


class MalformedRequest(ShipyardError):
    """The HTTP parser refused the request itself (its line or headers), before any route."""

    status = 400
    code = "malformed_request"


class RateLimited(ShipyardError):
    """A limit of the tenant or its key is reached; ``retry_after_s`` says when to try again.
    The answer carries ``Retry-After`` and ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset``."""

    status = 429
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        remaining: int,
        reset_s: float,
        retry_after_s: float,
        details: Any = None,
    ) -> None:
        super().__init__(message, details=details)
        self.limit = limit
        self.remaining = remaining
        self.reset_s = reset_s
        self.retry_after_s = retry_after_s

    def http_headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(max(1, math.ceil(self.retry_after_s))),
            **rate_limit_headers(self.limit, self.remaining, self.reset_s),
        }


class TooManyRuns(RateLimited):
    """The tenant's cap on runs in flight is reached."""

    code = "too_many_runs"


def rate_limit_headers(limit: int, remaining: int, reset_s: float) -> dict[str, str]:
    """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (whole seconds until the limit is
    whole again), as the IETF RateLimit header fields draft names them."""
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(max(0, math.ceil(reset_s))),
    }


class RunFailure(ShipyardError):
    code = "run_failed"


class ModelError(RunFailure):
    status = 502
    code = "model_error"


class RunTimeout(RunFailure):
    status = 504
    code = "run_timeout"


class RunCancelled(RunFailure):
    status = 499
    code = "cancelled"


class MaxStepsExceeded(RunFailure):
    code = "max_steps_exceeded"


class BudgetExceeded(RunFailure):
    """A budget (the tenant's, its key's, its agent's, or the run's own) has no room for a run
    or its next model call under the ``deny`` policy (``runtime.budget``)."""

    status = 402
    code = "budget_exceeded"


class StoreError(ShipyardError):
    """``message`` says which store failed and how (for the log); what a client sees
    (``to_dict``) names no driver, host or exception: only the operation."""

    status = 503
    code = "store_unavailable"
    public: ClassVar[str] = "a backing store is unavailable; try again later"

    def to_dict(self) -> dict[str, Any]:
        operation = self.details.get("operation") if isinstance(self.details, dict) else None
        body: dict[str, Any] = {"code": self.code, "message": self.public}
        if operation:
            body["details"] = {"operation": operation}
        return body


class StoreRejected(StoreError):
    """The store is up but refuses this data (a constraint, an encoding): retrying won't help."""

    status = 500
    code = "store_rejected"
    public = "a store refused the data"


class ChecksumMismatch(StoreError):
    """A blob's bytes no longer match the sha256 stored when it was written."""

    status = 500
    code = "checksum_mismatch"
    public = "stored content failed its checksum"


class ModelRetry(Exception):
    """Raised by a tool to hand a message back to the model and let it try again."""
