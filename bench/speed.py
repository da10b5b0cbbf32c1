"""toolwire speed bench: streamed chat through the gateway, side by side with a direct connection
to the same fake vLLM, in one run.

    .venv/bin/python bench/speed.py [--quick] [--workers-compare] [--rss] [--profile OUT]

The fake vLLM (`tests/fakes/vllm.py`), the gateway (`toolwire serve`) and this client each run in
their own process. The fake streams a ~1 KB answer (text, then a hermes tool call) in 4-character
chunks. Legs, each against the same fake and read the same way (every byte, events counted):
  direct   POST /v1/completions on the fake, with the exact body the gateway sends upstream
  gateway  POST /v1/chat/completions on the gateway, `stream: true`, with tools
at concurrency 1, 8 and 32, in interleaved rounds. Then one streamed tool call with a large string
argument (256 KB and 1 MB, 16-character chunks), direct vs gateway; optionally the gateway with 1
vs 2 worker processes, and its memory at idle and with 1,000 streams open.
Results go to bench/results/speed.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import orjson
import yaml

from adapters.backends import GenerationRequest, HttpSettings, SamplingParams
from adapters.backends.vllm import VllmBackend
from adapters.formats import get_format
from gateway.api.chat_request import parse_chat_request
from gateway.core.chat_template import load_template_file
from gateway.core.prompt import build_prompt
from tests.support.gateway import TEMPLATES
from tests.support.health import wait_ok
from tests.support.real_llama import free_port

UPSTREAM, PUBLIC, EOS = "Qwen/Qwen2.5-7B-Instruct", "qwen", "<|im_end|>"
QWEN25 = TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja"
CHUNK = 4  # characters per upstream chunk, about one token
TEXT = ("Let me check the current conditions for you. Paris in early spring is usually mild, with cool "
        "mornings and the odd shower in the afternoon, so I will ask the weather service for the next three "
        "days and for the hourly detail of tomorrow, then summarise what to wear and whether a walk along the "
        "Seine in the evening is a good idea. One moment while I look that up.\n")
ARGUMENTS = {"city": "Paris, France", "unit": "celsius", "days": 3, "hourly": True,
             "fields": ["temperature", "apparent_temperature", "precipitation_probability", "wind_speed",
                        "wind_direction", "cloud_cover", "uv_index", "humidity"],
             "note": "Planning an evening walk along the Seine; the user prefers metric units and short answers, "
                     "and wants to know whether to bring an umbrella or a light jacket for the afternoon."}
WEATHER = {"name": "get_weather", "description": "Weather for a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"},
                                     "days": {"type": "integer"}, "hourly": {"type": "boolean"},
                                     "fields": {"type": "array", "items": {"type": "string"}},
                                     "note": {"type": "string"}}, "required": ["city"]}}
WRITE = {"name": "write_file", "description": "Write a file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}
MAX_TOKENS = 1_000_000  # sent by the client, so neither leg asks the fake for the context left


def hermes(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


REPLY = TEXT + hermes("get_weather", ARGUMENTS)


def big_argument(size: int) -> dict[str, str]:
    line = "The quick brown fox jumps over the lazy dog; 0123456789 caf\u00e9.\n"
    return {"path": "notes.txt", "content": (line * (size // len(line) + 1))[:size]}


def chat(tool: dict[str, Any], question: str) -> dict[str, Any]:
    return {"model": PUBLIC, "stream": True, "max_tokens": MAX_TOKENS,
            "tools": [{"type": "function", "function": tool}],
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": question}]}


CHAT = chat(WEATHER, "What will the weather be in Paris, and should I walk along the Seine tonight?")
BIG_CHAT = chat(WRITE, "Write my notes to notes.txt.")


# -- processes ------------------------------------------------------------------------------------

def serve_fake(mode: str) -> None:
    """Child-process entry: a fake vLLM answering every request with one scripted reply, or (mode
    `hold`) a vLLM-shaped server that sends one chunk and then holds the stream open."""
    from aiohttp import web

    from tests.fakes.vllm import FakeVllmServer, Scripted

    async def hold(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"id": "cmpl-hold", "object": "text_completion", "created": 0, "model": UPSTREAM,
                 "choices": [{"index": 0, "text": "Hi", "logprobs": None, "finish_reason": None, "stop_reason": None}]}
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await asyncio.Event().wait()
        return response

    async def main() -> None:
        if mode == "hold":
            app = web.Application()
            app.router.add_post("/v1/completions", hold)
            app.router.add_get("/health", lambda _: web.Response())
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
            print(f"http://127.0.0.1:{port}", flush=True)
        else:
            text = REPLY if mode == "reply" else hermes("write_file", big_argument(int(mode)))
            every = CHUNK if mode == "reply" else 16
            chunks = [text[i : i + every] for i in range(0, len(text), every)]
            fake = FakeVllmServer(model=UPSTREAM, eos_token=EOS, max_model_len=MAX_TOKENS * 10,
                                  default_reply=Scripted(chunks))
            print(await fake.start(), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def gateway_config(backends: dict[str, str], port: int) -> dict[str, Any]:
    route = {"tool_format": "hermes", "chat_template": str(QWEN25), "upstream_model": UPSTREAM}
    return {"listen": {"host": "127.0.0.1", "port": port}, "log_level": "info",
            "backends": [{"name": name, "type": "vllm", "url": url, "max_connections": 4096,
                          "max_concurrency": 4096, "queue_size": 4096} for name, url in backends.items()],
            "models": [{"name": PUBLIC if name == "main" else name, "backend": name, **route} for name in backends]}


async def start_fake(mode: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, str(Path(__file__).resolve()), "--serve-fake", mode,
                                                stdout=subprocess.PIPE)
    assert proc.stdout is not None
    url = (await proc.stdout.readline()).decode().strip()
    await wait_ok(f"{url}/health", within=60.0)
    return proc, url


async def stop(proc: asyncio.subprocess.Process) -> None:
    with suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()


@asynccontextmanager
async def gateway(backends: dict[str, str], *, workers: int = 1, root: Path = ROOT, profile: str | None = None,
                  loop: str = "auto") -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`toolwire serve` from `root` in its own process (under py-spy when profiling); yields its URL."""
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        config = Path(workdir) / "toolwire.yaml"
        config.write_text(yaml.safe_dump(gateway_config(backends, port)))
        command = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
        if workers != 1:
            command += ["--workers", str(workers)]
        if loop != "auto":
            command += ["--loop", loop]
        with (Path(workdir) / "gateway.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(*command, cwd=root, stdout=log, stderr=log)
            url = f"http://127.0.0.1:{port}"
            spy = None
            try:
                await wait_ok(f"{url}/health", within=60.0)
                if profile:  # attached once serving, so start-up (imports, templates) stays out of it
                    spy = await asyncio.create_subprocess_exec(
                        str(Path(sys.executable).parent / "py-spy"), "record", "-r", "250", "-f", "raw", "-o", profile,
                        "-p", str(proc.pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    await asyncio.sleep(1)
                yield url, proc
            finally:
                if spy is not None:  # py-spy writes its file on SIGINT
                    spy.send_signal(2)
                    await asyncio.wait_for(spy.wait(), 60)
                await stop(proc)


# -- load -----------------------------------------------------------------------------------------

@dataclass
class Sample:
    latency: float  # to the last byte
    first: float  # to the first byte of the body
    events: int  # SSE `data:` events


async def stream_once(session: aiohttp.ClientSession, url: str, body: bytes) -> Sample:
    start = time.perf_counter()
    first, events = 0.0, 0
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
        async for data in response.content.iter_any():
            first = first or time.perf_counter() - start
            events += data.count(b"data:")
    return Sample(time.perf_counter() - start, first, events)


async def run_batch(url: str, body: bytes, concurrency: int, total: int) -> tuple[list[Sample], float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(stream_once(session, url, body) for _ in range(concurrency)))  # warm the pool
        samples: list[Sample] = []
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                samples.append(await stream_once(session, url, body))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return samples, time.perf_counter() - start


def summary(samples: list[Sample], wall: float, upstream_chunks: int) -> dict[str, float]:
    return {"n": len(samples), "streams_s": len(samples) / wall, "chunks_s": len(samples) * upstream_chunks / wall,
            "events_s": sum(s.events for s in samples) / wall,
            "p50_ms": statistics.median(s.latency * 1000 for s in samples),
            "first_p50_ms": statistics.median(s.first * 1000 for s in samples)}


def direct_body(template_eos: str, chat_body: dict[str, Any], fake_url: str) -> bytes:
    """The body the gateway sends the fake for `chat_body`, built with the gateway's own code."""
    template = load_template_file(QWEN25, eos_token=template_eos)
    job = parse_chat_request(orjson.dumps(chat_body))
    plan = build_prompt(job.conversation, get_format("hermes"), template)
    request = GenerationRequest(prompt=plan.prompt, upstream_model=UPSTREAM, stop=plan.stop,
                                preserved_tokens=plan.preserved_tokens, bos_token=plan.bos_token,
                                eos_token=template.eos_token, sampling=SamplingParams(max_tokens=MAX_TOKENS))
    return orjson.dumps(VllmBackend("fake", HttpSettings(base_url=fake_url)).completion_body(request, MAX_TOKENS))


async def check_answer(gateway_url: str, body: dict[str, Any], expected_text: str, name: str,
                       arguments: dict[str, Any]) -> None:
    """The correctness check: the streamed chat answer, assembled, is the fake's text and call."""
    content, args, names, finish = [], [], [], None
    async with aiohttp.ClientSession() as session, \
            session.post(f"{gateway_url}/v1/chat/completions", data=orjson.dumps(body)) as response:
        raw = await response.read()
    for line in raw.split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        delta = orjson.loads(line[6:])["choices"][0]
        finish = delta["finish_reason"] or finish
        content.append(delta["delta"].get("content") or "")
        for call in delta["delta"].get("tool_calls") or ():
            names.append(call["function"].get("name"))
            args.append(call["function"].get("arguments") or "")
    assert "".join(content).strip() == expected_text.strip(), "content differs"
    assert [n for n in names if n] == [name] and json.loads("".join(args)) == arguments, "call differs"
    assert finish == "tool_calls", finish


async def legs(direct_url: str, direct: bytes, gateway_url: str, levels: dict[int, int], rounds: int,
               upstream_chunks: int) -> list[dict[str, Any]]:
    paths = {"direct": (direct_url, direct), "gateway": (f"{gateway_url}/v1/chat/completions", orjson.dumps(CHAT))}
    rows = []
    for concurrency, total in levels.items():
        samples: dict[str, list[Sample]] = {name: [] for name in paths}
        wall = dict.fromkeys(paths, 0.0)
        for _ in range(rounds):
            for name, (url, body) in paths.items():
                batch, seconds = await run_batch(url, body, concurrency, total // rounds)
                samples[name] += batch
                wall[name] += seconds
        for name in paths:
            rows.append({"conc": concurrency, "path": name, **summary(samples[name], wall[name], upstream_chunks)})
        d, g = rows[-2], rows[-1]
        g["chunk_ratio"], g["p50_ratio"] = g["chunks_s"] / d["chunks_s"], g["p50_ms"] / d["p50_ms"]
        print(f"  c={concurrency:<3} direct {d['chunks_s']:7.0f} chunks/s  gateway {g['chunks_s']:7.0f} chunks/s  "
              f"ratio {g['chunk_ratio']:.2f}  p50 {d['p50_ms']:.1f} / {g['p50_ms']:.1f} ms", flush=True)
    return rows


async def big_argument_leg(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """One streamed call with a large string argument, direct vs gateway, best of `repeats`."""
    rows = []
    for size in sizes:
        fake, url = await start_fake(str(size))
        try:
            async with gateway({"main": url}) as (gateway_url, _):
                await check_answer(gateway_url, BIG_CHAT, "", "write_file", big_argument(size))
                body = direct_body(EOS, BIG_CHAT, url)
                times: dict[str, float] = {}
                async with aiohttp.ClientSession() as session:
                    for name, target, data in (("direct", f"{url}/v1/completions", body),
                                               ("gateway", f"{gateway_url}/v1/chat/completions", orjson.dumps(BIG_CHAT))):
                        times[name] = min([(await stream_once(session, target, data)).latency
                                           for _ in range(repeats)])
        finally:
            await stop(fake)
        rows.append({"bytes": size, "direct_s": times["direct"], "gateway_s": times["gateway"],
                     "ratio": times["gateway"] / times["direct"]})
        print(f"  {size / 1e6:.2f} MB argument: direct {times['direct']:.2f} s, gateway {times['gateway']:.2f} s, "
              f"ratio {rows[-1]['ratio']:.2f}", flush=True)
    return rows


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the workers), in KiB."""
    total = 0
    pids = [pid]
    with suppress(FileNotFoundError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for each in pids:
        with suppress(FileNotFoundError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def memory_leg(reply_url: str, open_streams: int) -> dict[str, float]:
    """The gateway's RSS at idle (after a warm-up) and with `open_streams` streams held open."""
    hold, hold_url = await start_fake("hold")
    try:
        async with gateway({"main": reply_url, "hold": hold_url}) as (gateway_url, proc):
            await run_batch(f"{gateway_url}/v1/chat/completions", orjson.dumps(CHAT), 8, 64)
            await asyncio.sleep(1)
            idle = rss_kib(proc.pid)
            body = orjson.dumps({**CHAT, "model": "hold"})
            opened = 0
            all_open = asyncio.Event()

            async def hold_one(session: aiohttp.ClientSession) -> None:
                nonlocal opened
                async with session.post(f"{gateway_url}/v1/chat/completions", data=body) as response:
                    await response.content.readany()
                    opened += 1
                    if opened == open_streams:
                        all_open.set()
                    await asyncio.Event().wait()

            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                tasks = [asyncio.create_task(hold_one(session)) for _ in range(open_streams)]
                await asyncio.wait_for(all_open.wait(), 120)
                await asyncio.sleep(1)
                busy = rss_kib(proc.pid)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await stop(hold)
    result = {"idle_mib": idle / 1024, "open_streams": open_streams, "with_streams_mib": busy / 1024,
              "per_1000_streams_mib": (busy - idle) / 1024 * 1000 / open_streams}
    print(f"  RSS idle {result['idle_mib']:.1f} MiB; with {open_streams} open streams {result['with_streams_mib']:.1f} "
          f"MiB ({result['per_1000_streams_mib']:.1f} MiB per 1,000)", flush=True)
    return result


# -- main -----------------------------------------------------------------------------------------

async def bench(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    levels = {1: 40, 8: 96, 32: 192} if quick else {1: 200, 8: 400, 32: 640}
    if args.levels:
        levels = {int(c): int(n) for c, n in (level.split(":") for level in args.levels.split(","))}
    upstream_chunks = len(range(0, len(REPLY), CHUNK))
    result: dict[str, Any] = {"loadavg_before": os.getloadavg()[0], "cpus": os.cpu_count(),
                              "reply_chars": len(REPLY), "upstream_chunks": upstream_chunks}
    fake, fake_url = await start_fake("reply")
    try:
        direct = direct_body(EOS, CHAT, fake_url)
        root = Path(args.gateway_root).resolve() if args.gateway_root else ROOT
        async with gateway({"main": fake_url}, root=root, profile=args.profile, loop=args.loop) as (gateway_url, _):
            await check_answer(gateway_url, CHAT, TEXT, "get_weather", ARGUMENTS)
            print(f"Streams: {len(REPLY)}-character reply in {upstream_chunks} chunks of {CHUNK}", flush=True)
            result["load"] = await legs(f"{fake_url}/v1/completions", direct, gateway_url, levels, 2, upstream_chunks)
        if args.profile or args.load_only:
            return result
        if args.workers_compare:
            print("Workers: gateway streams at c=32, 1 vs 2 worker processes", flush=True)
            result["workers"] = []
            for workers in (1, 2):
                async with gateway({"main": fake_url}, workers=workers) as (gateway_url, _):
                    await check_answer(gateway_url, CHAT, TEXT, "get_weather", ARGUMENTS)
                    samples, wall = await run_batch(f"{gateway_url}/v1/chat/completions", orjson.dumps(CHAT), 32,
                                                    levels[32])
                    row = {"workers": workers, **summary(samples, wall, upstream_chunks)}
                    result["workers"].append(row)
                    print(f"  {workers} worker(s): {row['streams_s']:.0f} streams/s, {row['chunks_s']:.0f} chunks/s",
                          flush=True)
        if args.rss:
            print("Memory", flush=True)
            result["memory"] = await memory_leg(fake_url, 1000)
    finally:
        await stop(fake)
    print("Large argument: one streamed call, 16-character chunks", flush=True)
    result["big_argument"] = await big_argument_leg([256 * 1024, 1024 * 1024], 1 if quick else 2)
    big = result["big_argument"]
    result["big_argument_linearity"] = (big[1]["gateway_s"] / big[0]["gateway_s"]) / (big[1]["bytes"] / big[0]["bytes"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--workers-compare", action="store_true", help="also 1 vs 2 gateway workers")
    parser.add_argument("--rss", action="store_true", help="also memory at idle and with 1,000 open streams")
    parser.add_argument("--profile", help="record the gateway with py-spy (raw stacks to this file); load legs only")
    parser.add_argument("--levels", help="concurrency:requests pairs, e.g. 1:200,32:600")
    parser.add_argument("--load-only", action="store_true", help="only the direct vs gateway streams")
    parser.add_argument("--gateway-root", help="run the gateway from another source tree (before/after)")
    parser.add_argument("--loop", default="auto", help="the gateway's --loop")
    parser.add_argument("--serve-fake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        return serve_fake(args.serve_fake)
    started = time.perf_counter()
    result = asyncio.run(bench(args))
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = ROOT / "bench" / "results" / "speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
