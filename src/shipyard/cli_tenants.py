"""``shipyard tenants``: create, show and change tenants' policies from the command line.

Each change is recorded as made by ``cli:<OS user>``. A policy that does not validate, a
``set`` argument that is not ``section.field=value``, or a conflict with another change exits 1
with one line naming the field; a store that cannot be reached exits 2 (as every command).
"""

from __future__ import annotations

import getpass
import json
import re
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from shipyard.errors import InvalidInput, PolicyConflict, TenantNotFound
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.records.base import TenantRecord
from shipyard.stores.records.policy import TenantPolicy

if TYPE_CHECKING:
    from shipyard.config import Settings
    from shipyard.stores.records.base import RecordStore
    from shipyard.telemetry.audit import AuditSink

T = TypeVar("T")

tenants_cli = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Create, show and change tenants' policies.",
)

TENANT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _tenant_id(value: str) -> str:
    if not TENANT_ID.fullmatch(value):
        raise typer.BadParameter("letters, digits, '-', '_' or '.' (at most 128)")
    return value


TenantArg = Annotated[str, typer.Argument(help="The tenant's id.", callback=_tenant_id)]


@tenants_cli.command("create")
def tenants_create(
    tenant: TenantArg,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy-file", help="The policy as a JSON or TOML file (default: the default one)."
        ),
    ] = None,
) -> None:
    """Create a tenant's policy (version 1); exits 1 if it already has one."""
    policy = _validated(_read_file(policy_file) if policy_file else {})

    async def go(policies: TenantPolicies) -> TenantRecord:
        return await policies.put(tenant, policy, changed_by=_who(), expected_version=0)

    _echo(_with_policies(go, audited=("tenants.create", tenant)))


@tenants_cli.command("show")
def tenants_show(tenant: TenantArg) -> None:
    """Print a tenant's policy and its version as JSON."""

    async def go(policies: TenantPolicies) -> TenantRecord:
        return await policies.get(tenant)

    _echo(_with_policies(go))


@tenants_cli.command("set")
def tenants_set(
    tenant: TenantArg,
    assignments: Annotated[
        list[str],
        typer.Argument(
            help="section.field=value (e.g. limits.requests_per_minute=600, region=eu-west-1); "
            "the value is read as JSON if it is JSON (null unsets), else as text."
        ),
    ],
) -> None:
    """Change fields of a tenant's policy (creating the tenant if needed)."""
    _change(tenant, [_assignment(a) for a in assignments])


_Limit = Annotated[
    int | None,
    typer.Option(min=0, help="A limit ≥ 1; 0 unsets it (the server's default applies)."),
]


@tenants_cli.command("set-limits")
def tenants_set_limits(
    tenant: TenantArg,
    requests_per_minute: _Limit = None,
    key_requests_per_minute: _Limit = None,
    tokens_per_minute: _Limit = None,
    tokens_per_day: _Limit = None,
    key_tokens_per_minute: _Limit = None,
    max_concurrent_runs: _Limit = None,
) -> None:
    """Change a tenant's limits (the policy's limits section); options left out stay."""
    given = {
        "requests_per_minute": requests_per_minute,
        "key_requests_per_minute": key_requests_per_minute,
        "tokens_per_minute": tokens_per_minute,
        "tokens_per_day": tokens_per_day,
        "key_tokens_per_minute": key_tokens_per_minute,
        "max_concurrent_runs": max_concurrent_runs,
    }
    changes = [(["limits", k], v or None) for k, v in given.items() if v is not None]
    if not changes:
        raise _fail("nothing to change: give at least one limit (see --help)")
    _change(tenant, changes)


_Days = Annotated[
    int | None,
    typer.Option(min=0, help="Days kept, ≥ 1; 0 unsets it (the server's default applies)."),
]


@tenants_cli.command("set-retention")
def tenants_set_retention(
    tenant: TenantArg,
    runs_days: _Days = None,
    events_days: _Days = None,
    tasks_days: _Days = None,
    sessions_days: _Days = None,
    memories_days: _Days = None,
    artifacts_days: _Days = None,
    webhooks_days: _Days = None,
) -> None:
    """Change how long a tenant's data is kept (the policy's retention section); options left
    out stay."""
    given = {
        "runs_days": runs_days,
        "events_days": events_days,
        "tasks_days": tasks_days,
        "sessions_days": sessions_days,
        "memories_days": memories_days,
        "artifacts_days": artifacts_days,
        "webhooks_days": webhooks_days,
    }
    changes = [(["retention", k], v or None) for k, v in given.items() if v is not None]
    if not changes:
        raise _fail("nothing to change: give at least one period (see --help)")
    _change(tenant, changes)


def _change(tenant: str, changes: list[tuple[list[str], Any]]) -> None:
    """Apply ``changes`` (field path, value) to the tenant's policy as the next version."""

    async def go(policies: TenantPolicies) -> TenantRecord:
        try:
            current = await policies.get(tenant)
            document, version = current.policy.model_dump(mode="json"), current.version
        except TenantNotFound:
            document, version = TenantPolicy().model_dump(mode="json"), 0
        for path, value in changes:
            _assign(document, path, value)
        return await policies.put(
            tenant, _validated(document), changed_by=_who(), expected_version=version
        )

    _echo(_with_policies(go, audited=("tenants.set", tenant)))


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli"


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(1)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        found = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read the policy file {path}: {exc}") from None
    if not isinstance(found, dict):
        raise _fail(f"the policy file {path} must hold an object")
    return found


def _validated(document: dict[str, Any]) -> TenantPolicy:
    try:
        return TenantPolicy.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(f"invalid policy: {problems}") from None


def _assignment(raw: str) -> tuple[list[str], Any]:
    path, sep, value = raw.partition("=")
    fields = path.strip().split(".")
    if not sep or not all(fields):
        raise _fail(f"expected section.field=value, got {raw!r}")
    try:
        return fields, json.loads(value)
    except ValueError:
        return fields, value


def _assign(document: dict[str, Any], path: list[str], value: Any) -> None:
    target = document
    for i, name in enumerate(path[:-1]):
        inner = target.setdefault(name, {})
        if not isinstance(inner, dict):
            raise _fail(f"invalid policy: {'.'.join(path[: i + 1])}: is not a section")
        target = inner
    target[path[-1]] = value


def _echo(record: TenantRecord) -> None:
    typer.echo(json.dumps(record.model_dump(mode="json"), indent=2))


def _with_policies(
    action: Callable[[TenantPolicies], Awaitable[T]], audited: tuple[str, str] | None = None
) -> T:
    """``action`` on the record store; a change (``audited``: action and tenant) leaves an
    admin row in the audit log, refused or not."""
    from shipyard.cli_audit import admin_entry, with_store

    async def go(store: RecordStore, _: Settings, audit: AuditSink) -> T:
        try:
            done = await action(TenantPolicies(store, cache_s=0))
        except (PolicyConflict, TenantNotFound, InvalidInput) as exc:
            if audited:
                audit.record(admin_entry(*audited, audited[1], ok=False))
            raise _fail(exc.message) from None
        if audited:
            audit.record(admin_entry(*audited, audited[1]))
        return done

    return with_store(go)
