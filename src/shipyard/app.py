"""``App``, the agents a server serves, and how a process loads and starts one. The wiring of
backends and services (the composition root) is the ``shipyard.compose`` package; its names
used by the CLI and the tests are importable from here too."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.agents.agent import AgentLike
from shipyard.compose.backends import (
    BLOB_STORES,
    BROKERS,
    MEMORY_STORES,
    RECORD_STORES,
    SECRET_STORES,
    STATE_STORES,
    check_stores,
    open_blob_stores,
    open_broker,
    open_record_store,
    open_secret_store,
    open_state_store,
    url_scheme,
)
from shipyard.compose.data import build_memory
from shipyard.compose.keys import audit_key
from shipyard.compose.security import build_audit, build_keys
from shipyard.compose.services import build_services, build_ui, price_routers
from shipyard.config import Settings, load_settings
from shipyard.errors import ConfigError
from shipyard.models.resolver import ModelWrapper
from shipyard.models.router import Router, check_router_refs
from shipyard.runtime.hooks import RunHook
from shipyard.stores.records.base import RecordStore
from shipyard.telemetry.events import ProcessorFactory

if TYPE_CHECKING:
    from fastapi import FastAPI

    from shipyard.api.keys import KeyService

__all__ = [
    "BLOB_STORES",
    "BROKERS",
    "DEFAULT_APP",
    "MEMORY_STORES",
    "RECORD_STORES",
    "SECRET_STORES",
    "STATE_STORES",
    "App",
    "announce_admin_key",
    "audit_key",
    "build_audit",
    "build_keys",
    "build_memory",
    "build_services",
    "check_stores",
    "load_app",
    "open_blob_stores",
    "open_broker",
    "open_record_store",
    "open_secret_store",
    "open_state_store",
    "prepare_settings",
    "prepare_stores",
    "price_routers",
    "url_scheme",
]

DEFAULT_APP = "examples.assistant:app"


class App:
    """The agents a Shipyard server serves: ``shipyard.App(agents=[...])``."""

    def __init__(
        self,
        agents: Sequence[AgentLike] = (),
        *,
        title: str = "Shipyard",
        model_wrappers: Sequence[ModelWrapper] = (),
        event_processors: Sequence[ProcessorFactory] = (),
        run_hooks: Sequence[RunHook] = (),
        routers: Sequence[Router] = (),
    ) -> None:
        """``model_wrappers``: composed around every model every run calls, the first
        innermost (see ``shipyard.models.wrapper``). ``event_processors``: make each run's
        processors, which every event passes through, in order, before any sink (see
        ``shipyard.telemetry.events.EventProcessor``). ``run_hooks``: run before and after
        every agent run (see ``shipyard.runtime.hooks``). ``routers``: what ``router:<name>``
        model references name (see ``shipyard.models.router``, docs/routing.md)."""
        self.routers = tuple(routers)
        self.run_hooks = tuple(run_hooks)
        self.title = title
        self.model_wrappers = tuple(model_wrappers)
        self.event_processors = tuple(event_processors)
        self.agents: dict[str, AgentLike] = {}
        for agent in agents:
            if not isinstance(agent, AgentLike):
                raise ConfigError(f"{agent!r} is not an agent (an Agent, or made with @agent)")
            if agent.name in self.agents:
                raise ConfigError(f"two agents are named {agent.name!r}")
            self.agents[agent.name] = agent
        check_router_refs(self.agents.values(), self.routers)

    def asgi(self, settings: Settings | None = None, *, prepare: bool = True) -> FastAPI:
        """The ASGI application serving these agents, wired from ``settings``.

        With ``prepare`` the app migrates the store and makes sure an admin key exists when it
        starts; ``shipyard serve`` does that itself first, to fail with a clean message.
        """
        from shipyard.api.app import create_app

        # settings given were prepared by whoever built them (the CLI): resolved, not checked
        if settings is None:
            settings = prepare_settings(load_settings())
        else:
            settings = prepare_settings(settings, check=False)
        services = build_services(self, settings)
        keys = build_keys(services.records, settings)

        async def on_startup() -> None:
            await check_stores(services, settings)
            await prepare_stores(services.records, keys, settings)

        return create_app(
            services,
            keys,
            on_startup=on_startup if prepare else None,
            title=self.title,
            max_body_bytes=settings.max_body_bytes,
            ui=build_ui(services, keys, settings) if settings.ui else None,
        )


async def prepare_stores(records: RecordStore, keys: KeyService, settings: Settings) -> None:
    """Migrate (if configured) and make sure an admin key exists, printing a new one once."""
    if settings.migrate_on_start:
        await records.migrate()
    new_key = await keys.bootstrap(settings.admin_key)
    if new_key:
        announce_admin_key(new_key, settings.operator_tenant)


def prepare_settings(settings: Settings, *, check: bool = True) -> Settings:
    """Refuse (production) or warn of plain credentials, then read the settings' ``secret://``
    references from the secret store (see ``shipyard.secret_settings``)."""
    from shipyard.secret_settings import prepare_settings as prepare

    return prepare(settings, open_secret_store, check=check)


def announce_admin_key(secret: str, tenant: str = "default") -> None:
    line = "=" * 72
    print(
        f"\n{line}\nCreated the first admin key (tenant '{tenant}', the operator's). "
        "It is shown only once:\n\n"
        f"    {secret}\n\nUse it as 'Authorization: Bearer <key>'; create more with "
        f"'shipyard keys create'.\n{line}\n",
        file=sys.stderr,
        flush=True,
    )


def load_app(reference: str | None) -> App:
    """Import ``module:attribute`` (the current folder is importable, as with uvicorn)."""
    reference = reference or DEFAULT_APP
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app {reference!r} must look like module:attribute")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for --app {reference}: {exc}") from exc
    found = getattr(module, attr, None)
    if callable(found) and not isinstance(found, App):
        found = found()
    if not isinstance(found, App):
        raise ConfigError(f"{reference} is not a shipyard.App (got {type(found).__name__})")
    return found
