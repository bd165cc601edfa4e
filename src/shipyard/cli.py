"""The ``shipyard`` command: serve, invoke, keys, tenants, migrate."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from shipyard.cli_audit import admin_entry, audit_cli, parse_duration, with_store
from shipyard.cli_doctor import doctor
from shipyard.cli_guard import guard_cli
from shipyard.cli_router import router_cli
from shipyard.config import Settings, load_settings
from shipyard.errors import ShipyardError
from shipyard.telemetry.audit import AuditSink

if TYPE_CHECKING:
    from shipyard.api.keys import KeyService
    from shipyard.stores.records.base import ApiKeyRecord, Migration, RecordStore

T = TypeVar("T")

# Help texts are plain text (the docstrings' reST would show its markup); rich markup is off so
# that brackets in a help text print as written.
cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Shipyard serves AI agents: serve, worker, invoke, keys, tenants, audit, migrate.",
)
keys_cli = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Create, list, rotate and revoke API keys."
)
cli.add_typer(keys_cli, name="keys")


def _print_version(value: bool) -> None:
    if value:
        from shipyard._version import __version__

        typer.echo(f"shipyard {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Shipyard serves AI agents: serve, worker, invoke, keys, tenants, audit, migrate."""


AppOption = Annotated[
    str | None,
    typer.Option("--app", help="The app to serve, module:attribute (default: examples)."),
]


def _settings(**overrides: Any) -> Settings:
    from shipyard.app import prepare_settings
    from shipyard.telemetry.logging import configure_logging

    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.log_level, settings.log_format)
    # plain credentials refused in production (warned of otherwise), secret:// references read
    return prepare_settings(settings)


def _run(coro_fn: Callable[[], Awaitable[T]], runner: Callable[[Any], Any] = asyncio.run) -> T:
    """Run ``coro_fn`` (with ``runner``: ``uvloop.run`` for the long-lived processes); a
    ``ShipyardError`` becomes one red line and exit code 2."""
    try:
        result: T = runner(coro_fn())
        return result
    except ShipyardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(2) from None


WS_SLACK_BYTES = 64 * 1024
"""How far past SHIPYARD_MAX_BODY_BYTES a WebSocket message is still read, to answer it with a
``payload_too_large`` frame rather than a bare close."""


@cli.command()
def serve(
    app: AppOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (SHIPYARD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (SHIPYARD_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing the port (uvicorn's process manager); "
            "1: this process serves.",
        ),
    ] = 1,
) -> None:
    """Serve the app's agents over HTTP."""
    import uvicorn
    import uvloop

    from shipyard.api.protocol import headers_deadline_protocol
    from shipyard.app import check_stores, load_app, prepare_stores

    try:
        settings = _settings(host=host, port=port, app=app)
        asgi = load_app(settings.app).asgi(settings, prepare=False)
    except ShipyardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(2) from None
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        # a WebSocket message is bounded like a body: over max_body_bytes the route answers
        # payload_too_large; far over it, the server closes (1009) before reading it all
        "ws_max_size": settings.max_body_bytes + WS_SLACK_BYTES,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "log_config": None,  # uvicorn's records go through our logging (JSON or console)
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1:
        _serve_workers(settings, asgi, workers, options)
        return
    config = uvicorn.Config(
        asgi,
        http=headers_deadline_protocol(settings.request_timeout_s),  # httptools, headers timed
        **options,
    )

    async def main() -> None:
        # The stores are checked and prepared in the server's own loop, before it listens: a
        # store that cannot be reached stops the start with one clear line, not a traceback.
        await check_stores(asgi.state.services, settings)
        await prepare_stores(asgi.state.services.records, asgi.state.keys, settings)
        # Everything imported and built so far lives as long as the process: move it out of the
        # collector's sight, or each full collection walks ~300k objects (~80 ms pauses, measured).
        gc.freeze()
        typer.echo(
            f"Shipyard serving on http://{settings.host}:{settings.port} (docs at /docs)", err=True
        )
        typer.echo(default_model_line(settings), err=True)
        await uvicorn.Server(config).serve()

    from shipyard.telemetry.logging import flush_before_signals

    flush_before_signals(signal.SIGTERM, signal.SIGINT)

    _run(main, uvloop.run)


def _serve_workers(settings: Settings, asgi: Any, workers: int, options: dict[str, Any]) -> None:
    """``serve --workers N``: the stores checked and prepared here once, then N children."""
    from shipyard.app import check_stores, prepare_stores
    from shipyard.cli_serve import serve_workers, several_process_problems

    problems = several_process_problems(settings)
    if problems:
        typer.secho(f"error: --workers {workers}: " + "; ".join(problems), fg="red", err=True)
        raise typer.Exit(2)

    async def prepare() -> None:
        try:
            await check_stores(asgi.state.services, settings)
            await prepare_stores(asgi.state.services.records, asgi.state.keys, settings)
        finally:
            await asgi.state.services.close()

    _run(prepare)
    url = f"http://{settings.host}:{settings.port}"
    typer.echo(f"Shipyard serving on {url} with {workers} processes (docs at /docs)", err=True)
    typer.echo(default_model_line(settings), err=True)
    serve_workers(settings, workers, options)


cli.command()(doctor)


@cli.command()
def worker(
    app: AppOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks run at once.")] = 4,
) -> None:
    """Run tasks from the broker until SIGTERM/SIGINT (in-flight tasks finish first)."""

    import uvloop

    from shipyard.app import build_keys, build_services, check_stores, load_app, prepare_stores
    from shipyard.runtime.worker import Worker

    os.environ.setdefault("OTEL_SERVICE_NAME", "shipyard-worker")  # the traces' service.name
    try:
        settings = _settings(app=app)
        services = build_services(load_app(settings.app), settings)
    except ShipyardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        await check_stores(services, settings)  # as serve: one line naming the store, exit 2
        await prepare_stores(services.records, build_keys(services.records, settings), settings)
        await services.start()  # a worker's metrics are on SHIPYARD_METRICS_PORT only
        runner = Worker(
            services,
            concurrency=concurrency,
            max_attempts=settings.task_max_attempts,
            retry_base_s=settings.task_retry_base_s,
            heartbeat_s=settings.worker_heartbeat_s,
            worker_retention_s=settings.worker_retention_s,
            webhook_retention_s=settings.webhook_retention_s,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        gc.freeze()
        typer.echo(f"Shipyard worker {runner.name} running ({concurrency} at once)", err=True)
        try:
            await runner.run()
        finally:
            await services.close()
        typer.echo("worker stopped", err=True)

    _run(main, uvloop.run)


@cli.command()
def migrate() -> None:
    """Bring the record store's schema up to date."""
    from shipyard.app import open_record_store

    async def go() -> None:
        settings = _settings()
        store = open_record_store(settings.resolved_database_url)
        try:
            done = await store.migrate()
        finally:
            await store.close()
        typer.echo(
            f"record store: {_migration_line(done)} ({_redact(settings.resolved_database_url)})"
        )

    _run(go)


@cli.command()
def invoke(
    agent: Annotated[str, typer.Argument(help="Agent name.")],
    text: Annotated[str, typer.Argument(help="The user's message.")],
    local: Annotated[bool, typer.Option("--local", help="Run in this process, no server.")] = False,
    app: AppOption = None,
    url: Annotated[
        str | None, typer.Option(help="Server URL (default from SHIPYARD_HOST/PORT).")
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="SHIPYARD_API_KEY", help="API key (or SHIPYARD_ADMIN_KEY).")
    ] = None,
) -> None:
    """Run an agent once and print its answer."""
    settings = _settings(app=app)
    if local:
        result = _run(lambda: _invoke_local(settings, agent, text))
    else:
        result = _run(lambda: _invoke_remote(settings, url, key, agent, text))
    typer.echo(result["output"])
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "output"}), err=True)


async def _invoke_local(settings: Settings, agent: str, text: str) -> dict[str, Any]:
    from shipyard.agents.context import RunRequest
    from shipyard.app import build_services, load_app

    services = build_services(load_app(settings.app), settings)
    await services.records.migrate()
    await services.start()
    try:
        request = RunRequest(tenant_id="default", agent=agent, input=text)
        outcome = await services.invoker.invoke(request)
    finally:
        await services.close()
    return {"output": outcome.answer, "run_id": outcome.run_id, "usage": outcome.usage.model_dump()}


async def _invoke_remote(
    settings: Settings, url: str | None, key: str | None, agent: str, text: str
) -> dict[str, Any]:
    import httpx

    base = url or f"http://{settings.host}:{settings.port}"
    secret = key or settings.admin_key
    if not secret:
        raise ShipyardError("no API key: pass --key or set SHIPYARD_API_KEY")
    async with httpx.AsyncClient(base_url=base, timeout=settings.run_timeout_s + 5) as client:
        try:
            reply = await client.post(
                f"/v1/agents/{agent}/invoke",
                json={"input": text},
                headers={"Authorization": f"Bearer {secret}"},
            )
        except httpx.HTTPError as exc:
            raise ShipyardError(f"cannot reach {base}: {exc}") from exc
    body: dict[str, Any] = reply.json()
    if reply.status_code != 200:
        raise ShipyardError(f"{reply.status_code} {body.get('error', body)}")
    return body


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: admin, invoke, read, pii:reveal.")
    ] = "invoke,read",
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    expires_in: Annotated[
        str | None, typer.Option(help="The key answers 401 after this: 90d, 12h, 2w...")
    ] = None,
) -> None:
    """Create a key and print it — the only time it is shown."""
    lifetime = parse_duration(expires_in) if expires_in else None

    async def go(keys: KeyService, audit: AuditSink) -> str:
        secret, record = await keys.create(
            tenant, scopes.split(","), name=name, expires_in=lifetime
        )
        audit.record(admin_entry("keys.create", record.id, tenant))
        until = f", expiring {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
        typer.echo(
            f"created {record.id} for tenant {tenant} with scopes {','.join(record.scopes)}{until}",
            err=True,
        )
        return secret

    typer.echo(_with_keys(go))


@keys_cli.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None) -> None:
    """List keys (never their secrets), with their last use and expiry."""

    async def go(keys: KeyService, _: AuditSink) -> list[ApiKeyRecord]:
        return await keys.list(tenant)

    now = datetime.now(UTC)
    for k in _with_keys(go):
        if k.revoked_at:
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}"
        elif k.expires_at:
            word = "expired" if k.expires_at <= now else "expires"
            state = f"{word} {k.expires_at:%Y-%m-%d %H:%M}"
        else:
            state = "active"
        used = f"used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        typer.echo(
            f"{k.id}  {k.tenant_id:<16} {k.prefix}…  {','.join(k.scopes):<18} {state}  {used}  "
            f"{k.name}"
        )


@keys_cli.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (from 'keys list').")],
    grace: Annotated[
        str, typer.Option(help="How long the old key stays valid: 24h, 7d...")
    ] = "24h",
) -> None:
    """Print a new key with the old one's tenant, scopes and lifetime; the old one keeps
    working for the grace period, then answers 401."""
    period = parse_duration(grace)

    async def go(keys: KeyService, audit: AuditSink) -> str:
        secret, record = await keys.rotate(key_id, grace=period)
        audit.record(admin_entry("keys.rotate", key_id, record.tenant_id))
        typer.echo(f"rotated {key_id} to {record.id}; {key_id} expires in {grace}", err=True)
        return secret

    typer.echo(_with_keys(go))


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from 'keys list').")],
) -> None:
    """Revoke a key; servers stop accepting it within SHIPYARD_KEY_CACHE_S seconds."""

    async def go(keys: KeyService, audit: AuditSink) -> bool:
        revoked = await keys.revoke(key_id)
        audit.record(admin_entry("keys.revoke", key_id, None, ok=revoked))
        return revoked

    if not _with_keys(go):
        typer.secho(f"error: no key {key_id}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


def _with_keys(action: Callable[[KeyService, AuditSink], Awaitable[T]]) -> T:
    from shipyard.app import build_keys

    async def go(store: RecordStore, settings: Settings, audit: AuditSink) -> T:
        return await action(build_keys(store, settings), audit)

    return with_store(go)


def _migration_line(done: Migration) -> str:
    if done.before is None:
        return f"created the schema at revision {done.after}"
    if done.before == done.after:
        return f"already at revision {done.after}"
    return f"migrated from revision {done.before} to {done.after}"


def default_model_line(settings: Settings) -> str:
    """The banner's line that says which model serves agents that name none, and why."""
    model = settings.resolved_model
    if settings.model:
        return f"default model: {model} (SHIPYARD_MODEL)"
    if model.startswith("local:"):
        return f"default model: {model} (offline, small; set SHIPYARD_MODEL or OPENAI_API_KEY)"
    return f"default model: {model} (OPENAI_API_KEY is set; SHIPYARD_MODEL overrides)"


def _redact(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if sep else url


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        cli()
    except ShipyardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        sys.exit(2)


from shipyard.cli_tenants import tenants_cli  # noqa: E402  (it reuses this module's helpers)

cli.add_typer(tenants_cli, name="tenants")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(guard_cli, name="guard")
cli.add_typer(router_cli, name="router")


if __name__ == "__main__":
    main()
