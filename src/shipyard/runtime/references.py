"""Inputs that reference artifacts (``agents.references.ArtifactInput``), read at the start of
a run by the invoker, the one seam every run (invoke, session turn, task, child run) passes.

An artifact is read as the run's tenant (another tenant's id is a 404, as an unknown one), from
its home region, checked against its sha256. Only text is inlined (``text/*``, JSON, XML,
YAML...: UTF-8), and the artifacts one input references hold at most ``max_bytes`` together:
past it the run is refused (413 ``payload_too_large``) before it starts, as is an artifact that
is not text (422 ``invalid_input``).
"""

from __future__ import annotations

from shipyard.agents.references import ArtifactInput
from shipyard.errors import InvalidInput, PayloadTooLarge
from shipyard.models.base import Message, UserMessage
from shipyard.runtime.artifacts import ArtifactService
from shipyard.stores.records.artifacts_base import ArtifactRecord

__all__ = ["InputReferences", "is_text"]

_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/x-ndjson",
        "application/javascript",
        "application/sql",
        "application/csv",
    }
)


def is_text(content_type: str) -> bool:
    """Whether a content type is text a model can read (its parameters aside)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+json", "+xml"))


class InputReferences:
    """Replaces the artifact references of a run's input with the artifacts' text."""

    def __init__(self, artifacts: ArtifactService, *, max_bytes: int) -> None:
        """``max_bytes``: what the artifacts of one input may hold together
        (``SHIPYARD_MAX_INPUT_ARTIFACT_BYTES``)."""
        self._artifacts = artifacts
        self.max_bytes = max_bytes

    async def resolve(self, tenant_id: str, input: list[Message]) -> list[Message]:
        """``input`` with each ``ArtifactInput`` replaced by a user message of its text."""
        resolved: list[Message] = []
        left = self.max_bytes
        for message in input:
            if isinstance(message, ArtifactInput):
                record = await self._artifacts.get(tenant_id, message.artifact_id)
                self._check(record, left)
                left -= record.size
                message = UserMessage(content=await self._text(record))
            resolved.append(message)
        return resolved

    def _check(self, record: ArtifactRecord, left: int) -> None:
        details = {"artifact_id": record.id, "content_type": record.content_type}
        if not is_text(record.content_type):
            raise InvalidInput(
                f"artifact {record.id} is {record.content_type}: an input references text "
                "artifacts only (text/*, JSON, XML, YAML)",
                details=details,
            )
        if record.size > left:
            raise PayloadTooLarge(
                f"artifact {record.id} is {record.size} bytes: the artifacts an input "
                f"references hold at most {self.max_bytes} bytes together",
                details={**details, "size": record.size, "limit": self.max_bytes},
            )

    async def _text(self, record: ArtifactRecord) -> str:
        data = bytearray()
        async for chunk in await self._artifacts.read(record):
            data += chunk
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = "\x00"  # refused below, with the same answer
        if "\x00" in text:
            raise InvalidInput(
                f"artifact {record.id} is not UTF-8 text (or holds NUL)",
                details={"artifact_id": record.id, "content_type": record.content_type},
            )
        return text
