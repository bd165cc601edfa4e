"""``BudgetHeaders``: the remaining budget on every API answer of a tenant with budgets.

``Budget-Remaining-USD`` and ``Budget-Remaining-Tokens``: what is left of the tightest of the
tenant's and the calling key's budgets in that unit (agents' budgets are on ``GET
/v1/budgets``), read from the state store as the answer starts — so an invoke's answer shows
what its run left. It also marks the request's key (``runtime.limits.calling_key``) for the
runs it starts, so the key's budgets apply to them. A tenant without budgets costs nothing; a
state store that fails to answer leaves the headers out, never fails the request.
"""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api.auth import PRINCIPAL
from shipyard.errors import StoreError
from shipyard.runtime.budget import Governor, ceilings
from shipyard.runtime.limits import calling_key

log = structlog.get_logger(__name__)
API_PREFIX = "/v1/"


class BudgetHeaders:
    def __init__(self, app: ASGIApp, governor: Governor) -> None:
        self.app = app
        self.governor = governor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get(PRINCIPAL)
        if scope["type"] != "http" or principal is None or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        tenant_id, key_id = principal.tenant_id, principal.key_id

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = await self._headers(tenant_id, key_id)
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        token = calling_key.set(key_id)
        try:
            await self.app(scope, receive, sending)
        finally:
            calling_key.reset(token)

    async def _headers(self, tenant_id: str, key_id: str) -> list[tuple[bytes, bytes]]:
        try:
            budgets = await self.governor.budgets(tenant_id)
            found = ceilings(tenant_id, budgets, key_id, "", self.governor.clock())
            standing = await self.governor.standing(tenant_id, budgets, found)
        except StoreError as exc:
            log.warning("cannot read the budgets for the headers", error=exc.message)
            return []
        headers = []
        for unit in ("usd", "tokens"):
            left = [s.remaining for s in standing if s.unit == unit]
            if left:
                value = f"{min(left):.6f}" if unit == "usd" else str(int(min(left)))
                headers.append((f"budget-remaining-{unit}".encode(), value.encode()))
        return headers
