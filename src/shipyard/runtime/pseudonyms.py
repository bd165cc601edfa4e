"""Where a run's pseudonyms live, and how the caller gets the originals back.

A run whose guard policy pseudonymizes keeps a ``Pseudonyms`` mapping (token -> original): a
session's runs share one, so a person keeps their token across turns; any other run has its
own. ``PseudonymVault`` keeps it in the state store under the tenant, for the run's time to
live (a session's: renewed on every turn), as one value sealed with AES-256-GCM
(``runtime.pseudonym_keys``), never logged and never put in an event or a record. The
records, the session history and the model keep the tokens; only the answer to the caller is
restored: the run's outcome, and the events of the caller's own stream (``RestoringSink``).
``pii:reveal`` reads a run's mapping (``reveal``).
"""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.agents.context import RunContext
from shipyard.guard.pseudonyms import Pseudonyms, Restorer
from shipyard.runtime.pseudonym_keys import PseudonymKeys
from shipyard.stores.state.base import Values
from shipyard.telemetry.events import Event, Sink

KEY_PREFIX = "pseudonyms"


def owner_of(run_id: str, session_id: str | None) -> str:
    """Whose mapping a run uses: its session's, else its own."""
    return f"session:{session_id}" if session_id else f"run:{run_id}"


class PseudonymVault:
    """The mappings of every run, in the state store, sealed with ``keys`` (``ttl_s``: a run's;
    ``session_ttl_s``: a session's, renewed on each of its turns)."""

    __slots__ = ("_keys", "_session_ttl_s", "_state", "_ttl_s")

    def __init__(
        self, state: Values, keys: PseudonymKeys, *, ttl_s: float, session_ttl_s: float
    ) -> None:
        self._state = state
        self._keys = keys
        self._ttl_s = ttl_s
        self._session_ttl_s = session_ttl_s

    @staticmethod
    def key(tenant_id: str, owner: str) -> str:
        return f"{KEY_PREFIX}:{tenant_id}:{owner}"

    async def load(self, ctx: RunContext) -> None:
        """Merge the stored mapping of ``ctx``'s run (or session) into ``ctx.pseudonyms``."""
        assert ctx.pseudonyms is not None
        stored = await self._read(self._key(ctx))
        ctx.pseudonyms.merge(stored.tokens())
        if ctx.request.session_id and len(stored):
            await self._state.expire(self._key(ctx), self._session_ttl_s)

    async def save(self, ctx: RunContext) -> None:
        """Store ``ctx.pseudonyms`` if a token was added since it was loaded or saved."""
        found = ctx.pseudonyms
        if found is None or not found.changed:
            return
        ttl = self._session_ttl_s if ctx.request.session_id else self._ttl_s
        key = self._key(ctx)
        await self._state.set(key, await self._keys.seal(key, found.dumps()), ttl_s=ttl)
        found.changed = False

    async def reveal(
        self, tenant_id: str, run_id: str, session_id: str | None
    ) -> dict[str, str] | None:
        """Token -> original for a run of ``tenant_id`` (None: no mapping, or it expired)."""
        found = await self._read(self.key(tenant_id, owner_of(run_id, session_id)))
        return found.tokens() if len(found) else None

    async def _read(self, key: str) -> Pseudonyms:
        """The mapping stored under ``key``: empty when there is none, or it does not open
        (another key's, altered, or sealed with a key no longer known)."""
        raw = await self._state.get(key)
        return Pseudonyms.loads(None if raw is None else await self._keys.open(key, raw))

    def _key(self, ctx: RunContext) -> str:
        return self.key(ctx.tenant_id, owner_of(ctx.run_id, ctx.request.session_id))


class RestoringSink:
    """The caller's stream with the originals back: each event's strings restored; streamed
    deltas through a ``Restorer``, so a token split across deltas is released only whole (and
    restored), never in part."""

    __slots__ = ("_last", "_pseudonyms", "_restorer", "_sink")

    def __init__(self, sink: Sink, pseudonyms: Pseudonyms) -> None:
        self._sink = sink
        self._pseudonyms = pseudonyms
        self._restorer = Restorer(pseudonyms)
        self._last: Event | None = None

    def __call__(self, event: Event) -> None:
        if event.type == "llm.delta":
            self._last = event
            text = self._restorer.feed(str(event.data.get("text", "")))
            if text:
                self._sink(_with_text(event, text))
            return
        self._release()
        data = self._pseudonyms.restore_data(event.data)
        self._sink(event.model_copy(update={"data": data}) if data != event.data else event)

    def _release(self) -> None:
        rest = self._restorer.flush()
        if rest and self._last is not None:
            self._sink(_with_text(self._last, rest))
        self._last = None


async def load_pseudonyms(vault: PseudonymVault | None, ctx: RunContext) -> None:
    """``vault.load(ctx)`` for a run that pseudonymizes, if there is a vault."""
    if vault is not None and ctx.pseudonyms is not None:
        await vault.load(ctx)


async def save_pseudonyms(vault: PseudonymVault | None, ctx: RunContext) -> None:
    """``vault.save(ctx)`` for a run that pseudonymizes, if there is a vault."""
    if vault is not None and ctx.pseudonyms is not None:
        await vault.save(ctx)


def restoring(sinks: Sequence[Sink], pseudonyms: Pseudonyms | None) -> list[Sink]:
    """The caller's ``sinks``, restoring when the run pseudonymizes."""
    if pseudonyms is None:
        return list(sinks)
    return [RestoringSink(sink, pseudonyms) for sink in sinks]


def _with_text(event: Event, text: str) -> Event:
    return event.model_copy(update={"data": {**event.data, "text": text}})


__all__ = [
    "PseudonymVault",
    "RestoringSink",
    "load_pseudonyms",
    "owner_of",
    "restoring",
    "save_pseudonyms",
]
