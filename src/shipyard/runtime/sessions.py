"""Stateful sessions: a conversation whose history lives in the state store, one turn at a time.

Keys per session (one hash tag, so Redis Cluster keeps them on one node)::

    ses:{id}:meta      the session's tenant, agent, TTL and metadata (JSON)
    ses:{id}:history   the conversation, one JSON message per item
    ses:{id}:version   how many turns have been committed
    ses:{id}:turn      the lease of the turn in progress

A turn:
1. takes the turn lease (a second turn meanwhile is refused: 409 ``session_busy``);
2. loads the history and runs the agent on it plus the new input, as a recorded run;
3. appends the input and everything the run added in one ``append_if`` on the version, so a
   failed or interrupted turn leaves no half-written history, and renews the TTL (sliding);
4. releases the lease.
The records keep a row per session and every turn as a run: when the live state expires the
transcript is still there, and the session answers 404 ``session_expired``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter

from shipyard.agents.context import RunInput
from shipyard.errors import SessionBusy, SessionExpired, SessionNotFound
from shipyard.models.base import Message, UserMessage
from shipyard.runtime.invoke import Invoker, RunOutcome
from shipyard.stores.records.base import Page, RecordStore, SessionRecord
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.events import Sink, new_id

_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)
LEASE_MARGIN_S = 30.0


class _Meta(BaseModel):
    tenant_id: str
    agent: str
    ttl_s: float


@dataclass(frozen=True, slots=True)
class SessionView:
    record: SessionRecord
    history: list[Message]
    turns: int


class _Keys:
    def __init__(self, session_id: str) -> None:
        base = f"ses:{{{session_id}}}"
        self.meta, self.history = f"{base}:meta", f"{base}:history"
        self.version, self.turn = f"{base}:version", f"{base}:turn"


class SessionService:
    def __init__(
        self,
        state: StateStore,
        records: RecordStore,
        invoker: Invoker,
        *,
        default_ttl_s: float,
        run_timeout_s: float,
    ) -> None:
        self._state = state
        self._records = records
        self._invoker = invoker
        self._default_ttl_s = default_ttl_s
        self._lease_s = run_timeout_s + LEASE_MARGIN_S

    async def create(
        self, tenant_id: str, agent: str, *, metadata: dict[str, Any], ttl_s: float | None
    ) -> SessionRecord:
        target = self._invoker.agent(agent)  # 404 for an unknown agent, before anything is kept
        record = SessionRecord(
            id=new_id("ses"),
            tenant_id=tenant_id,
            agent=target.name,
            metadata=metadata,
            ttl_s=ttl_s or self._default_ttl_s,
            created_at=datetime.now(UTC),
        )
        await self._records.add_session(record)
        meta = _Meta(tenant_id=tenant_id, agent=target.name, ttl_s=record.ttl_s)
        await self._state.set(
            _Keys(record.id).meta, meta.model_dump_json().encode(), ttl_s=record.ttl_s
        )
        return record

    async def get(self, tenant_id: str, session_id: str) -> SessionView:
        record = await self._record(tenant_id, session_id)
        keys = _Keys(session_id)
        await self._live(tenant_id, session_id, keys)
        history = [_MESSAGE.validate_json(item) for item in await self._state.range(keys.history)]
        version = await self._state.get(keys.version)
        return SessionView(record=record, history=history, turns=int(version or 0))

    async def list(
        self, tenant_id: str, *, agent: str | None, limit: int, cursor: str | None
    ) -> Page[SessionRecord]:
        return await self._records.list_sessions(tenant_id, agent=agent, limit=limit, cursor=cursor)

    async def delete(self, tenant_id: str, session_id: str) -> None:
        await self._record(tenant_id, session_id)
        keys = _Keys(session_id)
        await self._records.delete_session(tenant_id, session_id)
        await self._state.delete(keys.meta, keys.history, keys.version)

    async def check(self, tenant_id: str, session_id: str) -> None:
        """Raise what a turn would raise for a missing, deleted or expired session."""
        await self._live(tenant_id, session_id, _Keys(session_id))

    async def turn(
        self,
        tenant_id: str,
        session_id: str,
        input: RunInput,
        *,
        sinks: Sequence[Sink] = (),
        stream_deltas: bool = False,
    ) -> RunOutcome:
        keys = _Keys(session_id)
        meta = await self._live(tenant_id, session_id, keys)
        run_id = new_id("run")
        lease = await self._state.acquire_lease(keys.turn, run_id, ttl_s=self._lease_s)
        if lease is None:
            raise SessionBusy(f"session {session_id} is running another turn; try again")
        try:
            version = await self._state.get(keys.version)
            history = [_MESSAGE.validate_json(i) for i in await self._state.range(keys.history)]
            said: list[Message] = (
                [UserMessage(content=input)] if isinstance(input, str) else list(input)
            )
            outcome = await self._invoker.invoke(
                tenant_id=tenant_id,
                agent=meta.agent,
                input=[*history, *said],
                sinks=sinks,
                stream_deltas=stream_deltas,
                run_id=run_id,
                session_id=session_id,
            )
            await self._commit(keys, meta, version, [*said, *outcome.messages])
            return outcome
        finally:
            await self._state.release_lease(lease)

    async def _commit(
        self, keys: _Keys, meta: _Meta, version: bytes | None, messages: Sequence[Message]
    ) -> None:
        items = [_MESSAGE.dump_json(m, exclude_none=True) for m in messages]
        new_version = str(int(version or 0) + 1).encode()
        written = await self._state.append_if(
            keys.history, items, guard_key=keys.version, expected=version, new=new_version,
            ttl_s=meta.ttl_s,
        )  # fmt: skip
        if not written:  # our lease ran out and another turn committed first
            raise SessionBusy("the session changed during this turn; its answer was not kept")
        await self._state.expire(keys.meta, meta.ttl_s)

    async def _live(self, tenant_id: str, session_id: str, keys: _Keys) -> _Meta:
        raw = await self._state.get(keys.meta)
        if raw is None:
            record = await self._record(tenant_id, session_id)
            raise SessionExpired(
                f"session {record.id} expired after {record.ttl_s:g}s idle; "
                "its turns remain in GET /v1/runs?session_id=..."
            )
        meta = _Meta.model_validate_json(raw)
        if meta.tenant_id != tenant_id:
            raise SessionNotFound(f"no session {session_id!r}")
        return meta

    async def _record(self, tenant_id: str, session_id: str) -> SessionRecord:
        record = await self._records.get_session(tenant_id, session_id)
        if record is None or record.deleted_at is not None:
            raise SessionNotFound(f"no session {session_id!r}")
        return record
