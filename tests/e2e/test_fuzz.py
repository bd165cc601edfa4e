"""A bounded run of ``make fuzz``: schemathesis over the whole OpenAPI document, with an admin
key, a tenant's ``invoke,read`` key and a ``read`` key, against a real server on PostgreSQL
records, finds no server error and no undocumented status code."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.conftest import POSTGRES_ADMIN_URL, admin_sql, missing_service
from tests.e2e.fuzz import fuzz


@pytest.mark.postgres
@pytest.mark.timeout(900)  # three keys over every operation (~45): longer than one test's 300 s
def test_schemathesis_finds_no_server_error_and_no_undocumented_status() -> None:
    try:
        asyncio.run(admin_sql("SELECT 1"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        missing_service(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc!r}")
    assert fuzz(max_examples=25, phases="coverage,fuzzing,stateful") == 0
