"""One managed model's life: loaded on demand (one shared start for every request that waits),
unloaded when idle, restarted after a crash with backoff, and a clear failure when it cannot load.

States: `stopped` (not running; the next request loads it), `loading`, `ready`, `crashed` (died
while serving; the next request restarts it) and `failed` (could not load; requests get the
reason at once until the backoff has passed, then the next one tries again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from enum import StrEnum

import structlog

from ..errors import BackendLoadFailed, BackendUnreachable
from ..http import HttpSettings
from ..llamacpp import LlamaCppBackend
from .binary import BinaryNotFound, find_server_binary
from .process import LaunchFailed, ServerProcess, free_port
from .spec import LaunchSpec, ModelNotFound, resolve_model, server_command

log = structlog.get_logger("toolwire.managed")

# A server that ran this long before dying was healthy: its crash starts the backoff afresh.
STABLE_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 60.0
ERROR_LOG_LINES = 12  # of the server's log, in a client's error message
PORT_ATTEMPTS = 3  # free ports tried when another program takes the chosen one first


def backoff_seconds(failures: int) -> float:
    """The first failure is retried at once, then 1 s, 2 s, 4 s ... up to a minute."""
    return 0.0 if failures <= 1 else min(2.0 ** (failures - 2), MAX_BACKOFF_SECONDS)


class ModelState(StrEnum):
    STOPPED = "stopped"
    LOADING = "loading"
    READY = "ready"
    CRASHED = "crashed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """A snapshot for /health, /metrics and `toolwire ps`."""

    backend: str
    model: str
    state: str
    port: int | None
    pid: int | None
    rss_bytes: int | None
    idle_seconds: float | None  # since the last request ended (None while one runs, or not loaded)
    in_flight: int
    loads: int
    restarts: int
    last_load_seconds: float | None
    idle_unload_seconds: float
    error: str | None


class ModelSupervisor:
    def __init__(
        self,
        name: str,
        spec: LaunchSpec,
        settings: HttpSettings,
        make_room: Callable[[ModelSupervisor], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.settings = settings
        self._make_room = make_room
        self.state = ModelState.STOPPED
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.loads = 0
        self.restarts = 0
        self.last_load_seconds: float | None = None
        self._server: ServerProcess | None = None
        self._transport: LlamaCppBackend | None = None
        self._loading: asyncio.Task[LlamaCppBackend] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: BackendLoadFailed | None = None
        self._closed = False

    # --- requests -------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[LlamaCppBackend]:
        """The running server's transport, loading it first if needed; while held, the server
        counts as in use (never unloaded or evicted)."""
        transport = await self.ready_transport()
        self.in_flight += 1
        self.last_used = time.monotonic()
        try:
            yield transport
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    async def ready_transport(self) -> LlamaCppBackend:
        if self._closed:
            raise BackendUnreachable(self.name, f"backend '{self.name}' is shutting down")
        server = self._server
        if self.state is ModelState.READY and server is not None and not server.alive:
            self._crashed(server)  # died a moment ago; its exit watcher has not run yet
        if self.state is ModelState.READY and self._transport is not None:
            return self._transport
        if self._loading is None:
            wait = self._retry_at - time.monotonic()
            if self._last_error is not None and wait > 0:
                raise self._still_failing(wait)
            self._loading = asyncio.create_task(self._load(), name=f"load {self.name}")
            self._loading.add_done_callback(_retrieve)
        # Shielded: a request that gives up (deadline, disconnect) does not cancel the start
        # the other waiting requests share.
        return await asyncio.shield(self._loading)

    def _still_failing(self, wait: float) -> BackendLoadFailed:
        last = self._last_error
        assert last is not None
        return BackendLoadFailed(
            self.name, self.spec.model, f"{last.reason} (next attempt in {wait:.0f}s)",
            log_tail=last.log_tail, retry_after=wait,
        )

    async def healthy(self) -> bool:
        """Ready to serve or to load on demand; False while failing or (pre)loading at first."""
        if self.state is ModelState.READY and self._transport is not None:
            return await self._transport.health()
        if self.state is ModelState.LOADING:
            return self.loads > 0 or not self.spec.preload
        return self.state is not ModelState.FAILED

    # --- loading --------------------------------------------------------------------------

    async def preload(self) -> None:
        with contextlib.suppress(BackendLoadFailed, BackendUnreachable):
            await self.ready_transport()

    async def _load(self) -> LlamaCppBackend:
        started = time.monotonic()
        restarting = self.state is ModelState.CRASHED
        self.state = ModelState.LOADING
        try:
            if self._stopping is not None:
                await self._stopping  # a fixed port must be free again
            if self._make_room is not None:
                await self._make_room(self)
            server = await self._start()
        except Exception as error:  # whatever stopped the start, the model is not there: say why
            raise self._failed(error) from error
        finally:
            self._loading = None
        self._server = server
        self._transport = LlamaCppBackend(self.name, replace(self.settings, base_url=server.url))
        self.state = ModelState.READY
        self.loads += 1
        self.restarts += restarting
        self.last_load_seconds = time.monotonic() - started
        self.last_used = time.monotonic()
        self._last_error = None
        self._watch(self._exit_watch(server))
        if self.spec.idle_unload > 0:
            self._watch(self._idle_watch(server))
        log.info(
            "model_ready", backend=self.name, model=self.spec.model, pid=server.pid, port=server.port,
            load_seconds=round(self.last_load_seconds, 2), restart=restarting,
        )
        return self._transport

    async def _start(self) -> ServerProcess:
        binary = find_server_binary(self.spec.binary)
        model = await asyncio.to_thread(resolve_model, self.spec)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = self.spec.port or free_port(self.spec.host)
            log.info("model_loading", backend=self.name, model=str(model), port=port)
            server = await ServerProcess.spawn(
                server_command(binary, model, self.spec, port), backend=self.name, host=self.spec.host, port=port
            )
            try:
                await server.wait_healthy(self.spec.load_timeout)
                return server
            except LaunchFailed as failure:
                await server.stop()
                # A free port can be taken by another program before the server binds it: take another.
                if self.spec.port is not None or attempt == PORT_ATTEMPTS or not _port_taken(failure):
                    raise
                log.warning("llama_server_port_taken", backend=self.name, port=port)
            except BaseException:  # a shutdown meanwhile: never leave it running
                await server.stop()
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _failed(self, error: Exception) -> BackendLoadFailed:
        tail = error.log_tail[-ERROR_LOG_LINES:] if isinstance(error, LaunchFailed) else ()
        reason = error.reason if isinstance(error, LaunchFailed) else str(error) or type(error).__name__
        if not isinstance(error, BinaryNotFound | ModelNotFound | LaunchFailed):
            log.error("model_load_error", backend=self.name, exc_info=error)
        self._failures += 1
        delay = backoff_seconds(self._failures)
        self._retry_at = time.monotonic() + delay
        self.state = ModelState.FAILED
        self._last_error = BackendLoadFailed(self.name, self.spec.model, reason, log_tail=tail, retry_after=max(delay, 1))
        log.error(
            "model_load_failed", backend=self.name, model=self.spec.model, reason=reason, failures=self._failures,
            retry_in_seconds=delay, log_tail=list(tail),
        )
        return self._last_error

    # --- while it runs --------------------------------------------------------------------

    def _watch(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _exit_watch(self, server: ServerProcess) -> None:
        await server.wait_exit()
        if self._server is server:  # not stopped by us
            self._crashed(server)

    def _crashed(self, server: ServerProcess) -> None:
        ran = time.monotonic() - server.started_at
        self._failures = 1 if ran >= STABLE_AFTER_SECONDS else self._failures + 1
        delay = backoff_seconds(self._failures)
        self._retry_at = time.monotonic() + delay
        tail = server.log_tail[-ERROR_LOG_LINES:]
        reason = f"llama-server (pid {server.pid}) exited unexpectedly with status {server.process.returncode}"
        self._last_error = BackendLoadFailed(self.name, self.spec.model, reason, log_tail=tail, retry_after=max(delay, 1))
        log.warning("model_crashed", backend=self.name, model=self.spec.model, pid=server.pid,
                    status=server.process.returncode, ran_seconds=round(ran, 1), restart_in_seconds=delay,
                    log_tail=list(tail))
        self.state = ModelState.CRASHED
        self._detach()

    async def _idle_watch(self, server: ServerProcess) -> None:
        idle = self.spec.idle_unload
        while self._server is server:
            remaining = idle if self.in_flight else self.last_used + idle - time.monotonic()
            if remaining <= 0:
                log.info("model_idle_unload", backend=self.name, model=self.spec.model, idle_seconds=idle)
                await self.unload()
                return
            await asyncio.sleep(remaining)

    # --- stopping -------------------------------------------------------------------------

    @property
    def occupies_memory(self) -> bool:
        return self.state in (ModelState.LOADING, ModelState.READY)

    async def unload(self) -> None:
        """Stop the server (idle, evicted, or the gateway stopping); the next request loads it."""
        if self.state is not ModelState.READY:
            return
        self.state = ModelState.STOPPED
        self._failures = 0
        self._last_error = None
        await self._detach()

    def _detach(self) -> asyncio.Task[None]:
        """Forget the running server and stop it in the background (awaitable)."""
        server, transport = self._server, self._transport
        self._server = self._transport = None
        previous = self._stopping

        async def stop() -> None:
            if previous is not None:
                await previous
            if transport is not None:
                await transport.close()
            if server is not None:
                await server.stop()
                log.info("llama_server_stopped", backend=self.name, pid=server.pid, status=server.process.returncode)

        self._stopping = asyncio.create_task(stop(), name=f"stop {self.name}")
        return self._stopping

    async def close(self) -> None:
        """For good: cancel a start under way, stop the server, end the watchers."""
        self._closed = True
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(BaseException):
                await self._loading
        self.state = ModelState.STOPPED
        await self._detach()
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    # --- reporting ------------------------------------------------------------------------

    def status(self) -> ModelStatus:
        server = self._server
        now = time.monotonic()
        error = None
        if self._last_error is not None and self.state in (ModelState.FAILED, ModelState.CRASHED):
            error = self._last_error.reason
        return ModelStatus(
            backend=self.name,
            model=self.spec.model,
            state=self.state.value,
            port=server.port if server else None,
            pid=server.pid if server else None,
            rss_bytes=server.rss_bytes() if server else None,
            idle_seconds=round(now - self.last_used, 1) if server and not self.in_flight else None,
            in_flight=self.in_flight,
            loads=self.loads,
            restarts=self.restarts,
            last_load_seconds=None if self.last_load_seconds is None else round(self.last_load_seconds, 2),
            idle_unload_seconds=self.spec.idle_unload,
            error=error,
        )


def _port_taken(failure: LaunchFailed) -> bool:
    return any("couldn't bind" in line for line in failure.log_tail)


def _retrieve(task: asyncio.Task[LlamaCppBackend]) -> None:
    """A start every waiter abandoned still fails quietly: its failure is already logged."""
    if not task.cancelled():
        task.exception()
