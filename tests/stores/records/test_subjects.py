"""The ``subject`` column (migration 0014): written from the metadata of runs, sessions and tasks,
and filled in for the rows that existed before the migration — on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from shipyard.stores.records import engines
from shipyard.stores.records.base import RunRecord, SessionRecord
from shipyard.stores.records.lifecycle_base import subject_of
from shipyard.stores.records.schema import runs, sessions
from shipyard.stores.records.sql import SqlRecordStore
from tests.conftest import POSTGRES_ADMIN_URL, admin_sql

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")  # skips (or fails) when PostgreSQL is down
    return str(request.param)


@pytest.fixture
async def empty_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database without a schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    name = f"shipyard_subjects_{secrets.token_hex(4)}"
    await admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def upgrade_to(revision: str) -> object:
    def go(conn: Connection) -> None:
        cfg = engines.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    return go


def test_subject_of_takes_a_short_string_only() -> None:
    assert subject_of({"subject": "alice"}) == "alice"
    assert subject_of({"subject": 42}) is None
    assert subject_of({"subject": ""}) is None
    assert subject_of({"subject": "x" * 257}) is None
    assert subject_of({}) is None


async def test_rows_from_before_0014_get_their_subject(empty_url: str) -> None:
    store = SqlRecordStore.from_url(empty_url)
    try:
        async with store._engine.begin() as conn:  # the schema as it was before 0014
            await conn.run_sync(upgrade_to("0013"))  # type: ignore[arg-type]
            row = {"tenant_id": "acme", "agent": "a", "status": "succeeded", "created_at": NOW}
            await conn.execute(
                sa.text(
                    "INSERT INTO runs (id, tenant_id, agent, status, metadata, created_at) "
                    "VALUES (:id, :tenant_id, :agent, :status, :metadata, :created_at)"
                ),
                [
                    row | {"id": "run_1", "metadata": '{"subject": "alice"}'},
                    row | {"id": "run_2", "metadata": '{"subject": 7}'},
                    row | {"id": "run_3", "metadata": "{}"},
                ],
            )
        await store.migrate()
        async with store._engine.connect() as conn:
            found = await conn.execute(sa.select(runs.c.id, runs.c.subject).order_by(runs.c.id))
            assert [tuple(r) for r in found] == [
                ("run_1", "alice"),
                ("run_2", None),
                ("run_3", None),
            ]
    finally:
        await store.close()


async def test_new_rows_carry_their_metadatas_subject(empty_url: str) -> None:
    store = SqlRecordStore.from_url(empty_url)
    try:
        await store.migrate()
        run = RunRecord(id="run_a", tenant_id="acme", agent="a", status="running", created_at=NOW)
        await store.write_batch([run.model_copy(update={"metadata": {"subject": "bob"}})], [])
        session = SessionRecord(
            id="ses_a",
            tenant_id="acme",
            agent="a",
            metadata={"subject": "bob"},
            ttl_s=60,
            created_at=NOW,
        )
        await store.add_session(session)
        async with store._engine.connect() as conn:
            assert (await conn.execute(sa.select(runs.c.subject))).scalar_one() == "bob"
            assert (await conn.execute(sa.select(sessions.c.subject))).scalar_one() == "bob"
        assert await store.lifecycle.subject_runs("acme", "bob") == ["run_a"]
        assert await store.lifecycle.subject_runs("globex", "bob") == []
        assert await store.lifecycle.subject_sessions("acme", "bob") == ["ses_a"]
    finally:
        await store.close()
