"""Tamper evidence of the audit log, on SQLite and PostgreSQL: two processes write their chains
at once, ``shipyard audit verify`` finds them intact (exit 0); then a row is edited, deleted or
inserted, a chain rewritten with fresh hashes, a checkpoint forged, a chain forged — directly in
the database — and verify exits 1 naming the first bad row."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shipyard.runtime.audit_chain import row_hash
from shipyard.stores.records.audit_base import AuditRecord
from shipyard.stores.records.sql import SqlRecordStore
from tests.conftest import POSTGRES_ADMIN_URL, admin_sql, missing_service
from tests.servers import ROOT, SHIPYARD

KEY = "audit-test-key-" + "k" * 32
ROWS = 40


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own, migrated, with two writers' chains in it."""
    if request.param == "sqlite":
        found = f"sqlite:///{tmp_path / 'records.db'}"
        name = None
    else:
        name = f"shipyard_audit_{secrets.token_hex(4)}"
        try:
            await admin_sql(f'CREATE DATABASE "{name}"')
        except (OSError, asyncpg.PostgresError) as exc:
            missing_service(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc!r}")
        found = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    store = SqlRecordStore.from_url(found)
    await store.migrate()
    await store.close()
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.runtime.audit_writer", found, KEY, str(ROWS), cwd=ROOT
        )
        for _ in range(2)
    ]
    assert [await w.wait() for w in writers] == [0, 0]
    yield found
    if name is not None:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def verify(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"SHIPYARD_DATABASE_URL": url, "SHIPYARD_AUDIT_KEY": KEY, "PATH": "/usr/bin:/bin"}
    env["SHIPYARD_HOME"] = str(tmp_path / "home")
    return subprocess.run(
        [SHIPYARD, "audit", "verify"], env=env, capture_output=True, text=True, timeout=60
    )


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


def bad(result: subprocess.CompletedProcess[str], chain: str, seq: int, why: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"first bad row: chain {chain} seq {seq}" in result.stderr, result.stderr
    assert why in result.stderr


async def test_two_writers_chains_verify_intact(url: str, tmp_path: Path) -> None:
    found = await chains(url)
    assert len(found) == 2
    assert [len(await chain_rows(url, c)) for c in found] == [ROWS, ROWS]
    result = verify(url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"2 chains, {2 * ROWS} rows" in result.stdout


async def test_an_edited_row_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[1]
    await sql(url, "UPDATE audit_log SET outcome = 'denied' WHERE chain_id = $1 AND seq = 5", chain)
    bad(verify(url, tmp_path), chain, 5, "altered")


async def test_a_deleted_row_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[0]
    await sql(url, "DELETE FROM audit_log WHERE chain_id = $1 AND seq = 7", chain)
    bad(verify(url, tmp_path), chain, 7, "missing: deleted")


async def test_deleting_the_tail_of_a_chain_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[0]
    await sql(url, "DELETE FROM audit_log WHERE chain_id = $1 AND seq > 30", chain)
    bad(verify(url, tmp_path), chain, 31, "are missing")


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
    result = verify(url, tmp_path)
    assert result.returncode == 1 and "rewritten" in result.stdout
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
        await store.append_audit([forged, fake.model_copy(update={"hash": row_hash("", fake)})])
    finally:
        await store.close()
    result = verify(url, tmp_path)
    bad(result, chain, ROWS + 1, "final checkpoint: inserted")
    assert "chain zzz-forged seq 1" in result.stdout and "no signed checkpoint" in result.stdout


async def test_a_forged_checkpoint_is_found(url: str, tmp_path: Path) -> None:
    chain = (await chains(url))[1]
    await sql(
        url,
        "UPDATE audit_checkpoints SET row_hash = $1 WHERE chain_id = $2 AND seq = 1",
        "0" * 64, chain,
    )  # fmt: skip
    result = verify(url, tmp_path)
    assert result.returncode == 1 and "signature is wrong" in result.stdout


