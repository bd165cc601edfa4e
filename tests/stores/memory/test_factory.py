"""The composition root picks the memory backend by URL scheme, for the configured embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.app import build_memory
from shipyard.config import load_settings
from shipyard.errors import ConfigError
from shipyard.models.embedding import HashEmbedder
from shipyard.models.wordllama import WordLlamaEmbedder
from shipyard.stores.memory.postgres import PostgresMemoryStore
from shipyard.stores.memory.sqlite import SqliteMemoryStore


async def test_the_default_is_sqlite_in_the_home_with_wordllama(tmp_path: Path) -> None:
    memory = build_memory(load_settings(home=tmp_path))
    assert isinstance(memory.store, SqliteMemoryStore)
    assert isinstance(memory.embedder, WordLlamaEmbedder)
    await memory.store.ping()  # opens (creates) the file; loads no weights
    assert (tmp_path / "memory.db").exists()
    await memory.close()


def test_postgresql_urls_and_embedders_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_MEMORY_URL", "postgresql://u@db.internal:5432/memories")
    monkeypatch.setenv("SHIPYARD_EMBEDDER", "test:32")
    memory = build_memory(load_settings(home=tmp_path))
    assert isinstance(memory.store, PostgresMemoryStore)
    assert isinstance(memory.embedder, HashEmbedder) and memory.embedder.dimensions == 32


@pytest.mark.parametrize(
    ("memory_url", "embedder", "says"),
    [
        ("redis://localhost", "test:8", "use one of"),
        ("sqlite://", "test:8", "sqlite:///path.db"),
        (None, "bert:base", "provider"),
    ],
)
def test_bad_settings_are_config_errors(
    tmp_path: Path, memory_url: str | None, embedder: str, says: str
) -> None:
    settings = load_settings(home=tmp_path, memory_url=memory_url, embedder=embedder)
    with pytest.raises(ConfigError, match=says):
        build_memory(settings)
