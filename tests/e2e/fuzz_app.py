"""The app the OpenAPI fuzzing serves (``make fuzz``, ``tests/e2e/test_fuzz.py``): quick agents
only, on the scripted model, so that thousands of generated requests finish in minutes."""

from __future__ import annotations

import shipyard

app = shipyard.App(
    agents=[
        shipyard.Agent(name="echo", model="scripted:echo", description="Echoes."),
        shipyard.Agent(name="assistant", model="scripted:echo", description="Echoes too."),
    ]
)
