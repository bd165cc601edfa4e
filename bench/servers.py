"""Servers under test: each started as its own process (own session), always stopped."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BenchError, pin, progress
from bench.loadgen import fetch

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_live_sessions: set[int] = set()


@dataclass
class ServerSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment


@dataclass
class Server:
    spec: ServerSpec
    port: int
    process: asyncio.subprocess.Process
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float | None:
        return session_cpu_seconds(self.pid)

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            raise BenchError(
                f"{self.spec.name} server exited with code {self.process.returncode}\n"
                + self.logs_tail()
            )

    def logs_tail(self, limit: int = 4000) -> str:
        parts = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            text = _tail(path, limit)
            if text.strip():
                parts.append(f"--- {self.spec.name} server {label} (tail) ---\n{text.rstrip()}")
        return "\n".join(parts) if parts else f"({self.spec.name} server printed nothing)"


def bin_path(name: str) -> str:
    """A console script of this virtualenv (next to the running Python), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, limit: int) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


# --- CPU accounting -----------------------------------------------------------------------------


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("latin-1")
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    return raw[raw.rfind(")") + 2 :].split()


def session_cpu_seconds(leader: int) -> float | None:
    """User + system CPU of every process in the server's session (the server and any workers,
    including reaped children), in seconds. None when the server is gone."""
    fields = _stat_fields(leader)
    if fields is None:
        return None
    # Fields after the name, 0-based: 3 session, 11 utime, 12 stime, 13 cutime, 14 cstime.
    ticks = sum(int(v) for v in fields[11:15])
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == leader:
            continue
        other = _stat_fields(entry)
        if other is not None and other[3] == str(leader):
            ticks += sum(int(v) for v in other[11:15])
    return ticks / _CLK_TCK


# --- process lifecycle --------------------------------------------------------------------------


def _kill_session(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_live_sessions):
        _kill_session(pid, signal.SIGKILL)


def _open_logs(workdir: Path, name: str) -> tuple[Path, Path, int, int]:
    out, err = workdir / f"{name}.stdout.log", workdir / f"{name}.stderr.log"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    return out, err, os.open(out, flags, 0o644), os.open(err, flags, 0o644)


async def _wait_healthy(server: Server, within_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    last_error = "no answer"
    while loop.time() < deadline:
        server.check_alive()
        try:
            status, body = await fetch(HOST, server.port, "GET", "/healthz", limit_s=2.0)
        except (OSError, TimeoutError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last_error = f"HTTP {status}: {body[:200]!r}"
        await asyncio.sleep(0.1)
    server.check_alive()
    raise BenchError(
        f"{server.spec.name} server not healthy after {within_s:.0f}s "
        f"(GET /healthz: {last_error})\n{server.logs_tail()}"
    )


async def _stop(server: Server, grace: float = 10.0) -> None:
    process = server.process
    if process.returncode is None:
        _kill_session(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            progress(f"{server.spec.name} server ignored SIGTERM for {grace:.0f}s: SIGKILL")
    # Kill whatever is left in the session (workers, or the server itself after the grace).
    _kill_session(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await asyncio.wait_for(process.wait(), 5.0)
    _live_sessions.discard(process.pid)


def server_env(added: dict[str, str]) -> dict[str, str]:
    """This process's environment without its ``SHIPYARD_*`` settings (a server runs with the
    defaults `make run` has, plus ``added``), with the repository on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(added)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.asynccontextmanager
async def running_server(
    spec: ServerSpec,
    port: int,
    workdir: Path,
    startup_timeout: float,
    cpus: frozenset[int] | None = None,
) -> AsyncIterator[Server]:
    """Start `spec` (already pointed at `port`) pinned to ``cpus`` (None: not pinned), wait for
    GET /healthz, stop it on exit."""
    stdout_path, stderr_path, out_fd, err_fd = _open_logs(workdir, spec.name)
    env = server_env(spec.env)
    try:
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_fd,
            stderr=err_fd,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    except OSError as exc:
        raise BenchError(f"cannot start {spec.name} server ({spec.argv[0]}): {exc}") from exc
    finally:
        os.close(out_fd)
        os.close(err_fd)
    _live_sessions.add(process.pid)
    # Before Python has started a thread or a child: all of them inherit it.
    with contextlib.suppress(ProcessLookupError):
        pin(process.pid, cpus)
    server = Server(spec, port, process, stdout_path, stderr_path)
    try:
        await _wait_healthy(server, startup_timeout)
        yield server
    finally:
        await _stop(server)
