"""``/v1/artifacts`` and ``/v1/runs/{id}/artifacts``: files runs produce, and uploads.

An upload is the raw request body (its ``Content-Type`` kept), streamed into the blob store of
the tenant's home region and capped at ``SHIPYARD_MAX_ARTIFACT_BYTES``. A download streams the
bytes back, checked against their sha256 (the last chunk is held until the check passes: a
changed blob is a 500 ``checksum_mismatch`` when it fits in one chunk, a response cut short
otherwise), or redirects to a presigned URL
(``SHIPYARD_BLOB_PRESIGN_S``). Another tenant's artifact id is a 404, as an unknown one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import Text
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import ConfigError, RangeNotSatisfiable, RunNotFound
from shipyard.runtime.artifacts import MAX_NAME, ArtifactService
from shipyard.stores.records.artifacts_base import ArtifactRecord

router = APIRouter(tags=["artifacts"])
Writer = Annotated[Principal, Depends(require("invoke"))]
Reader = Annotated[Principal, Depends(require("read"))]


class ArtifactInfo(BaseModel):
    id: str
    name: str
    content_type: str
    size: int
    sha256: str
    region: str = Field(description="The region whose store holds the bytes.")
    run_id: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, record: ArtifactRecord) -> ArtifactInfo:
        return cls.model_validate(record.model_dump(exclude={"tenant_id", "blob_key"}))


class ArtifactPage(BaseModel):
    artifacts: list[ArtifactInfo]
    next_cursor: str | None = None


def _artifacts(request: Request) -> ArtifactService:
    found = services(request).artifacts
    if found is None:
        raise ConfigError("this server has no artifact store")
    return found


_RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The artifact's bytes; its Content-Type is kept.",
    }
}


@router.post(
    "/v1/artifacts",
    response_model=ArtifactInfo,
    status_code=201,
    responses=responses(403, body=True),
    openapi_extra=_RAW_BODY,
)
async def upload_artifact(
    request: Request,
    principal: Writer,
    name: Annotated[Text, Query(min_length=1, max_length=MAX_NAME)],
) -> ArtifactInfo:
    """The raw body is the artifact, its ``Content-Type`` the artifact's."""
    content_type = request.headers.get("content-type") or "application/octet-stream"
    record = await _artifacts(request).put(
        principal.tenant_id, request.stream(), name=name, content_type=content_type
    )
    return ArtifactInfo.of(record)


@router.get(
    "/v1/artifacts/{artifact_id}",
    response_class=Response,
    responses={
        **responses(404, 416),
        200: {"content": {"application/octet-stream": {}}, "description": "The bytes."},
        206: {"description": "The bytes of the requested Range."},
        307: {"description": "A presigned URL to read the bytes from."},
    },
)
async def download_artifact(artifact_id: Text, request: Request, principal: Reader) -> Response:
    """The bytes (``Range: bytes=first-last`` for a part: 206), or a presigned redirect."""
    service = _artifacts(request)
    record = await service.get(principal.tenant_id, artifact_id)
    span = byte_range(request.headers.get("range"), record.size)
    download = await service.download(principal.tenant_id, artifact_id, span)
    if download.url is not None:
        return RedirectResponse(download.url, status_code=307)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(record.size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(record.name, safe='')}",
        "ETag": f'"{record.sha256}"',
        "X-Checksum-Sha256": record.sha256,
    }
    if span is not None:
        headers["Content-Length"] = str(span[1] - span[0] + 1)
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{record.size}"
    assert download.chunks is not None
    first = await anext(download.chunks, b"")  # a small blob is checked before the answer starts
    return StreamingResponse(
        _chain(first, download.chunks),
        status_code=200 if span is None else 206,
        media_type=record.content_type,
        headers=headers,
    )


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range ``header`` asks for, clamped to ``size``; None for the whole (no header, a
    syntax this route ignores, several ranges, or the whole anyway). A start past the end:
    ``RangeNotSatisfiable``."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    if not sep or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        if last.isdigit() and int(last) < start:
            return None  # not a valid range: ignored, as RFC 9110 says
        end = min(int(last), size - 1) if last.isdigit() else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(
            f"range {header!r} is outside the artifact's {size} bytes", details={"size": size}
        )
    return None if (start, end) == (0, size - 1) else (start, end)


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


@router.get("/v1/runs/{run_id}/artifacts", response_model=ArtifactPage, responses=responses(404))
async def run_artifacts(
    run_id: Text,
    request: Request,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Text | None = None,
) -> ArtifactPage:
    """The run's artifacts, newest first."""
    page = await services(request).records.list_artifacts(
        principal.tenant_id, run_id=run_id, limit=limit, cursor=cursor
    )
    records = services(request).records
    if (
        not page.items
        and cursor is None
        and await records.get_run(principal.tenant_id, run_id) is None
    ):
        raise RunNotFound(f"no run {run_id!r}")
    return ArtifactPage(
        artifacts=[ArtifactInfo.of(a) for a in page.items], next_cursor=page.next_cursor
    )
