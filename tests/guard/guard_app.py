"""The app the guard's end-to-end test serves (in its own process): an echo agent whose output
policy redacts card numbers (the test detector, registered on import)."""

from __future__ import annotations

import shipyard
import tests.guard.detectors  # noqa: F401  (registers test_cards)
from shipyard import GuardPolicy, GuardRule

CARDS = GuardPolicy(
    rules=(GuardRule(detector="test_cards", surfaces=("output",), action="redact"),)
)

app = shipyard.App(agents=[shipyard.Agent(name="echo", model="scripted:echo", guards=CARDS)])
