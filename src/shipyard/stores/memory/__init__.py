"""Long-term memory: the ``MemoryStore`` protocol and its backends (SQLite, PostgreSQL)."""
