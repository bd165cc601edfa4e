"""``shipyard serve --workers N``: N server processes on one port (uvicorn's process manager).

The parent binds the socket, checks and prepares the stores once (migrations, the admin key),
then starts N children that each build the app from the same settings (``worker_app``, the
environment carries the command line's ``--app``) and accept on the shared socket; the kernel
spreads connections among them. SIGTERM or SIGINT to the parent stops every child gracefully;
a child that dies is replaced.

Several processes share the embedded SQLite files safely on one machine (WAL, busy timeouts,
pub/sub by polling; see ``stores/state/sqlite``), but an in-memory store (``sqlite://``) lives in
one process: sessions, leases and limits would not be shared, so N > 1 refuses it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from shipyard.api.protocol import HeadersDeadlineProtocol
from shipyard.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

HEALTHCHECK_S = 60
"""How long a child may take to answer the supervisor's ping (uvicorn's default, 5 s, is
shorter than building the app in a child on a busy machine: it was killed and replaced)."""


def in_memory(url: str) -> bool:
    """Whether a store URL keeps its data in the process (SQLite without a file)."""
    scheme, _, rest = url.partition("://")
    return scheme.split("+")[0] == "sqlite" and rest.split("?")[0] in ("", "/", "/:memory:")


def several_process_problems(settings: Settings) -> list[str]:
    """Why these settings cannot be shared by several processes (empty: they can)."""
    stores = {
        "SHIPYARD_DATABASE_URL": settings.resolved_database_url,
        "SHIPYARD_STATE_URL": settings.resolved_state_url,
    }
    return [
        f"{name} keeps its data in memory, in one process: use a SQLite file (one machine) "
        "or PostgreSQL / Redis"
        for name, url in stores.items()
        if in_memory(url)
    ]


class WorkerProtocol(HeadersDeadlineProtocol):
    """uvicorn's HTTP protocol with the headers' deadline of ``serve``; a child imports it by
    name, so the deadline comes from the environment (the parent sets it)."""

    headers_timeout_s = float(os.environ.get("SHIPYARD_REQUEST_TIMEOUT_S", "30"))


def serve_workers(settings: Settings, workers: int, options: dict[str, Any]) -> None:
    """Run ``workers`` server processes with uvicorn's ``options`` until SIGTERM/SIGINT."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if settings.app:
        os.environ["SHIPYARD_APP"] = settings.app  # the children load the same app
    os.environ["SHIPYARD_REQUEST_TIMEOUT_S"] = str(settings.request_timeout_s)
    config = uvicorn.Config(
        "shipyard.cli_serve:worker_app",
        factory=True,
        workers=workers,
        http="shipyard.cli_serve:WorkerProtocol",
        timeout_worker_healthcheck=HEALTHCHECK_S,
        **options,
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def worker_app() -> FastAPI:
    """One child's app (uvicorn calls this factory in each process): the stores were prepared
    by the parent, so it does not migrate again."""
    import gc

    from shipyard.app import load_app, prepare_settings
    from shipyard.config import load_settings
    from shipyard.telemetry.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = load_app(settings.app).asgi(prepare_settings(settings), prepare=False)
    gc.freeze()  # as ``serve``: what lives as long as the process leaves the collector's sight
    return app
