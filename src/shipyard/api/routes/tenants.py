"""``/v1/tenants/{id}``: a tenant's policy and who changed it (admin keys).

A tenant's admin key reads and changes its own tenant only (another tenant answers 403); the
operator's admin keys (``SHIPYARD_OPERATOR_TENANT``) any tenant. A change may name the version
it was made from (``version`` in the body, or ``If-Match``): a stale one answers 409
``policy_conflict``. Answers carry the version as ``ETag``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import INT32_MAX, Text
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import Forbidden
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.records.base import PolicyChange, TenantRecord
from shipyard.stores.records.policy import TenantPolicy

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])
Admin = Annotated[Principal, Depends(require("admin"))]
TenantId = Annotated[
    Text,
    Path(
        pattern=r"^[A-Za-z0-9._-]{1,128}$",
        description="The tenant: letters, digits, '-', '_' or '.' (at most 128).",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        pattern=r'^(W/)?"?[0-9]{1,9}"?$',
        description="The version the change was made from, as the ETag of a read gave it.",
    ),
]


class PolicyUpdate(BaseModel):
    """A tenant's whole new policy (sections left out take their defaults)."""

    model_config = ConfigDict(extra="forbid")

    policy: TenantPolicy
    version: int | None = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description="The version this change was made from (0: the tenant has no policy yet); "
        "another one answers 409 policy_conflict. Unset (and no If-Match): no check.",
    )


class TenantView(BaseModel):
    id: str
    policy: TenantPolicy
    version: int = Field(description="0 until the tenant's policy is first set; +1 per change.")
    created_at: datetime
    updated_at: datetime | None = None


class PolicyChanges(BaseModel):
    changes: list[PolicyChange]
    next_cursor: int | None = Field(None, description="Pass as `before` for older changes.")


def _policies(request: Request) -> TenantPolicies:
    policies: TenantPolicies = services(request).tenants
    return policies


def _own(principal: Principal, tenant_id: str) -> None:
    if not principal.operator and principal.tenant_id != tenant_id:
        raise Forbidden("a tenant's admin key reads and changes its own tenant only")


def _view(record: TenantRecord, response: Response) -> TenantView:
    response.headers["ETag"] = f'"{record.version}"'
    return TenantView(**record.model_dump())


@router.get("/{tenant_id}", response_model=TenantView, responses=responses(404))
async def get_tenant(
    tenant_id: TenantId, request: Request, response: Response, principal: Admin
) -> TenantView:
    """The tenant's policy and its version (404 ``tenant_not_found`` if there is no such
    tenant; a tenant that only has keys has version 0 and the default policy)."""
    _own(principal, tenant_id)
    return _view(await _policies(request).get(tenant_id), response)


@router.put("/{tenant_id}", response_model=TenantView, responses=responses(404, 409, body=True))
async def put_tenant(
    tenant_id: TenantId,
    body: PolicyUpdate,
    request: Request,
    response: Response,
    principal: Admin,
    if_match: IfMatch = None,
) -> TenantView:
    """Replace the tenant's policy (creating the tenant if needed): the next version, recorded
    with the key that made it. 409 ``policy_conflict`` if ``version`` or ``If-Match`` is not the
    current version; 422 ``invalid_input`` naming the field of an invalid policy."""
    _own(principal, tenant_id)
    expected = body.version
    if expected is None and if_match is not None:
        expected = int(re.sub(r"\D", "", if_match))
    record = await _policies(request).put(
        tenant_id, body.policy, changed_by=principal.key_id, expected_version=expected
    )
    return _view(record, response)


@router.get("/{tenant_id}/changes", response_model=PolicyChanges, responses=responses(404))
async def list_changes(
    tenant_id: TenantId,
    request: Request,
    principal: Admin,
    before: Annotated[
        int | None, Query(ge=1, le=INT32_MAX, description="Only versions below this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PolicyChanges:
    """Who changed the tenant's policy to what (the whole document each time), newest first."""
    _own(principal, tenant_id)
    changes = await _policies(request).changes(tenant_id, before_version=before, limit=limit)
    last = changes[-1].version if len(changes) == limit and changes[-1].version > 1 else None
    return PolicyChanges(changes=changes, next_cursor=last)
