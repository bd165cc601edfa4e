"""Task results delivered to a caller's URL, signed so the receiver can trust them.

The body is the task's CloudEvent. Headers: ``Webhook-Id`` (the event id, for deduplication),
``Webhook-Timestamp`` (Unix seconds) and ``Webhook-Signature: v1=<hex>``, the HMAC-SHA256 of
``"<timestamp>.<body>"`` under the tenant's signing secret. Each tenant's secret is derived
from the server's signing key (``SHIPYARD_WEBHOOK_SIGNING_KEY``), so every replica computes it
and nothing per tenant needs storing; a tenant reads its own with ``GET /v1/webhooks/secret``.

The sender makes one attempt at a time; the outbox (``runtime/outbox``) retries with
exponential backoff on network errors, timeouts, 408, 425, 429 and 5xx, up to ``attempts``;
other 4xx answers are final. Deliveries go through the egress policy: the webhook rules
(``rules``: schemes, hosts, ports, POST only, size and time caps) and the address checks, made
when the connection is made, after DNS resolution, so a name that resolves to an internal
address since the task was submitted is refused: ``denied``, final. ``check_target`` is the
same policy when the URL is given (``POST /v1/tasks``). Every attempt is logged, with the URL's
credentials and query left out, and reported (``report``: an ``egress.request`` log record and
the egress metrics). Given the task's ``traceparent``, each attempt carries it, so the
receiver's work joins the task's trace.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from typing import Literal

import httpx
import structlog

from shipyard.errors import EgressDenied
from shipyard.guard.egress import EgressPolicy, guarded_transport, redact_url, url_target
from shipyard.guard.rules import EgressRules, Gate, Layer
from shipyard.guard.transport import EgressRecord, EgressTransport, Report

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Webhook-Signature"
TIMESTAMP_HEADER = "Webhook-Timestamp"
ID_HEADER = "Webhook-Id"
_RETRY_STATUSES = frozenset({408, 425, 429})
Outcome = Literal["delivered", "retry", "refused", "denied"]


def tenant_secret(signing_key: str, tenant_id: str) -> str:
    """The tenant's webhook secret: stable for a signing key, different for every tenant."""
    return hmac.new(
        signing_key.encode(), f"webhook:{tenant_id}".encode(), hashlib.sha256
    ).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (no replays)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class WebhookSender:
    def __init__(
        self,
        signing_key: str,
        *,
        attempts: int = 5,
        base_s: float = 1.0,
        max_s: float = 60.0,
        timeout_s: float = 10.0,
        policy: EgressPolicy | None = None,
        rules: EgressRules | None = None,
        report: Report | None = None,
    ) -> None:
        """``policy``: where deliveries may connect (default: public addresses only).
        ``rules``: the webhook rules (POST is the only method either way). ``report``: gets
        each attempt's ``EgressRecord`` (the metrics), besides the log."""
        self._key = signing_key
        self.policy = policy or EgressPolicy(setting="SHIPYARD_WEBHOOK_ALLOW")
        only_post = dataclasses.replace(rules or EgressRules(), methods=["POST"])
        self.gate = Gate([Layer("webhook", WEBHOOK_SOURCE, only_post)])
        self._observe = report
        self._attempts = attempts
        self._base_s = base_s
        self._max_s = max_s
        self.timeout_s = timeout_s
        self._pool = guarded_transport(self.policy)
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            transport=EgressTransport(self._pool, self._current_gate, self._report),
            trust_env=False,
        )

    async def _current_gate(self) -> Gate:
        return self.gate

    def _report(self, record: EgressRecord) -> None:
        log_record(record)
        if self._observe is not None:
            self._observe(record)

    async def check_target(self, url: str, *, field: str) -> None:
        """The policy on a URL a caller gives (``field`` names it): ``EgressDenied`` (422,
        ``egress_denied``, the message naming the rule) unless a delivery may be attempted."""
        host, port = url_target(url, field=field)
        try:
            parsed = httpx.URL(url)  # what a delivery will send to, or nothing it can send
        except httpx.InvalidURL as exc:
            raise EgressDenied(
                f"{field}: not a URL the sender can use ({exc}) (rule: url)",
                details={"field": field, "rule": "url"},
            ) from None
        try:
            self.gate.check(parsed.scheme, host, port, "POST")
        except EgressDenied as exc:
            details = {"field": field, **_rule(exc)}
            raise EgressDenied(f"{field}: {exc.message}", details=details) from None
        await self.policy.check_url(url, field=field)

    def secret_for(self, tenant_id: str) -> str:
        return tenant_secret(self._key, tenant_id)

    async def attempt(
        self,
        url: str,
        *,
        tenant_id: str,
        event_id: str,
        body: bytes,
        number: int,
        traceparent: str | None = None,
    ) -> Outcome:
        """One delivery attempt, logged (the outbox schedules the next): ``retry`` on network
        errors, timeouts, 408/425/429 and 5xx; ``refused`` on other 4xx; ``denied`` when the
        egress policy refuses the target."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/cloudevents+json",
            ID_HEADER: event_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(tenant_secret(self._key, tenant_id), timestamp, body),
        }
        if traceparent:
            headers["traceparent"] = traceparent
        shown = redact_url(url)
        try:
            reply = await self._client.post(url, content=body, headers=headers)
        except EgressDenied as exc:
            log.warning("webhook denied", url=shown, attempt=number, reason=exc.message)
            return "denied"
        except httpx.HTTPError as exc:
            log.info("webhook attempt", url=shown, attempt=number, error=type(exc).__name__)
            return "retry"
        log.info("webhook attempt", url=shown, attempt=number, status=reply.status_code)
        if reply.is_success:
            return "delivered"
        if reply.status_code >= 500 or reply.status_code in _RETRY_STATUSES:
            return "retry"
        return "refused"  # the receiver refused it for good

    def backoff_s(self, attempts: int) -> float:
        """The pause after ``attempts`` failed attempts (exponential, capped)."""
        return float(min(self._base_s * 2 ** max(attempts - 1, 0), self._max_s))

    @property
    def attempts(self) -> int:
        return self._attempts

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.aclose()


WEBHOOK_SOURCE = "the server's webhook rules (SHIPYARD_WEBHOOK_HOSTS, SHIPYARD_EGRESS_*)"


def log_record(record: EgressRecord) -> None:
    """A webhook attempt's record in the log (deliveries happen outside any run)."""
    if record.allowed:
        log.info("egress.request", source="webhook", **record.data())
    else:
        log.warning("egress.request", source="webhook", **record.data())


def _rule(exc: EgressDenied) -> dict[str, str]:
    rule = exc.details.get("rule") if isinstance(exc.details, dict) else None
    return {"rule": rule} if isinstance(rule, str) else {}
