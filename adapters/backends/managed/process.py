"""One llama-server child process: started in its own process group and tied to toolwire's
life, its log lines fed into toolwire's log, stopped as a group.

The child is toolwire's alone: `PR_SET_PDEATHSIG` makes the kernel kill it when the thread that
started it (the event loop's) dies, however toolwire dies, so it never outlives the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

log = structlog.get_logger("toolwire.llama_server")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
LOG_TAIL_LINES = 40
# llama-server's lines: "<elapsed> <level letter> <message>", e.g. "0.04.684.113 I srv  ...".
_LOG_LINE = re.compile(r"^[\d.]+ ([DIWE]) (.*)$")
_LEVELS = {"D": "debug", "I": "info", "W": "warning", "E": "error"}


class LaunchFailed(Exception):
    """The server did not come up; the message says why, `log_tail` what it printed last."""

    def __init__(self, reason: str, log_tail: tuple[str, ...]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tie_to_parent() -> Callable[[], None]:
    """The child's first act after fork: a process group of its own (so stopping it stops all
    it started) and death with its parent."""
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None  # resolved before fork

    def in_child() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: nobody to serve
            os._exit(1)

    return in_child


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process, backend: str, url: str, port: int) -> None:
        self.process = process
        self.backend = backend
        self.url = url
        self.port = port
        self.started_at = time.monotonic()
        # Once serving, its per-request chatter ("slot ... processing task") is debug-level for
        # us; while it loads, every line shows.
        self.serving = False
        self._tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._pump = asyncio.create_task(self._pump_log(), name=f"llama-server log ({backend})")
        self._exited = asyncio.create_task(process.wait(), name=f"llama-server exit ({backend})")

    @classmethod
    async def spawn(cls, command: list[str], *, backend: str, host: str, port: int) -> ServerProcess:
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_tie_to_parent(),
            )
        except OSError as error:
            raise LaunchFailed(f"cannot start {command[0]}: {error}", ()) from error
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        log.info("llama_server_started", backend=backend, pid=process.pid, port=port, command=" ".join(command))
        return cls(process, backend, f"http://{url_host}:{port}", port)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @property
    def log_tail(self) -> tuple[str, ...]:
        return tuple(self._tail)

    async def wait_exit(self) -> int:
        return await asyncio.shield(self._exited)

    async def wait_healthy(self, limit: float) -> None:
        """Until GET /health answers 200; LaunchFailed if the server exits or takes over `limit` s."""
        try:
            async with asyncio.timeout(limit):
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
                    while True:
                        if await self._healthy(session):
                            self.serving = True
                            return
                        done, _ = await asyncio.wait({self._exited}, timeout=0.1)
                        if done:
                            await self._pump  # every line it printed, for the message
                            raise LaunchFailed(f"llama-server exited with status {self.process.returncode}", self.log_tail)
        except TimeoutError:
            raise LaunchFailed(f"llama-server did not answer /health within {limit:g}s", self.log_tail) from None

    async def _healthy(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self.url + "/health") as response:
                return response.status == 200  # 503 while the model loads
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the whole group, SIGKILL after `grace` seconds; returns once it is gone."""
        if self.alive:
            self._signal_group(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(self._exited)
            except TimeoutError:
                log.warning("llama_server_kill", backend=self.backend, pid=self.pid, grace_seconds=grace)
                self._signal_group(signal.SIGKILL)
                await asyncio.shield(self._exited)
        # Whatever the leader left in its group goes too.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def rss_bytes(self) -> int | None:
        """Resident memory of the server (Linux /proc), None where it cannot be read."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    async def _pump_log(self) -> None:
        """Every line the server prints goes to toolwire's log (and the tail kept for errors).
        Read in blocks, not lines: a single huge line must not stall the pipe."""
        stream = self.process.stdout
        assert stream is not None
        pending = b""
        while True:
            block = await stream.read(65536)
            if not block:
                break
            lines = (pending + block).split(b"\n")
            pending = lines.pop()
            for line in lines:
                self._log_line(line.decode(errors="replace").rstrip())
        if pending:
            self._log_line(pending.decode(errors="replace").rstrip())

    def _log_line(self, line: str) -> None:
        if not line:
            return
        self._tail.append(line)
        match = _LOG_LINE.match(line)
        level, message = (_LEVELS[match[1]], match[2]) if match else ("info", line)
        if level == "info" and self.serving:
            level = "debug"
        getattr(log, level)("llama_server_log", backend=self.backend, pid=self.pid, line=message)
