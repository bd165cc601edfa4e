"""The app of the budget tests across replicas: ``spender`` makes three priced model calls.

``scripted:metered`` is priced by the servers' ``SHIPYARD_PRICES_FILE`` ($0.001 a token). Each
call sends 50 words of 5 letters (300 characters: 79 tokens estimated, 50 counted) with
``max_tokens=60`` (51 words come back): its worst case is $0.139, its real cost $0.101.
"""

from __future__ import annotations

import shipyard
from shipyard import RunContext, agent
from shipyard.models.base import ModelRequest, UserMessage
from shipyard.testing import ScriptedModel

MODEL = ScriptedModel(echo=True, name="scripted:metered", delay_ms=20)
CALL = ModelRequest(messages=(UserMessage(content="spend " * 50),), max_tokens=60)
PRICE_PER_TOKEN = 0.001
CALL_WORST, CALL_REAL = 0.139, 0.101


@agent("spender")
async def spender(ctx: RunContext, input: object) -> str:
    for _ in range(3):
        await ctx.model(MODEL).complete(CALL)
    return "spent"


app = shipyard.App(agents=[spender, shipyard.Agent(name="echo", model="scripted:echo")])
