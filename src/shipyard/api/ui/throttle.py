"""Failed sign-ins, throttled by client address: a key cannot be guessed at the form's speed.

Each refused key spends one unit of a rate kept in the state store (``Rates.take``, the
limiter the API's rate limits use: GCRA, shared by every replica), keyed by the client's
address. Once ``failures`` are spent within ``window_s`` the sign-in form answers 429 (with
``Retry-After``) before it even checks a key; a unit comes back every ``window_s / failures``.
A successful sign-in spends nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import Request

from shipyard.api.state import services
from shipyard.errors import RateLimited
from shipyard.stores.state.base import Rate

KEY_PREFIX = "ui:signin:"


@dataclass(frozen=True, slots=True)
class SignInThrottle:
    failures: int = 10
    window_s: float = 300.0

    def rate(self, request: Request) -> Rate:
        """The client's rate (its address hashed: the state store keeps no address)."""
        host = request.client.host if request.client else "unknown"
        digest = hashlib.sha256(host.encode()).hexdigest()[:32]
        return Rate(f"{KEY_PREFIX}{digest}:{self.failures}", self.failures, self.window_s)

    async def check(self, request: Request) -> None:
        """``RateLimited`` while the client has no failure left (cost 0: asks, spends nothing)."""
        quota = await services(request).state.take([self.rate(request)], cost=0)
        if not quota.allowed:
            raise RateLimited(
                "too many failed sign-ins from this address: try again later",
                limit=quota.limit,
                remaining=0,
                reset_s=quota.reset_s,
                retry_after_s=quota.retry_after_s,
            )

    async def failed(self, request: Request) -> None:
        await services(request).state.take([self.rate(request)], cost=1)
