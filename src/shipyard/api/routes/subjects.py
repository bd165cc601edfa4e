"""``DELETE /v1/subjects/{subject_id}``: the right to erasure (admin keys).

Removes everything of the tenant tied to the subject — the ``subject`` in the metadata of its
runs, sessions and tasks (and of memories) — from every store, and answers with the receipt:
what each store deleted. A tenant's admin key erases within its own tenant; the operator's may
name another with ``?tenant=``. Erasing again is harmless (a receipt of zeros).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import Text
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import ConfigError, Forbidden
from shipyard.runtime.lifecycle import ErasureReceipt
from shipyard.stores.records.lifecycle_base import MAX_SUBJECT

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])
Admin = Annotated[Principal, Depends(require("admin"))]
SubjectId = Annotated[
    Text,
    Path(
        min_length=1,
        max_length=MAX_SUBJECT,
        description="The subject: the `subject` its runs', sessions' and tasks' metadata carry.",
    ),
]
TenantQuery = Annotated[
    Text | None,
    Query(
        pattern=r"^[A-Za-z0-9._-]{1,128}$",
        description="The tenant (operator keys only; default: the key's own).",
    ),
]


@router.delete("/{subject_id}", response_model=ErasureReceipt, responses=responses(403, 503))
async def erase_subject(
    subject_id: SubjectId, request: Request, principal: Admin, tenant: TenantQuery = None
) -> ErasureReceipt:
    """Erase the subject from every store; the receipt says what each deleted. A store that
    fails answers 503 ``store_unavailable`` (what went before is gone; ask again to finish)."""
    if tenant is not None and tenant != principal.tenant_id and not principal.operator:
        raise Forbidden("a tenant's admin key erases subjects of its own tenant only")
    eraser = services(request).eraser
    if eraser is None:
        raise ConfigError("this server has no eraser")
    return await eraser.erase(tenant or principal.tenant_id, subject_id, key_id=principal.key_id)
