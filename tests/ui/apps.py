"""The browser tests' app: the end-to-end app's agents, and two whose timelines show a routing
decision (``routed``) and guard decisions with redactions (``guarded``)."""

from __future__ import annotations

import shipyard
from shipyard import GuardPolicy, GuardRule
from shipyard.models.router import Candidate, Router, Rules
from tests.e2e.apps import app as e2e

picker = Router(
    "picker",
    [
        Candidate("scripted:echo", price=(1.0, 2.0)),
        Candidate("scripted:echo?delay_ms=1", price=(0.1, 0.2)),
    ],
    Rules(),
)
guards = GuardPolicy(
    rules=[
        GuardRule(detector="pii", surfaces=("input",), action="redact"),
        GuardRule(detector="pii", surfaces=("output",), action="redact"),
    ]
)

app = shipyard.App(
    agents=[
        *e2e.agents.values(),
        shipyard.Agent(name="routed", model="router:picker"),
        shipyard.Agent(name="guarded", model="scripted:echo", guards=guards),
    ],
    routers=[picker],
)
