"""``GET /v1/audit``: the audit log, newest first (admin keys).

A tenant's admin key reads its own tenant's rows (asking for another tenant answers 403); the
operator's admin keys read every tenant's, and the rows of refused requests, which have none.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, Field

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import Text
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import Forbidden
from shipyard.stores.records.audit_base import AuditQuery, AuditRecord
from shipyard.telemetry.audit import Outcome

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Admin = Annotated[Principal, Depends(require("admin"))]


class AuditEntries(BaseModel):
    entries: list[AuditRecord]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


@router.get("", response_model=AuditEntries, responses=responses())
async def list_audit(
    request: Request,
    principal: Admin,
    tenant: Text | None = None,
    key: Annotated[Text | None, Query(description="A key's id.")] = None,
    action: Annotated[
        Text | None, Query(description="Exact, e.g. `GET /v1/runs/{run_id}` or `keys.rotate`.")
    ] = None,
    outcome: Outcome | None = None,
    since: Annotated[AwareDatetime | None, Query(description="From (inclusive).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="To (exclusive).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Text | None = None,
) -> AuditEntries:
    """Who did what, when, from where and how it ended; newest first."""
    if not principal.operator:
        if tenant is not None and tenant != principal.tenant_id:
            raise Forbidden("a tenant's admin key reads its own tenant's audit log only")
        tenant = principal.tenant_id
    query = AuditQuery(
        tenant_id=tenant,
        key_id=key,
        action=action,
        outcomes=(outcome,) if outcome else (),
        since=since,
        until=until,
    )
    page = await services(request).records.list_audit(query, limit=limit, cursor=cursor)
    return AuditEntries(entries=page.items, next_cursor=page.next_cursor)
