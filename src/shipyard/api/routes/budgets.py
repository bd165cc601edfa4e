"""``/v1/budgets``: the tenant's spend budgets and how each stands (``runtime.budget``).

``GET /v1/budgets`` (read): the caller's tenant's ``budgets`` policy section, with each budget's
limit, spending, what runs in flight hold, and what is left, in this period. ``PUT
/v1/budgets/{tenant_id}`` (admin; a tenant's own, or any for the operator): replaces the
section, the rest of the tenant policy kept (a policy change like any other: versioned,
audited in the tenant's changes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import Text
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import Forbidden, TenantNotFound
from shipyard.runtime.budget import Standing
from shipyard.stores.records.policy import DEFAULT_POLICY, Budgets

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])
Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("admin"))]
TenantId = Annotated[
    Text,
    Path(pattern=r"^[A-Za-z0-9._-]{1,128}$", description="The tenant (as in /v1/tenants)."),
]


class StandingView(BaseModel):
    scope: str = Field(description="tenant, key:<key id>, or agent:<name>.")
    period: str
    unit: str = Field(description="usd or tokens.")
    limit: float
    spent: float
    held: float = Field(description="Set aside by the runs in flight (their reservations).")
    remaining: float


class BudgetsView(BaseModel):
    tenant_id: str
    enabled: bool = Field(description="False when the server does not enforce budgets.")
    budgets: Budgets
    standing: list[StandingView]


async def _view(request: Request, tenant_id: str, budgets: Budgets) -> BudgetsView:
    governor = services(request).governor
    found: list[Standing] = [] if governor is None else await governor.standing(tenant_id, budgets)
    return BudgetsView(
        tenant_id=tenant_id,
        enabled=governor is not None,
        budgets=budgets,
        standing=[StandingView(**_fields(s)) for s in found],
    )


def _fields(standing: Standing) -> dict[str, object]:
    return {name: getattr(standing, name) for name in StandingView.model_fields}


@router.get("", response_model=BudgetsView, responses=responses())
async def get_budgets(request: Request, principal: Reader) -> BudgetsView:
    """The caller's tenant's budgets and how each stands now."""
    policy = await services(request).tenants.policy(principal.tenant_id)
    return await _view(request, principal.tenant_id, policy.budgets)


@router.put("/{tenant_id}", response_model=BudgetsView, responses=responses(409, body=True))
async def put_budgets(
    tenant_id: TenantId, body: Budgets, request: Request, principal: Admin
) -> BudgetsView:
    """Replace the tenant's budgets (the rest of its policy is kept); 422 ``invalid_input``
    naming the field of an invalid one, 409 ``policy_conflict`` if the policy changed
    meanwhile (try again)."""
    if not principal.operator and principal.tenant_id != tenant_id:
        raise Forbidden("a tenant's admin key changes its own tenant's budgets only")
    tenants = services(request).tenants
    try:
        record = await tenants.get(tenant_id)
        policy, version = record.policy, record.version
    except TenantNotFound:
        policy, version = DEFAULT_POLICY, 0
    changed = policy.model_copy(update={"budgets": body})
    await tenants.put(tenant_id, changed, changed_by=principal.key_id, expected_version=version)
    return await _view(request, tenant_id, body)
