"""Tamper evidence of the audit log, on SQLite and PostgreSQL: two processes write their chains
at once, ``shipyard audit verify`` finds them intact (exit 0); then a row is edited, deleted or
inserted, a chain rewritten with fresh hashes, a checkpoint forged, a chain forged — directly in
the database — and verify exits 1 naming the first bad row."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sqlite3
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import Result

from shipyard.runtime.audit_chain import row_hash
from shipyard.stores.records.audit_base import AuditRecord
from shipyard.stores.records.sql import SqlRecordStore
from tests.cli_runner import invoke
from tests.conftest import POSTGRES_ADMIN_URL, admin_sql, missing_service
from tests.servers import ROOT

KEY = "audit-test-key-" + "k" * 32
ROWS = 40
BASE = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]


async def _written(url: str) -> None:
    """Migrate, then two writer processes at once."""
    store = SqlRecordStore.from_url(url)
    await store.migrate()
    await store.close()
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.runtime.audit_writer", url, KEY, str(ROWS), cwd=ROOT
        )
        for _ in range(2)
    ]
    assert [await w.wait() for w in writers] == [0, 0]


def _blocking(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to its end on a loop of its own (a module fixture is set up while a test's
    loop runs)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def sqlite_written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "written.db"
    _blocking(_written(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="module")
def postgres_written() -> Iterator[str]:
    """A database the writers wrote, a template for each test's copy."""
    name = f"shipyard_audit_{secrets.token_hex(4)}"
    try:
        _blocking(admin_sql(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        missing_service(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc!r}")
    _blocking(_written(f"{BASE}/{name}"))
    yield name
    _blocking(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A copy of the database two writers wrote, for this test to tamper with."""
    if request.param == "sqlite":
        copy = tmp_path / "records.db"
        shutil.copy(request.getfixturevalue("sqlite_written"), copy)
        yield f"sqlite:///{copy}"
        return
    template = request.getfixturevalue("postgres_written")
    name = f"shipyard_audit_{secrets.token_hex(4)}"
    await admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield f"{BASE}/{name}"
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def verify(url: str, tmp_path: Path) -> Result:
    """``shipyard audit verify`` (in this process, on a thread: the command runs its own loop)."""
    env = {"SHIPYARD_DATABASE_URL": url, "SHIPYARD_AUDIT_KEY": KEY, "SHIPYARD_LOG_LEVEL": "warning"}
    env["SHIPYARD_HOME"] = str(tmp_path / "home")
    return await asyncio.to_thread(invoke, ["audit", "verify"], env)


async def sql(url: str, statement: str, *args: object) -> list[tuple[object, ...]]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            marks = statement
            for i in range(len(args), 0, -1):
                marks = marks.replace(f"${i}", "?")
            return list(conn.execute(marks, args).fetchall())
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(statement, *args)]
    finally:
        await conn.close()


async def chains(url: str) -> list[str]:
    rows = await sql(url, "SELECT DISTINCT chain_id FROM audit_log ORDER BY chain_id")
    return [str(r[0]) for r in rows]


async def chain_rows(url: str, chain: str) -> list[AuditRecord]:
    store = SqlRecordStore.from_url(url)
    try:
        return await store.audit_chain(chain, limit=10_000)
    finally:
        await store.close()


def bad(result: Result, chain: str, seq: int, why: str) -> None:
    assert result.exit_code == 1, result.output
    assert f"first bad row: chain {chain} seq {seq}" in result.stderr, result.output
    assert why in result.stderr


async def test_two_writers_chains_verify_intact(url: str, tmp_path: Path) -> None:
    found = await chains(url)
    assert len(found) == 2
    assert [len(await chain_rows(url, c)) for c in found] == [ROWS, ROWS]
    result = await verify(url, tmp_path)
    assert result.exit_code == 0, result.output
    assert f"2 chains, {2 * ROWS} rows" in result.stdout


async def test_an_edited_row_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[1]
    await sql(url, "UPDATE audit_log SET outcome = 'denied' WHERE chain_id = $1 AND seq = 5", chain)
    bad(await verify(url, tmp_path), chain, 5, "altered")


async def test_a_deleted_row_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[0]
    await sql(url, "DELETE FROM audit_log WHERE chain_id = $1 AND seq = 7", chain)
    bad(await verify(url, tmp_path), chain, 7, "missing: deleted")


async def test_deleting_the_tail_of_a_chain_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[0]
    await sql(url, "DELETE FROM audit_log WHERE chain_id = $1 AND seq > 30", chain)
    bad(await verify(url, tmp_path), chain, 31, "are missing")


async def test_a_rewritten_history_with_fresh_hashes_is_found(url: str, tmp_path: Path) -> None:
    """The attacker edits row 3 and recomputes every hash after it: the chain holds together,
    but the signed checkpoints name other hashes."""
    chain = (await chains(url))[1]
    rows = await chain_rows(url, chain)
    previous = rows[1].hash
    for row in rows[2:]:
        if row.seq == 3:
            row = row.model_copy(update={"key_id": "key_innocent"})
        digest = row_hash(previous, row)
        await sql(
            url,
            "UPDATE audit_log SET key_id = $1, hash = $2 WHERE chain_id = $3 AND seq = $4",
            row.key_id, digest, chain, row.seq,
        )  # fmt: skip
        previous = digest
    result = await verify(url, tmp_path)
    assert result.exit_code == 1 and "rewritten" in result.stdout
    assert f"chain {chain} seq" in result.stderr


async def test_inserted_rows_are_found(url: str, tmp_path: Path) -> None:
    """A well-hashed row appended to a closed chain, and a whole forged chain."""
    chain = (await chains(url))[0]
    last = (await chain_rows(url, chain))[-1]
    forged = last.model_copy(update={"id": last.id[:-1] + "f", "seq": last.seq + 1})
    forged = forged.model_copy(update={"hash": row_hash(last.hash, forged)})
    fake = forged.model_copy(update={"chain_id": "zzz-forged", "seq": 1, "id": last.id[:-2] + "ee"})
    store = SqlRecordStore.from_url(url)
    try:
        fake = fake.model_copy(update={"hash": row_hash("", fake)})
        await store.append_audit([forged.model_dump(), fake.model_dump()])
    finally:
        await store.close()
    result = await verify(url, tmp_path)
    bad(result, chain, ROWS + 1, "final checkpoint: inserted")
    assert "chain zzz-forged seq 1" in result.stdout and "no signed checkpoint" in result.stdout


async def test_a_forged_checkpoint_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[1]
    await sql(
        url,
        "UPDATE audit_checkpoints SET row_hash = $1 WHERE chain_id = $2 AND seq = 1",
        "0" * 64, chain,
    )  # fmt: skip
    result = await verify(url, tmp_path)
    assert result.exit_code == 1 and "signature is wrong" in result.stdout
