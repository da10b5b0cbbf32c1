"""`toolwire serve --workers N`: N gateway processes on one port, one supervisor.

Each worker is a whole gateway (`toolwire serve --worker`) listening on the same host and port
with SO_REUSEPORT, so the kernel spreads connections over them and every core can work. The
supervisor only starts, watches and signals them:
- SIGTERM / SIGINT: every worker gets SIGTERM and drains as a single gateway does; the supervisor
  exits when they are all gone.
- SIGHUP: passed on to every worker, which reloads its routing table.
- A worker that dies is started again (and logged); one that exits by itself right after starting,
  as with a port taken by another program, stops the whole gateway instead of restarting forever.
Metrics are shared through Prometheus's multiprocess mode: the workers write their samples to a
directory the supervisor creates, and any worker's `/metrics` serves the sum over all of them.
Concurrency limits and queues stay per worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import structlog

from .event_loop import LoopChoice
from .ops.metrics_shared import MULTIPROC_ENV

log = structlog.get_logger("toolwire.workers")

# A worker that exits sooner than this after its start failed to start, and would again.
_START_FAILURE_SECONDS = 3.0
_POLL_SECONDS = 0.2


def worker_count(value: str) -> int:
    """`--workers`: a positive number, or `auto` for the cores this process may use."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = int(value)
    if count < 1:
        raise ValueError("--workers must be at least 1")
    return count


@dataclass
class _Worker:
    slot: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Signals:
    stop: bool = False
    hangups: int = 0

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True

    def on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self.hangups += 1


def supervise(count: int, config_path: str, host: str, port: int, loop: LoopChoice) -> int:
    """Run `count` workers until SIGTERM; returns the exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="toolwire-metrics-")
    env = {**os.environ, MULTIPROC_ENV: metrics_dir}
    command = [sys.executable, "-m", "gateway", "serve", "--worker", "--config", config_path,
               "--host", host, "--port", str(port), "--loop", loop]
    signals = _Signals()
    signal.signal(signal.SIGTERM, signals.on_stop)
    signal.signal(signal.SIGINT, signals.on_stop)
    signal.signal(signal.SIGHUP, signals.on_hangup)
    workers = [_Worker(slot, subprocess.Popen(command, env=env)) for slot in range(count)]
    log.info("workers_started", workers=count, pids=[w.process.pid for w in workers], url=f"http://{host}:{port}/v1")
    status = 0
    try:
        hangups = 0
        while not signals.stop:
            time.sleep(_POLL_SECONDS)
            if signals.hangups != hangups:
                hangups = signals.hangups
                _signal_all(workers, signal.SIGHUP)
            for index, worker in enumerate(workers):
                code = worker.process.poll()
                if code is None:
                    continue
                _forget(metrics_dir, worker.process.pid)
                # Exiting by itself at once (not killed) is a start that failed and would again.
                if code >= 0 and time.monotonic() - worker.started < _START_FAILURE_SECONDS:
                    log.error("worker_failed_to_start", slot=worker.slot, exit_code=code)
                    signals.stop, status = True, 1
                    break
                log.warning("worker_died", slot=worker.slot, pid=worker.process.pid, exit_code=code)
                workers[index] = _Worker(worker.slot, subprocess.Popen(command, env=env))
                log.info("worker_restarted", slot=worker.slot, pid=workers[index].process.pid)
        log.info("workers_stopping", workers=len(workers))
        _signal_all(workers, signal.SIGTERM)
        for worker in workers:
            worker.process.wait()
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("workers_stopped")
    return status


def _signal_all(workers: list[_Worker], signum: signal.Signals) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signum)


def _forget(metrics_dir: str, pid: int) -> None:
    """Drop a dead worker's live gauges (streams in flight, queued); its counters stay counted."""
    from prometheus_client import multiprocess

    if Path(metrics_dir).is_dir():
        multiprocess.mark_process_dead(pid, metrics_dir)
