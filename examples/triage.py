"""Agents that call agents: ``triage`` asks a ``researcher`` in-process and hands a ``writer`` a
task through the broker. The whole exchange is one trace (``GET /v1/traces/{trace_id}``), and
each child run names its parent (``parent_run_id`` on ``GET /v1/runs/{id}``).

Serve it with a worker for the writer's tasks::

    shipyard serve --app examples.triage:app &
    shipyard worker --app examples.triage:app &
    curl -X POST localhost:8000/v1/agents/triage/invoke -H "Authorization: Bearer $KEY" \\
         -H 'content-type: application/json' -d '{"input": "Why is the sky blue?"}'

``triage`` is plain code, so the routing is the same whatever model runs the other two.
``concierge`` shows the same hand-offs as tools a model chooses to call.
"""

from __future__ import annotations

import shipyard
from shipyard import RunContext, RunInput, agent_tool, call_agent, submit_task, task_tool

researcher = shipyard.Agent(
    name="researcher",
    description="Collects the key facts a question needs.",
    instructions="List the few facts needed to answer the question, one per line. No prose.",
    max_tokens=256,
)

writer = shipyard.Agent(
    name="writer",
    description="Writes a short, clear answer from a question and research notes.",
    instructions="Answer the question in at most three sentences, using only the notes.",
    max_tokens=256,
)


@shipyard.agent("triage", description="Researches a question in-process, then has it written.")
async def triage(ctx: RunContext, input: RunInput) -> str:
    question = input if isinstance(input, str) else str(input[-1].content)
    notes = await call_agent("researcher", question)
    task = await submit_task(
        "writer", f"Question: {question}\n\nNotes:\n{notes}", wait=True, timeout_s=120
    )
    if task.status != "succeeded" or task.output is None:
        raise shipyard.ShipyardError(f"the writer's task {task.task_id} ended {task.status}")
    return task.output


concierge = shipyard.Agent(
    name="concierge",
    description="Decides itself whom to ask: the researcher (in-process) or the writer (task).",
    instructions=(
        "For a question, first ask_researcher for facts, then task_writer with the question "
        "and the facts, and reply with the writer's output."
    ),
    tools=[agent_tool("researcher"), task_tool("writer", wait=True, timeout_s=120)],
    max_steps=4,
)

app = shipyard.App(agents=[triage, researcher, writer, concierge])
