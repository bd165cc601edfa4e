"""``/v1/webhooks``: how a tenant verifies the webhooks it receives."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.runtime.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookSecret(BaseModel):
    secret: str
    algorithm: str = "HMAC-SHA256"
    signature_header: str = SIGNATURE_HEADER
    timestamp_header: str = TIMESTAMP_HEADER
    signed_content: str = "<timestamp>.<raw body>"
    format: str = "v1=<hex digest>"


@router.get(
    "/secret",
    response_model=WebhookSecret,
    responses=responses(),
)
async def webhook_secret(
    request: Request, principal: Annotated[Principal, Depends(require("invoke"))]
) -> WebhookSecret:
    """This tenant's webhook signing secret and how the signature is made."""
    return WebhookSecret(secret=services(request).webhooks.secret_for(principal.tenant_id))
