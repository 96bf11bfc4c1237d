"""Real server processes for end-to-end tests: ``tidings serve`` on ephemeral ports.

A ``ServerProcess`` starts the console entry point in a subprocess, waits for the
``grpc listening on`` / ``http listening on`` lines (docs/PROTOCOL.md §8) and exposes the
addresses it bound. Its log is kept for failure messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence

LISTENING = re.compile(r"(grpc|http) listening on (\S+)")
TEST_SECRET = "test-secret-of-at-least-32-bytes-for-hs256"


class ServerProcess:
    """One ``tidings serve`` subprocess."""

    def __init__(
        self,
        *args: str,
        database_url: str,
        role: str = "all",
        env: Mapping[str, str] | None = None,
        grpc_addr: str = "127.0.0.1:0",
        http_addr: str = "127.0.0.1:0",
        cwd: str | None = None,
    ) -> None:
        self.args: Sequence[str] = args
        self.cwd = cwd  # the source tree ``python -m`` runs (None: this process's cwd)
        self.database_url = database_url
        self.role = role
        self.grpc_addr_arg = grpc_addr
        self.http_addr_arg = http_addr
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.grpc_addr = ""
        self.http_addr = ""
        self.log: list[str] = []
        self._pump: asyncio.Task[None] | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.http_addr}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.http_addr}/api/v1/ws/notifications"

    async def start(self, timeout: float = 20.0) -> ServerProcess:
        cmd = [
            sys.executable, "-m", "tidingsd.cli", "serve",
            "--role", self.role,
            "--grpc-addr", self.grpc_addr_arg,
            "--http-addr", self.http_addr_arg,
            "--database-url", self.database_url,
            *self.args,
        ]  # fmt: skip
        self.proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
        )
        wanted = {"grpc", "http"} if self.role == "all" else {self.role.replace("bridge", "http")}
        found: dict[str, str] = {}
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while not wanted <= found.keys():
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        raise RuntimeError("server exited during start:\n" + self.output)
                    line = raw.decode(errors="replace").rstrip()
                    self.log.append(line)
                    if m := LISTENING.search(line):
                        found[m.group(1)] = m.group(2)
        except BaseException:
            await self.kill()
            raise
        self.grpc_addr = found.get("grpc", "")
        self.http_addr = found.get("http", "")
        self._pump = asyncio.create_task(self._drain())
        return self

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            self.log.append(raw.decode(errors="replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.log)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        return code

    async def kill(self) -> None:
        """``kill -9``."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def __aenter__(self) -> ServerProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
