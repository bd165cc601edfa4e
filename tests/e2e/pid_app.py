"""An app whose agent answers with the id of the process that ran it (``serve --workers``)."""

from __future__ import annotations

import os

import shipyard
from shipyard import RunContext, agent


@agent("pid")
async def pid(ctx: RunContext, input: object) -> str:
    """The server process's id."""
    return str(os.getpid())


app = shipyard.App(agents=[pid])
