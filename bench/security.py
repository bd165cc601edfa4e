"""Security overhead: the stateless invoke with the audit log, rate limits and the egress policy
on (as shipped, plus a request rate limit per tenant and per key set far above the load, so
that every request is counted), against the same server with audit and limits off.

Issue target (security): at most 10% lower throughput with them on. The egress policy has no
switch: it guards tools' and webhooks' calls, which this echo agent does not make, so both
targets carry it.
"""

from __future__ import annotations

from bench.common import BenchConfig, BenchResult
from bench.onoff import OnOff
from bench.onoff import run as run_on_off

TARGET_LOSS = 0.10
HIGH = str(10**9)  # a limit never reached: every request is counted, none refused
SPEC = OnOff(
    name="security",
    on={
        "SHIPYARD_AUDIT": "true",
        "SHIPYARD_LIMITS": "true",
        "SHIPYARD_LIMIT_REQUESTS_PER_MINUTE": HIGH,
        "SHIPYARD_LIMIT_KEY_REQUESTS_PER_MINUTE": HIGH,
    },
    off={"SHIPYARD_AUDIT": "false", "SHIPYARD_LIMITS": "false"},
    target_loss=TARGET_LOSS,
    what="with audit and limits on",
)


async def run(config: BenchConfig) -> BenchResult:
    return await run_on_off(SPEC, config)
