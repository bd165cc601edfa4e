"""Guard overhead: the stateless invoke with a typical guard policy on (``SHIPYARD_GUARDS``:
injection on the input and tool results, PII and secrets on the answer and each model
response), against the same server with no guards.

Issue target (guards): at most 15% lower throughput with the policy on. The detectors' own
latency per text is measured by ``shipyard guard eval``. The policy names the built-in
detectors: a server without them fails to start, and the row says so.
"""

from __future__ import annotations

import json

from bench.common import BenchConfig, BenchResult
from bench.onoff import OnOff
from bench.onoff import run as run_on_off

TARGET_LOSS = 0.15
POLICY = json.dumps(
    {
        "rules": [
            {"detector": "injection", "surfaces": ["input", "tool_result"], "action": "block"},
            {"detector": "pii", "surfaces": ["output"], "action": "redact"},
            {"detector": "secrets", "surfaces": ["output"], "action": "redact"},
        ]
    }
)
SPEC = OnOff(
    name="guards",
    on={"SHIPYARD_GUARDS": POLICY},
    off={"SHIPYARD_GUARDS": ""},
    target_loss=TARGET_LOSS,
    what="with the guard policy on",
)


async def run(config: BenchConfig) -> BenchResult:
    return await run_on_off(SPEC, config)
