"""Start real Shipyard processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHIPYARD = str(Path(sys.executable).with_name("shipyard"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A ``shipyard serve`` child process on a free port."""

    home: Path
    app: str | None
    env_extra: dict[str, str] = field(default_factory=dict)
    admin_key: str | None = field(
        default_factory=lambda: "sk_shp_test_admin_" + os.urandom(8).hex()
    )
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _stderr: IO[bytes] | None = None
    startup_s: float = 30.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
        env.update(SHIPYARD_HOME=str(self.home), SHIPYARD_LOG_LEVEL="warning", PYTHONPATH=str(ROOT))
        if self.admin_key:
            env["SHIPYARD_ADMIN_KEY"] = self.admin_key
        env.update(self.env_extra)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a ``shipyard`` command against the same settings as the server."""
        return subprocess.run(
            [SHIPYARD, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    def start(self) -> ServerProcess:
        self._stderr = self._log.open("wb")
        self.proc = subprocess.Popen(
            [
                SHIPYARD,
                "serve",
                *(["--app", self.app] if self.app else []),
                "--port",
                str(self.port),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"server exited with {code}:\n{self.stop()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become healthy within {self.startup_s:g} s")

    def stop(self) -> str:
        """Stop gracefully (SIGTERM), and return what the server wrote on stderr."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return self.log

    @property
    def _log(self) -> Path:
        return self.home / "server.log"

    @property
    def log(self) -> str:
        """Everything the server wrote on stderr so far."""
        return self._log.read_text() if self._log.exists() else ""


@dataclass
class WorkerProcess:
    """A ``shipyard worker`` child process with the same settings as ``server``."""

    server: ServerProcess
    concurrency: int = 4
    proc: subprocess.Popen[bytes] | None = None
    _stderr: IO[bytes] | None = None
    name: str = field(default_factory=lambda: os.urandom(3).hex())

    @property
    def log_path(self) -> Path:
        return self.server.home / f"worker-{self.name}.log"

    def start(self) -> WorkerProcess:
        self._stderr = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [SHIPYARD, "worker", "--app", self.server.app or "examples.assistant:app",
             "--concurrency", str(self.concurrency)],
            env=self.server.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "running (" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.stop()}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-whatever, as a crash would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._close()
        return self.log_path.read_text() if self.log_path.exists() else ""

    def _close(self) -> None:
        self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
