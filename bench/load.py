"""Load test: N concurrent streamed chat completions through one gateway to two fake backends.

    python bench/load.py [--streams 1000] [--token-delay 0.05] [--json out.json]

The gateway (`toolwire serve`) and the two fake llama-servers (`tests/fakes/run.py`, a model that
echoes with a delay per token) each run in their own process; this process opens every stream at
once (aiohttp, one connection each) and reads them to the end. It reports the success rate (HTTP
200, `[DONE]`, and the model's exact text), latency to the first event and to the last (p50, p99),
and, from /proc, the gateway's resident memory and open file descriptors: before (after a warm-up),
at the peak, and after the streams ended (right away, and 35 s later, once the gateway's pool has
closed the idle backend connections).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import QWEN25
from tests.fakes.model import echo_text
from tests.support.health import wait_ok
from tests.support.real_llama import free_port

IDLE_CLOSE = 3.0  # seconds of quiet after the warm-up, before the baseline is taken
SETTLE = 35.0  # seconds after the run: aiohttp's connector closes connections idle for 15 s, checking every 15 s


@dataclass
class Stream:
    ok: bool
    first: float
    last: float
    error: str = ""


@dataclass
class Usage:
    rss_kib: int
    fds: int


def usage(pid: int) -> Usage:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return Usage(rss, len(os.listdir(f"/proc/{pid}/fd")))


async def start(*args: str, log: Any = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=log or asyncio.subprocess.PIPE, stderr=log or asyncio.subprocess.DEVNULL
    )


@asynccontextmanager
async def processes(token_delay: float, streams: int) -> AsyncIterator[tuple[str, int]]:
    """Two fakes and the gateway; yields (gateway URL, gateway pid)."""
    procs: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            urls = []
            for _ in range(2):
                port = free_port()
                fake = await start("-m", "tests.fakes.run", "llamacpp", "--port", str(port),
                                   "--token-delay", str(token_delay))
                procs.append(fake)
                assert fake.stdout is not None
                line = (await fake.stdout.readline()).decode().split()
                urls.append(line[1])
            port = free_port()
            per_backend = streams  # room for every stream on either backend
            config = {
                "listen": {"host": "127.0.0.1", "port": port},
                "log_level": "warning",
                "limits": {"request_timeout": 120},
                "backends": [{"name": name, "type": "llamacpp", "url": url, "max_connections": per_backend,
                              "max_concurrency": per_backend, "queue_size": per_backend}
                             for name, url in zip("ab", urls, strict=True)],
                "models": [{"name": "qwen", "backend": ["a", "b"], "tool_format": "hermes",
                            "chat_template": str(QWEN25)}],
            }
            path = Path(workdir) / "toolwire.yaml"
            path.write_text(yaml.safe_dump(config))
            log = (Path(workdir) / "gateway.log").open("wb")
            gateway = await start("-m", "gateway", "serve", "--config", str(path), log=log)
            procs.append(gateway)
            url = f"http://127.0.0.1:{port}"
            await wait_ok(url + "/health/ready")
            yield url, gateway.pid
        finally:
            for proc in reversed(procs):
                with suppress(ProcessLookupError):
                    proc.terminate()
                await asyncio.wait_for(proc.wait(), 20)


async def one_stream(session: aiohttp.ClientSession, url: str, i: int, go: asyncio.Event) -> Stream:
    words = f"load test stream {i}"
    body = {"model": "qwen", "stream": True, "messages": [{"role": "user", "content": f"echo {words}"}]}
    await go.wait()
    started = time.perf_counter()
    first, text, done = 0.0, "", False
    try:
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            if response.status != 200:
                return Stream(False, 0, 0, f"HTTP {response.status}")
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                if not first:
                    first = time.perf_counter() - started
                data = line[6:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    return Stream(False, first, 0, chunk["error"].get("message", "error event"))
                for choice in chunk.get("choices", []):
                    text += choice["delta"].get("content") or ""
    except (aiohttp.ClientError, TimeoutError) as error:
        return Stream(False, first, 0, repr(error))
    ok = done and text == echo_text(words)
    return Stream(ok, first, time.perf_counter() - started, "" if ok else "wrong or unfinished text")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def run(streams: int, token_delay: float, rounds: int) -> dict[str, Any]:
    async with processes(token_delay, streams) as (url, pid):
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=180)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            warm = asyncio.Event()
            warm.set()
            for i in range(20):  # warm-up: imports, templates, pooled connections
                await one_stream(session, url, -1 - i, warm)
            await asyncio.sleep(IDLE_CLOSE + 1)
            baseline = usage(pid)
            peak = Usage(baseline.rss_kib, baseline.fds)
            sampling = True

            async def sample() -> None:
                while sampling:
                    now = usage(pid)
                    peak.rss_kib, peak.fds = max(peak.rss_kib, now.rss_kib), max(peak.fds, now.fds)
                    await asyncio.sleep(0.02)

            waves = []
            for _ in range(rounds):
                sampler = asyncio.create_task(sample())
                go = asyncio.Event()
                tasks = [asyncio.create_task(one_stream(session, url, i, go)) for i in range(streams)]
                await asyncio.sleep(0.5)  # every task is waiting at the gate
                started = time.perf_counter()
                go.set()
                results = await asyncio.gather(*tasks)
                wall = time.perf_counter() - started
                sampling = False
                await sampler
                sampling = True
                await asyncio.sleep(1)
                waves.append({"wall_s": round(wall, 2), "success": sum(r.ok for r in results),
                              "rss_mib_after": round(usage(pid).rss_kib / 1024, 1)})
        await connector.close()
        await asyncio.sleep(0.5)
        right_after = usage(pid)
        await asyncio.sleep(SETTLE)  # aiohttp closes idle pooled backend connections after 15-30 s
        settled = usage(pid)
    good = [r for r in results if r.ok]
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "streams": streams,
        "token_delay_s": token_delay,
        "success": len(good),
        "success_rate": len(good) / streams,
        "errors": errors,
        "wall_s": round(wall, 2),
        "waves": waves,  # a second wave shows whether memory kept after the first is reused or leaks
        "first_event_p50_ms": round(percentile([r.first for r in good], 0.5) * 1000, 1),
        "first_event_p99_ms": round(percentile([r.first for r in good], 0.99) * 1000, 1),
        "stream_p50_ms": round(percentile([r.last for r in good], 0.5) * 1000, 1),
        "stream_p99_ms": round(percentile([r.last for r in good], 0.99) * 1000, 1),
        "stream_mean_ms": round(statistics.fmean([r.last for r in good]) * 1000, 1) if good else None,
        "gateway_rss_mib": {"baseline": round(baseline.rss_kib / 1024, 1), "peak": round(peak.rss_kib / 1024, 1),
                            "after": round(right_after.rss_kib / 1024, 1),
                            "settled": round(settled.rss_kib / 1024, 1)},
        "gateway_fds": {"baseline": baseline.fds, "peak": peak.fds, "after": right_after.fds,
                        "settled": settled.fds},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--token-delay", type=float, default=0.05, help="seconds per token at the fake backends")
    parser.add_argument("--waves", type=int, default=2, help="rounds of streams; the figures are the last one's")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = asyncio.run(run(args.streams, args.token_delay, args.waves))
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
