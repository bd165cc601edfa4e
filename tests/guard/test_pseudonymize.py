"""The ``pseudonymize`` action: personal data in the input becomes tokens before the model sees
it, the mapping lives in the state store (SQLite and Redis), the caller gets the originals
back — in the answer and in its stream, never part of a token — and a tool gets the real
values in its arguments, while the records and the session history keep the tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shipyard import Agent, GuardPolicy, GuardRule, tool
from shipyard.agents.context import RunRequest
from shipyard.guard.pseudonyms import TOKEN_MAX, Pseudonyms, Restorer
from shipyard.models.base import UserMessage
from shipyard.models.resolver import ModelResolver
from shipyard.models.scripted import ScriptedCall
from shipyard.runtime.invoke import Invoker, RunLimits, RunOutcome
from shipyard.runtime.pseudonym_keys import PseudonymKeys
from shipyard.runtime.pseudonyms import PseudonymVault, RestoringSink, owner_of
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.events import Event
from shipyard.testing import ScriptedModel, ScriptStep
from tests.runtime.test_sessions import close, make_service
from tests.stores.state.conftest import store

__all__ = ["store"]  # the fixture behind ``state``

NAME, EMAIL = "Maria Garcia", "maria.garcia@example.com"
SAID = f"Hi, I am {NAME}, mail me at {EMAIL} please."
TOKENS = "Hi, I am <PERSON_1>, mail me at <EMAIL_ADDRESS_1> please."
KEY = "k" * 40
"""The key that seals the mappings in these tests (a plain setting: a development server's)."""
PSEUDONYMIZE = GuardPolicy(
    rules=(GuardRule(detector="pii", surfaces=("input", "tool_result"), action="pseudonymize"),)
)


@pytest.fixture
def state(store: StateStore) -> StateStore:
    """The state store contract's fixture (SQLite and Redis) under this file's name."""
    return store


class Run:
    """An invoker with a pseudonym vault on ``state`` (sealed with ``keys``); keeps every
    stored event."""

    def __init__(self, agent: Agent, state: StateStore, keys: PseudonymKeys | None = None) -> None:
        self.records: list[Event] = []
        self.invoker = Invoker(
            {agent.name: agent},
            None,
            RunLimits(default_model="scripted:echo"),
            observers=[self.records.append],
            models=ModelResolver(),
        )
        self.vault = vault(state, keys)
        self.invoker.pseudonyms = self.vault
        self.state = state
        self.agent = agent

    async def __call__(
        self, input: Any, caller: list[Event] | None = None, **kw: Any
    ) -> RunOutcome:
        request = RunRequest(tenant_id="t1", agent=self.agent.name, input=input, **kw)
        sinks = [] if caller is None else [caller.append]
        return await self.invoker.invoke(request, sinks=sinks, stream_deltas=True)


def vault(state: StateStore, keys: PseudonymKeys | None = None) -> PseudonymVault:
    """A vault on ``state`` sealing with ``keys`` (default: ``KEY``)."""
    return PseudonymVault(state, keys or PseudonymKeys(KEY), ttl_s=600, session_ttl_s=1200)


def blob(events: list[Event]) -> str:
    return json.dumps([e.data for e in events], ensure_ascii=False)


# -- the mapping ------------------------------------------------------------------------------


def test_a_value_keeps_its_token_and_tokens_restore() -> None:
    names = Pseudonyms()
    assert names.token("PERSON", NAME) == "<PERSON_1>"
    assert names.token("PERSON", "Jan Kowalski") == "<PERSON_2>"
    assert names.token("PERSON", NAME) == "<PERSON_1>"
    assert names.token("EMAIL_ADDRESS", EMAIL) == "<EMAIL_ADDRESS_1>"
    assert names.restore("<PERSON_2> wrote to <PERSON_1> (<PERSON_9>)") == (
        f"Jan Kowalski wrote to {NAME} (<PERSON_9>)"
    )
    again = Pseudonyms.loads(names.dumps())
    assert again.token("PERSON", "Jan Kowalski") == "<PERSON_2>" and not again.changed
    assert again.token("PERSON", "Ewa Nowak") == "<PERSON_3>" and again.changed
    assert Pseudonyms.loads(b"not json").tokens() == {}


def test_tool_arguments_are_restored_inside_their_json() -> None:
    names = Pseudonyms({"<PERSON_1>": 'Jo "JJ" O\\Neil'})
    restored = names.restore_json(json.dumps({"to": "<PERSON_1>", "n": [1, "<PERSON_1>"]}))
    assert json.loads(restored) == {"to": 'Jo "JJ" O\\Neil', "n": [1, 'Jo "JJ" O\\Neil']}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_a_token_split_across_deltas_is_released_whole_and_restored(size: int) -> None:
    names = Pseudonyms({"<PERSON_1>": NAME, "<EMAIL_ADDRESS_1>": EMAIL})
    text = "Dear <PERSON_1>, we wrote to <EMAIL_ADDRESS_1> and <PERSON_7>; 3 < 4 <"
    restorer = Restorer(names)
    released = [restorer.feed(text[i : i + size]) for i in range(0, len(text), size)]
    released.append(restorer.flush())
    assert "".join(released) == names.restore(text)
    for piece in released:  # never part of a token, never part of an original
        assert "<PER" not in piece or "<PERSON_7>" in piece
        assert "EMAIL_ADD" not in piece
        assert (NAME in piece) or not any(NAME[:n] in piece for n in (5, 8))


def test_a_restorer_holds_back_no_more_than_a_token() -> None:
    restorer = Restorer(Pseudonyms({"<PERSON_1>": NAME}))
    assert restorer.feed("<" + "A" * (TOKEN_MAX + 10)) == "<" + "A" * (TOKEN_MAX + 10)


def test_the_caller_stream_gets_originals_in_every_event() -> None:
    names = Pseudonyms({"<PERSON_1>": NAME})
    got: list[Event] = []
    sink = RestoringSink(got.append, names)
    base = Event(type="llm.delta", seq=1, ts=0.0, run_id="r", tenant_id="t", agent="a",
                 trace_id="0" * 32, span_id="0" * 16, data={"text": ""})  # fmt: skip
    for piece in ("Hello <PER", "SON_", "1", ">!", " Bye <PERS"):
        sink(base.model_copy(update={"data": {"text": piece}}))
    sink(base.model_copy(update={"type": "run.completed", "data": {"output": "x <PERSON_1>"}}))
    deltas = [e.data["text"] for e in got if e.type == "llm.delta"]
    assert deltas == ["Hello ", f"{NAME}!", " Bye ", "<PERS"]
    assert got[-1].type == "run.completed" and got[-1].data["output"] == f"x {NAME}"


def test_pseudonymize_is_refused_on_the_output_surface() -> None:
    with pytest.raises(ValidationError, match="not for the output surface"):
        GuardRule(detector="pii", surfaces=("output",), action="pseudonymize")


# -- a run, on each state store ---------------------------------------------------------------


async def test_the_model_never_sees_the_personal_data_and_the_caller_gets_it_back(
    state: StateStore,
) -> None:
    model = ScriptedModel(echo=True)
    run = Run(Agent(name="a", model=model, guards=PSEUDONYMIZE), state)
    caller: list[Event] = []
    outcome = await run(SAID, caller)
    [request] = model.requests
    assert request.messages[-1] == UserMessage(content=TOKENS)
    assert NAME not in json.dumps([m.model_dump() for m in request.messages])
    assert outcome.answer == f"echo: {SAID}" and outcome.output == f"echo: {TOKENS}"
    assert NAME not in blob(run.records) and EMAIL not in blob(run.records)  # records: tokens
    assert run.records[0].data["input"] == TOKENS
    flags = [e for e in run.records if e.type == "guard.flag"]
    assert [f.data["action"] for f in flags] == ["pseudonymize"]
    assert flags[0].data["types"] == ["EMAIL_ADDRESS", "PERSON"]
    streamed = "".join(e.data["text"] for e in caller if e.type == "llm.delta")
    assert streamed == f"echo: {SAID}"
    [done] = [e for e in caller if e.type == "run.completed"]
    assert done.data["output"] == f"echo: {SAID}"
    key = PseudonymVault.key("t1", owner_of(outcome.run_id, None))
    assert 0 < (await state.ttl(key) or 0) <= 600
    assert await run.vault.reveal("t1", outcome.run_id, None) == {
        "<PERSON_1>": NAME,
        "<EMAIL_ADDRESS_1>": EMAIL,
    }
    assert await run.vault.reveal("other-tenant", outcome.run_id, None) is None


async def test_a_tool_gets_the_real_values_and_its_result_is_pseudonymized_again(
    state: StateStore,
) -> None:
    seen: list[str] = []

    @tool
    async def send_mail(to: str, name: str) -> str:
        """Send a mail."""
        seen.append(f"{name} <{to}>")
        return f"sent to {name} at {to}"

    arguments = {"to": "<EMAIL_ADDRESS_1>", "name": "<PERSON_1>"}
    model = ScriptedModel(
        [
            ScriptStep(tool_calls=[ScriptedCall(name="send_mail", arguments=arguments)]),
            ScriptStep(text="Done: mailed <PERSON_1>."),
        ]
    )
    run = Run(Agent(name="a", model=model, guards=PSEUDONYMIZE, tools=[send_mail]), state)
    outcome = await run(SAID)
    assert seen == [f"{NAME} <{EMAIL}>"]
    tool_message = model.requests[1].messages[-1]
    assert tool_message.content == "sent to <PERSON_1> at <EMAIL_ADDRESS_1>"
    assert outcome.answer == f"Done: mailed {NAME}." and NAME not in blob(run.records)


async def test_a_session_keeps_its_tokens_across_turns(state: StateStore) -> None:
    model = ScriptedModel(echo=True)
    run = Run(Agent(name="a", model=model, guards=PSEUDONYMIZE), state)
    first = await run(SAID, session_id="s1")
    other = "Jan Kowalski"
    second = await run([UserMessage(content=f"{other} and {NAME} say hi")], session_id="s1")
    both = UserMessage(content="<PERSON_2> and <PERSON_1> say hi")
    assert model.requests[-1].messages[-1] == both
    assert second.answer == f"echo: {other} and {NAME} say hi"
    assert second.input == [both]
    revealed = await run.vault.reveal("t1", first.run_id, "s1")
    assert revealed == {"<PERSON_1>": NAME, "<EMAIL_ADDRESS_1>": EMAIL, "<PERSON_2>": other}
    assert 600 < (await state.ttl(PseudonymVault.key("t1", "session:s1")) or 0) <= 1200
    alone = await run(f"{other} again")  # another run: its own mapping
    assert model.requests[-1].messages[-1] == UserMessage(content="<PERSON_1> again")
    assert alone.answer == f"echo: {other} again"


async def test_a_session_history_keeps_the_tokens(state: StateStore, tmp_path: Path) -> None:
    model = ScriptedModel(echo=True)
    agent = Agent(name="a", model=model, guards=PSEUDONYMIZE)
    service = await make_service(state, tmp_path, {"a": agent})
    service._invoker.pseudonyms = vault(state)
    try:
        session = (await service.create("t1", "a", metadata={}, ttl_s=None, on_busy="reject")).id
        first = await service.turn(RunRequest.turn("t1", session, SAID))
        second = await service.turn(RunRequest.turn("t1", session, "and again"))
    finally:
        await close(service)
    assert first.answer == f"echo: {SAID}" and second.answer == "echo: and again"
    sent = json.dumps([m.model_dump() for m in model.requests[-1].messages])
    assert TOKENS in sent and NAME not in sent and EMAIL not in sent
