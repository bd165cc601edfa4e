"""How the SQS broker reports AWS failures: ``StoreError`` (``StoreRejected`` when AWS refuses
the request itself), each operation bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shipyard.errors import StoreError, StoreRejected

_REFUSALS = (
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "InvalidParameterValue",
    "InvalidAttributeValue",
    "InvalidMessageContents",
    "KMS.AccessDeniedException",
)


@asynccontextmanager
async def translate(label: str, operation: str, timeout_s: float) -> AsyncIterator[None]:
    """One operation, bounded by ``timeout_s``; driver and network failures leave as
    ``StoreError`` (the driver's on ``__cause__``)."""
    from aiohttp import ClientError as HttpError
    from botocore.exceptions import BotoCoreError, ClientError

    details = {"operation": operation}
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except StoreError:
        raise
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        message = f"broker ({label}) {operation} failed: {code}: {e}"
        if code in _REFUSALS:
            raise StoreRejected(message, details=details) from e
        raise StoreError(message, details=details) from e
    except (BotoCoreError, HttpError, OSError, TimeoutError) as e:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise StoreError(f"broker ({label}) {operation} failed: {reason}", details=details) from e
