"""An app whose agent's tool writes a 3 MB artifact in chunks (more than one read chunk, so the
download streams and its checksum is checked across chunks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import shipyard
from shipyard import RunContext, tool
from shipyard.testing import ScriptedModel

BLOCK = bytes(range(256)) * 4096  # 1 MiB
BLOCKS = 3


async def _report() -> AsyncIterator[bytes]:
    for _ in range(BLOCKS):
        yield BLOCK


@tool
async def export(name: str, ctx: RunContext) -> str:
    """Export the data as an artifact.

    Args:
        name: The artifact's name.
    """
    record = await ctx.artifacts.put(name, _report(), "application/octet-stream")
    return f"exported {record.id}"


app = shipyard.App(
    agents=[
        shipyard.Agent(
            name="exporter",
            model=ScriptedModel(
                [{"tool_calls": [{"name": "export", "arguments": {"name": "data.bin"}}]}, "Done."]
            ),
            tools=[export],
        )
    ]
)
