"""Alembic environment for the record store.

Run through ``SqlRecordStore.migrate()``, which opens the (async) connection itself and hands its
sync face over in ``config.attributes["connection"]``. Logging is left to the application: this
file never calls ``logging.config.fileConfig``.
"""

from __future__ import annotations

from alembic import context

from shipyard.stores.records import schema


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=schema.metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the record store migrations through SqlRecordStore.migrate()")
    context.configure(connection=connection, target_metadata=schema.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
