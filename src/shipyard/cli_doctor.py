"""``shipyard doctor``: check a configuration before it goes live.

Each check prints ``ok``, ``warn`` or ``FAIL`` with what is wrong and how to fix it; the exit
code is 0 when nothing failed, 1 otherwise. ``--env production`` (or ``SHIPYARD_ENV``) is
strict: what development tolerates (plain credentials, embedded backends, no limits, plain-text
connections to other hosts) fails there. Checks: the settings parse; credentials are
``secret://`` references and the secret store answers them; no embedded backend where several
processes or replicas run; TLS on connections that leave the machine; default limits set; and
every store and the broker reachable, the record store at the newest migration.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import typer

from shipyard.config import Settings

Level = Literal["ok", "warn", "FAIL"]
PING_S = 10.0
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
_EMBEDDED_FIX = {
    "SHIPYARD_DATABASE_URL": "postgresql://user@host/db",
    "SHIPYARD_STATE_URL": "rediss://host:6379/0",
    "SHIPYARD_BROKER_URL": "amqps://user@host/ or sqs://<queue name prefix>",
    "SHIPYARD_BLOB_URL": "s3://<bucket prefix>?account=<id>",
}


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    what: str
    fix: str = ""


class Doctor:
    """The findings on one configuration; ``strict``: production's rules."""

    def __init__(self, *, strict: bool, processes: int) -> None:
        self.strict = strict
        self.processes = processes
        self.findings: list[Finding] = []

    def ok(self, what: str) -> None:
        self.findings.append(Finding("ok", what))

    def problem(self, what: str, fix: str, *, always: bool = False) -> None:
        """A failure in production (or ``always``), a warning otherwise."""
        self.findings.append(Finding("FAIL" if self.strict or always else "warn", what, fix))

    @property
    def failed(self) -> bool:
        return any(f.level == "FAIL" for f in self.findings)

    def credentials(self, settings: Settings) -> None:
        from shipyard.secret_settings import plain_credentials

        found = plain_credentials(settings, os.environ)
        if found:
            fix = "give each as a secret://<path>#<key> reference (docs/security.md#secrets)"
            self.problem(f"plain credentials: {', '.join(found)}", fix)
        else:
            self.ok("credentials are secret:// references (or none are set)")

    def embedded(self, settings: Settings) -> None:
        from shipyard.cli_serve import in_memory

        urls = {
            "SHIPYARD_DATABASE_URL": settings.resolved_database_url,
            "SHIPYARD_STATE_URL": settings.resolved_state_url,
            "SHIPYARD_BROKER_URL": settings.resolved_broker_url,
            "SHIPYARD_BLOB_URL": settings.resolved_blob_url,
        }
        for name, url in urls.items():
            scheme = url.partition("://")[0].split("+")[0]
            if scheme not in ("sqlite", "file"):
                self.ok(f"{name}: a shared backend ({scheme})")
            elif in_memory(url) and self.processes > 1:
                fix = f"use a SQLite file on one machine, or {_EMBEDDED_FIX[name]}"
                self.problem(f"{name} is in memory, with several processes", fix, always=True)
            elif self.strict:
                what = (
                    f"{name} is embedded ({scheme}): replicas on several machines cannot share it"
                )
                self.problem(what, f"use {_EMBEDDED_FIX[name]}")
            else:
                self.ok(f"{name}: embedded ({scheme}), for one machine")

    def tls(self, settings: Settings) -> None:
        urls = {
            "SHIPYARD_DATABASE_URL": settings.resolved_database_url,
            "SHIPYARD_STATE_URL": settings.resolved_state_url,
            "SHIPYARD_BROKER_URL": settings.resolved_broker_url,
            "SHIPYARD_SECRETS_URL": settings.secrets_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            "AWS_ENDPOINT_URL_SQS": os.environ.get("AWS_ENDPOINT_URL_SQS")
            or os.environ.get("AWS_ENDPOINT_URL", ""),
        }
        for name, url in urls.items():
            reason = plain_text(url)
            if reason:
                self.problem(
                    f"{name} connects to another host without TLS ({reason})", tls_fix(url)
                )
        if not any(f.what.endswith(")") and "without TLS" in f.what for f in self.findings):
            self.ok("connections that leave the machine use TLS")

    def limits(self, settings: Settings) -> None:
        defaults = [
            settings.limit_requests_per_minute,
            settings.limit_key_requests_per_minute,
            settings.limit_concurrent_runs,
        ]
        if not settings.limits:
            self.problem("limits are off (SHIPYARD_LIMITS=false)", "set SHIPYARD_LIMITS=true")
        elif not any(defaults):
            fix = "set SHIPYARD_LIMIT_REQUESTS_PER_MINUTE and SHIPYARD_LIMIT_CONCURRENT_RUNS"
            self.problem("no default limits: a tenant without a policy is unbounded", fix)
        else:
            self.ok("default limits are set")

    async def stores(self, settings: Settings) -> None:
        from shipyard.app import open_broker, open_record_store, open_state_store

        records = await self._reach(
            "record store", lambda: open_record_store(settings.resolved_database_url)
        )
        if records is not None:
            await self._schema(records, settings)
            await records.close()
        for role, opener in (
            ("state store", lambda: open_state_store(settings.resolved_state_url)),
            ("broker", lambda: open_broker(settings.resolved_broker_url)),
        ):
            store = await self._reach(role, opener)
            if store is not None:
                await store.close()

    async def _reach(self, role: str, opener: Callable[[], Any]) -> Any:
        from shipyard.errors import ShipyardError

        store = None
        try:
            store = opener()
            await asyncio.wait_for(store.ping(), PING_S)
        except (ShipyardError, TimeoutError, OSError) as exc:
            reason = exc.message if isinstance(exc, ShipyardError) else type(exc).__name__
            what = f"the {role} does not answer: {' '.join(reason.split())}"
            fix = f"check the {role}'s URL, network and credentials"
            self.problem(what, fix, always=True)
            if store is not None:
                await _quietly(store.close())
            return None
        self.ok(f"the {role} answers")
        return store

    async def _schema(self, records: Any, settings: Settings) -> None:
        is_current = getattr(records, "is_current", None)
        if is_current is None:
            return
        if await is_current():
            self.ok("the record store's schema is at the newest migration")
        elif settings.migrate_on_start:
            self.ok("the record store's schema is behind: the server migrates it when it starts")
        else:
            self.problem("the record store's schema is not at the newest migration",
                         "run `shipyard migrate`", always=True)  # fmt: skip


def plain_text(url: str) -> str | None:
    """Why ``url`` is a plain-text connection to another host, or ``None``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if host in LOCAL_HOSTS or parts.scheme in ("sqlite", "file", "env", "unix", "sqs", ""):
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    scheme = parts.scheme.split("+")[0]
    if scheme in ("redis", "amqp", "http") or parts.scheme.endswith("+http"):
        return f"{parts.scheme}://"
    if scheme in ("postgresql", "postgres"):
        mode = query.get("sslmode") or query.get("ssl")
        if mode not in ("require", "verify-ca", "verify-full", "true"):
            return "no sslmode=require"
    return None


def tls_fix(url: str) -> str:
    scheme = urlsplit(url).scheme
    fixes = {"redis": "rediss://", "amqp": "amqps://", "http": "https://"}
    if scheme.startswith("postgres"):
        return "add ?sslmode=require (or verify-full) to the URL"
    if scheme.endswith("+http"):
        return f"use {scheme.replace('+http', '+https')}://"
    return f"use {fixes.get(scheme, 'a TLS scheme')}"


async def _quietly(closing: Awaitable[Any]) -> None:
    try:
        await closing
    except Exception:
        return


async def examine(settings: Settings, *, strict: bool, processes: int) -> Doctor:
    """Every check on ``settings`` (as loaded, references not yet read)."""
    from shipyard.app import prepare_settings
    from shipyard.errors import ShipyardError

    doctor = Doctor(strict=strict, processes=processes)
    doctor.credentials(settings)
    try:
        resolved = await asyncio.to_thread(prepare_settings, settings, check=False)
    except ShipyardError as exc:
        fix = "check SHIPYARD_SECRETS_URL and the references' paths and keys"
        doctor.problem(f"the secret store cannot resolve the settings: {exc.message}", fix,
                       always=True)  # fmt: skip
        return doctor
    doctor.ok("secret:// references resolve through the secret store")
    doctor.embedded(resolved)
    doctor.tls(settings)
    doctor.limits(resolved)
    await doctor.stores(resolved)
    return doctor


def doctor(
    env: Annotated[
        str | None,
        typer.Option(
            help="development or production (default: SHIPYARD_ENV); production is strict."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes per machine.")] = 1,
    replicas: Annotated[int, typer.Option(min=1, help="Machines (or pods) running Shipyard.")] = 1,
) -> None:
    """Check the configuration before it goes live: exit 0 when well, 1 otherwise."""
    from shipyard.config import load_settings
    from shipyard.errors import ShipyardError

    try:
        settings = load_settings()
    except ShipyardError as exc:
        typer.echo(f"FAIL  {exc.message}\n      fix: correct the variable named above")
        raise typer.Exit(1) from None
    strict = (env or settings.env) == "production" or replicas > 1
    found = asyncio.run(examine(settings, strict=strict, processes=workers * replicas))
    for finding in found.findings:
        typer.echo(f"{finding.level:<5} {finding.what}")
        if finding.fix:
            typer.echo(f"      fix: {finding.fix}")
    verdict = "not ready: fix the FAIL lines" if found.failed else "ready"
    typer.echo(f"\n{verdict} ({'production' if strict else 'development'} rules)")
    raise typer.Exit(1 if found.failed else 0)
