"""Blob store throughput: put and get of 1 MB and 100 MB objects on S3 (the SeaweedFS that
``scripts/services.sh`` starts, ``SHIPYARD_BENCH_S3_URL``, default http://127.0.0.1:18333) and on
the local folder store, through the stores themselves (no HTTP server in between), with the
process CPU per MB and the peak Python memory while a 100 MB object goes up and comes back
(measured in a separate pass under ``tracemalloc``, which slows it down).

Issue points: put/get throughput of 1 MB and 100 MB objects against SeaweedFS, and the
process's peak memory during the 100 MB transfer. The 1 MB point repeats for ``--duration``
seconds; the 100 MB one runs twice.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from bench.common import BenchConfig, BenchResult, Column, Row, progress
from shipyard.errors import StoreError
from shipyard.stores.blobs.base import BlobStore
from shipyard.stores.blobs.local import LocalBlobStore
from shipyard.stores.blobs.s3 import S3BlobStore, S3Options, bucket_name

S3_URL = os.environ.get("SHIPYARD_BENCH_S3_URL", "http://127.0.0.1:18333")
MB = 1 << 20
SIZES = (1, 100)
PEAK_TARGET_MB = 64

COLUMNS = [
    Column("store", "store"),
    Column("size_mb", "MB"),
    Column("op", "op"),
    Column("count", "count"),
    Column("mb_s", "MB/s", "{:,.1f}"),
    Column("cpu_ms_per_mb", "CPU ms/MB", "{:.2f}"),
    Column("peak_mb", "peak MB", "{:.1f}"),
]


async def _chunks(size_mb: int) -> AsyncIterator[bytes]:
    block = os.urandom(MB)
    for _ in range(size_mb):
        yield block


async def _drain(store: BlobStore, key: str) -> int:
    return sum([len(chunk) async for chunk in store.get(key)])


async def _timed(op: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await op()
    return time.perf_counter() - wall, time.process_time() - cpu


async def _point(store: BlobStore, name: str, size_mb: int, config: BenchConfig) -> list[Row]:
    rounds = 2 if size_mb >= 100 else None
    totals = {"put": [0.0, 0.0, 0], "get": [0.0, 0.0, 0]}
    deadline = time.perf_counter() + config.duration
    while (rounds is None and time.perf_counter() < deadline) or (rounds is not None and rounds):
        key = f"bench/{size_mb}/{secrets.token_hex(6)}"
        for op, call in (
            ("put", lambda k=key: store.put(k, _chunks(size_mb), content_type="x/bench")),
            ("get", lambda k=key: _drain(store, k)),
        ):
            wall, cpu = await _timed(call)
            totals[op][0] += wall
            totals[op][1] += cpu
            totals[op][2] += 1
        await store.delete(key)
        rounds = None if rounds is None else rounds - 1
    rows = []
    for op, (wall, cpu, count) in totals.items():
        mb = size_mb * int(count)
        rows.append(
            {
                "store": name,
                "size_mb": size_mb,
                "op": op,
                "count": int(count),
                "mb_s": mb / wall if wall else None,
                "cpu_ms_per_mb": cpu * 1000 / mb if mb else None,
            }
        )
    return rows


async def _peak(store: BlobStore) -> float:
    """Peak traced Python memory (MB) while 100 MB goes up and comes back."""
    key = f"bench/peak/{secrets.token_hex(6)}"
    tracemalloc.start()
    try:
        await store.put(key, _chunks(100), content_type="x/bench")
        await _drain(store, key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await store.delete(key)
    return peak / MB


async def _measure(store: BlobStore, name: str, config: BenchConfig, result: BenchResult) -> None:
    for size_mb in SIZES:
        progress(f"blobs: {name} {size_mb} MB")
        result.rows.extend(await _point(store, name, size_mb, config))
    peak = await _peak(store)
    result.rows.append({"store": name, "size_mb": 100, "op": "put+get", "peak_mb": peak})
    verdict = "PASS" if peak <= PEAK_TARGET_MB else "MISS"
    result.summary.append(f"{name}: peak {peak:.1f} MB for 100 MB (<= {PEAK_TARGET_MB}: {verdict})")


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("blobs", COLUMNS)
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-blobs-") as folder:
        await _measure(LocalBlobStore(Path(folder)), "folder", config, result)
    s3 = S3BlobStore(
        S3Options(
            endpoint=S3_URL,
            region="bench",
            bucket=bucket_name(f"b{secrets.token_hex(3)}", "123456789012", "bench"),
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
        )
    )
    try:
        await s3.ping()
        await _measure(s3, "s3", config, result)
    except StoreError as exc:
        progress(f"blobs: s3: FAILED: {exc.message}")
        result.failures.append(f"s3 (SeaweedFS at {S3_URL}): {exc.message}")
    finally:
        await s3.close()
    return result
