"""``shipyard audit``: check the audit log's chains (``verify``) and print the access review
(``report``). Both open the record store directly (``SHIPYARD_DATABASE_URL``) and take the audit
key from ``SHIPYARD_AUDIT_KEY`` (or the home folder's ``audit.key``), as the servers do.

Also the helpers the other commands share: durations (``90d``) and the audit rows of admin
actions made from the command line (a chain of their own per command).
"""

from __future__ import annotations

import getpass
import re
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer

from shipyard.telemetry.audit import AuditEntry, AuditSink

if TYPE_CHECKING:
    from shipyard.config import Settings
    from shipyard.stores.records.base import RecordStore

T = TypeVar("T")

audit_cli = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Verify the audit log and print the access review.",
)

_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w``."""
    match = _DURATION.fullmatch(text)
    if match is None or int(match[1]) <= 0:
        raise typer.BadParameter(f"{text!r}: a positive number and s, m, h, d or w (e.g. 90d)")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def who() -> str:
    """``cli:<OS user>@<host>``: the client of an admin action made from the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = "?"
    return f"cli:{user}@{socket.gethostname()}"


def admin_entry(action: str, resource: str, tenant_id: str | None, ok: bool = True) -> AuditEntry:
    return AuditEntry(
        action=action,
        resource=resource,
        outcome="ok" if ok else "rejected",
        tenant_id=tenant_id,
        scope="admin",
        client=who(),
    )


def with_store(action: Callable[[RecordStore, Settings, AuditSink], Awaitable[T]]) -> T:
    """``action`` on the migrated record store, with an audit log whose chain is closed (and
    signed) when the command ends."""
    from shipyard.app import build_audit, open_record_store
    from shipyard.cli import _run, _settings

    async def go() -> T:
        settings = _settings()
        store = open_record_store(settings.resolved_database_url)
        audit = build_audit(store, settings)
        try:
            await store.migrate()
            return await action(store, settings, audit)
        finally:
            try:
                await audit.close()
            finally:
                await store.close()

    return _run(go)


@audit_cli.command("verify")
def verify() -> None:
    """Check every chain and checkpoint; name the first bad row of each chain and exit 1 if
    anything was changed, 0 when all is intact."""
    from shipyard.app import audit_key
    from shipyard.runtime.audit_chain import ChainReport
    from shipyard.runtime.audit_chain import verify as check

    async def go(store: RecordStore, settings: Settings, _: AuditSink) -> list[ChainReport]:
        return await check(store, audit_key(settings))

    reports = with_store(go)
    bad = [r for r in reports if r.problems]
    for r in reports:
        state = "closed" if r.final else f"{r.unsigned} unsigned at the end"
        line = f"chain {r.chain_id}: {r.rows} rows, signed through {r.signed_seq} ({state})"
        typer.echo(f"{'BAD' if r.problems else 'ok '} {line}")
        for problem in sorted(r.problems, key=lambda p: p.seq):
            typer.echo(f"    {problem}")
    rows = sum(r.rows for r in reports)
    if bad:
        first = bad[0].first_problem
        typer.secho(f"audit log TAMPERED: {len(bad)} of {len(reports)} chains; first bad row: "
                    f"{first}", fg="red", err=True)  # fmt: skip
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {len(reports)} chains, {rows} rows")


@audit_cli.command("report")
def report(
    since: Annotated[str, typer.Option(help="The period: 30d, 12h, 2w...")] = "30d",
    output: Annotated[Literal["md", "json"], typer.Option("--format", help="md or json.")] = "md",
    unused_days: Annotated[
        int, typer.Option(min=1, help="A key not used for this many days is listed unused.")
    ] = 30,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """The access review: keys (last use, scopes granted against used, unused, expired),
    refused requests, admin actions, egress denials, guard blocks."""
    from shipyard.runtime.access_review import AccessReview, markdown, review

    start = datetime.now(UTC) - parse_duration(since)

    async def go(store: RecordStore, _: Settings, __: AuditSink) -> AccessReview:
        return await review(store, since=start, unused_days=unused_days, tenant_id=tenant)

    found = with_store(go)
    typer.echo(found.model_dump_json(indent=2) if output == "json" else markdown(found), nl=False)
