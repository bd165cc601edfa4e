"""Statements compiled once for the stdlib driver write and read exactly what SQLAlchemy does."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.stores.records.sqlite_prepared import Prepared

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("body", sa.JSON(none_as_null=True)),
    sa.Column("at", sa.DateTime),
    sa.Column("made", sa.String, default="by python"),
)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'things.db'}")
    metadata.create_all(engine)
    return engine


def test_insert_then_update_returning_round_trip(engine: sa.Engine, tmp_path: Path) -> None:
    dialect = engine.dialect
    insert = Prepared(things.insert(), dialect, keys=["id", "kind", "body", "at", "made"])
    update = Prepared(
        things.update()
        .where(
            things.c.id == sa.bindparam("w_id"), sa.or_(things.c.kind == "a", things.c.kind == "b")
        )
        .values(body=sa.bindparam("v_body", type_=things.c.body.type), kind="c")
        .returning(*things.c),
        dialect,
        keys=["w_id", "v_body"],
        returning=list(things.c),
    )
    at = datetime(2026, 11, 30, 1, 2, 3)
    raw = sqlite3.connect(tmp_path / "things.db", isolation_level=None)
    inserted = insert.execute(
        raw, {"id": 1, "kind": "a", "body": {"x": [1]}, "at": at, "made": "m"}
    )
    assert inserted.rowcount == 1

    with engine.connect() as conn:  # what SQLAlchemy reads is what was written
        row = conn.execute(sa.select(things)).mappings().one()
    assert dict(row) == {"id": 1, "kind": "a", "body": {"x": [1]}, "at": at, "made": "m"}

    changed = update.execute(raw, {"w_id": 1, "v_body": None}).mappings().first()
    assert changed == {"id": 1, "kind": "c", "body": None, "at": at, "made": "m"}
    # the literal statuses are part of the statement: "c" no longer matches
    assert update.execute(raw, {"w_id": 1, "v_body": {}}).mappings().first() is None


def test_statements_it_cannot_run_faithfully_are_refused(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="per-call"):
        Prepared(things.delete().where(things.c.kind.in_(["a", "b"])), engine.dialect)
    with pytest.raises(ValueError, match="'made'"):  # a Python-side default nobody passes
        Prepared(things.insert(), engine.dialect, keys=["id", "kind"])
