"""toolwire benchmark: gateway overhead against a direct call to the same fake llama-server,
the shared parser's scaling with argument size, and the gateway's CPU cost per request.

    .venv/bin/python bench/run.py [--quick]

The fake backend and the gateway each run in their own process; this process is the client.
Results are printed as tables and written to bench/results/latest.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import orjson
import yaml

from adapters.backends import GenerationRequest, HttpSettings, Usage
from adapters.backends.llamacpp import LlamaCppBackend
from adapters.formats import get_format
from adapters.formats.events import ToolCallEnd
from gateway.api.chat_encoding import ChunkEncoder, ResponseCollector
from gateway.api.chat_request import parse_chat_request
from gateway.core.chat_template import ChatTemplate, load_template_file
from gateway.core.pipeline import Completed
from gateway.core.prompt import build_prompt
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import TEMPLATES
from tests.support.health import wait_ok
from tests.support.real_llama import free_port

_T = TypeVar("_T")

MODEL, EOS = "qwen2.5-7b-instruct", "<|endoftext|>"
QWEN25 = TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja"
QWEN_SPECIAL = {"<tool_call>", "</tool_call>", "<|im_end|>", "<|im_start|>", EOS}
REPLY = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris, France", "unit": "celsius", '
         '"days": 3}}\n</tool_call>')
REPLY_CHUNKS = split_text(REPLY, special=QWEN_SPECIAL)  # 33 token-like pieces
WEATHER = {"name": "get_weather", "description": "Current weather for a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"},
                                     "days": {"type": "integer"}}, "required": ["city"]}}
CHAT = {"model": MODEL, "tools": [{"type": "function", "function": WEATHER}], "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"}]}
CHUNK_CHARS = 8  # parser input piece size, about one token


# -- processes ------------------------------------------------------------------------------------

def serve_fake() -> None:
    """Child-process entry (--serve-fake): the fake llama-server, answering every request with REPLY."""
    async def main() -> None:
        fake = FakeLlamaServer(bos_token="", eos_token=EOS, special_tokens=QWEN_SPECIAL,
                               default_reply=Scripted(list(REPLY_CHUNKS)))
        print(await fake.start(), flush=True)
        await asyncio.Event().wait()
    asyncio.run(main())


def gateway_config(backend_url: str, port: int) -> dict[str, Any]:
    """The config tests/support/gateway.py builds for the Qwen2.5 route, listening on `port`."""
    return {"listen": {"host": "127.0.0.1", "port": port}, "log_level": "info",
            "backends": [{"name": "fake", "type": "llamacpp", "url": backend_url}],
            "models": [{"name": MODEL, "backend": "fake", "tool_format": "hermes",
                        "chat_template": str(QWEN25), "eos_token": EOS}]}


@asynccontextmanager
async def servers() -> AsyncIterator[tuple[str, str]]:
    """The fake backend and `toolwire serve` in their own processes; yields (fake URL, gateway URL)."""
    fake = await asyncio.create_subprocess_exec(sys.executable, str(Path(__file__).resolve()), "--serve-fake",
                                                stdout=subprocess.PIPE)
    procs = [fake]
    with tempfile.TemporaryDirectory() as workdir:
        try:
            assert fake.stdout is not None
            fake_url, port = (await fake.stdout.readline()).decode().strip(), free_port()
            config = Path(workdir) / "toolwire.yaml"
            config.write_text(yaml.safe_dump(gateway_config(fake_url, port)))
            with (Path(workdir) / "gateway.log").open("wb") as log:  # one JSON line per request, as deployed
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "serve", "--config", str(config), cwd=ROOT, stdout=log, stderr=log))
            gateway_url = f"http://127.0.0.1:{port}"
            await wait_ok(f"{fake_url}/health")
            await wait_ok(f"{gateway_url}/health")
            yield fake_url, gateway_url
        finally:
            for proc in reversed(procs):
                with suppress(ProcessLookupError):  # already gone
                    proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)


# -- load -----------------------------------------------------------------------------------------

@dataclass
class Sample:
    latency: float  # to the last byte
    first: float  # to the first SSE event (streams), else the last byte
    chunks: int  # SSE `data:` events (1 for a non-stream read)


Send = Callable[[aiohttp.ClientSession], Awaitable[Sample]]


def post(url: str, body: bytes, *, stream: bool) -> Send:
    """One POST; a stream is read event by event, anything else in one read."""
    async def send(session: aiohttp.ClientSession) -> Sample:
        start = time.perf_counter()
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
            if not stream:
                await response.read()
                elapsed = time.perf_counter() - start
                return Sample(elapsed, elapsed, 1)
            first, chunks = 0.0, 0
            async for line in response.content:
                if line.startswith(b"data:"):
                    chunks += 1
                    first = first or time.perf_counter() - start
            return Sample(time.perf_counter() - start, first, chunks)
    return send


async def run_batch(send: Send, concurrency: int, total: int, warmup: int) -> tuple[list[Sample], float]:
    """`total` requests from `concurrency` workers on keep-alive connections; (samples, wall seconds)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(send(session) for _ in range(warmup)))
        samples: list[Sample] = []
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                samples.append(await send(session))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return samples, time.perf_counter() - start


def summarize(samples: list[Sample], wall: float) -> dict[str, float]:
    latency, chunks = [s.latency * 1000 for s in samples], sum(s.chunks for s in samples)
    return {"n": len(samples), "rps": len(samples) / wall, "p50_ms": statistics.median(latency),
            "p99_ms": statistics.quantiles(latency, n=100)[98],
            "first_p50_ms": statistics.median(s.first * 1000 for s in samples),
            "chunks_req": chunks / len(samples), "chunks_s": chunks / wall}


async def check_replies(fake: str, gateway: str, direct: bytes) -> bytes:
    """Both paths answer as expected; returns the fake's SSE body, for the CPU stages."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway}/v1/chat/completions", data=orjson.dumps(CHAT)) as response:
            reply = await response.json()
        call = reply["choices"][0]["message"]["tool_calls"][0]["function"]
        assert call["name"] == "get_weather" and json.loads(call["arguments"])["days"] == 3, reply
        async with session.post(f"{fake}/completion", data=direct) as response:
            raw = await response.read()
    assert b"<tool_call>" in raw and b'"stop":true' in raw, raw[:300]
    return raw


async def load_tests(fake: str, gateway: str, direct: bytes, levels: dict[int, int],
                     rounds: int) -> list[dict[str, Any]]:
    """Each level: the four paths in turn, `rounds` times (so drift hits all alike), warm-up first."""
    chat_url, direct_url = f"{gateway}/v1/chat/completions", f"{fake}/completion"
    paths: dict[str, Send] = {  # the gateway always streams upstream, so "direct" reads a whole SSE body
        "direct": post(direct_url, direct, stream=False),
        "gateway": post(chat_url, orjson.dumps(CHAT), stream=False),
        "direct-stream": post(direct_url, direct, stream=True),
        "gateway-stream": post(chat_url, orjson.dumps({**CHAT, "stream": True}), stream=True),
    }
    rows = []
    for concurrency, total in levels.items():
        samples: dict[str, list[Sample]] = {name: [] for name in paths}
        wall = dict.fromkeys(paths, 0.0)
        for round_ in range(rounds):
            for name, send in paths.items():
                warmup = max(20, 2 * concurrency) if round_ == 0 else concurrency
                batch, seconds = await run_batch(send, concurrency, total // rounds, warmup)
                samples[name] += batch
                wall[name] += seconds
        for name in paths:
            rows.append({"conc": concurrency, "path": name, **summarize(samples[name], wall[name])})
            print(f"  c={concurrency:<3} {name:<15} {rows[-1]['rps']:6.0f} req/s", flush=True)
    return rows


# -- parser and CPU stages ------------------------------------------------------------------------

def string_payload(size: int) -> str:
    """Arguments with one string value of about `size` characters: prose with an escaped newline per line."""
    line = "The quick brown fox jumps over the lazy dog; 0123456789 \u00e9t\u00e9 caf\u00e9 na\u00efve.\\n"
    return '{"path": "notes.txt", "content": "' + (line * (size // len(line) + 1))[: size - 40] + '"}'


def structure_payload(size: int) -> str:
    """Arguments of about `size` characters that are mostly structure: small objects, short keys, numbers."""
    row = lambda i: {"id": i, "x": i * 0.25, "y": -i, "ok": i % 2 == 0, "t": [i, i + 1]}
    per_row = len(orjson.dumps(row(5000))) + 1
    return orjson.dumps({"rows": [row(i) for i in range(size // per_row)]}).decode()


def parse_pieces(pieces: list[str]) -> list[Any]:
    parser = get_format("hermes").new_parser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events + parser.close()


def parser_row(kind: str, arguments: str, repeats: int) -> dict[str, Any]:
    """Parse one call in CHUNK_CHARS pieces (best of `repeats`), then encode its events as chat chunks."""
    text = f'<tool_call>\n{{"name": "write_file", "arguments": {arguments}}}\n</tool_call>'
    pieces = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    best = best_us(lambda: parse_pieces(pieces), 1, repeats) / 1e6
    events = parse_pieces(pieces)
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert len(ends) == 1 and orjson.loads(ends[0].arguments) == orjson.loads(arguments), "parse mismatch"
    encoder = ChunkEncoder("chatcmpl-bench", MODEL, include_usage=False)
    encode_us = best_us(lambda: [encoder.event(event) for event in events], 1, repeats)
    size = len(text.encode())
    return {"kind": kind, "bytes": size, "pieces": len(pieces), "events": len(events), "parse_ms": best * 1000,
            "mb_s": size / best / 1e6, "us_piece": best / len(pieces) * 1e6, "encode_us_event": encode_us / len(events)}


def best_us(run: Callable[[], Any], iterations: int, repeats: int = 5) -> float:
    """Best of `repeats` loops of `iterations` calls, in µs per call."""
    best = math.inf
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for _ in range(iterations):
            run()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best * 1e6


def settled(step: Coroutine[Any, Any, _T]) -> _T:
    """The value of a coroutine that never waits (an encoder's closing), without an event loop."""
    try:
        step.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise RuntimeError("the coroutine waited on something")


def stage_costs(sse: bytes, template: ChatTemplate, backend: LlamaCppBackend, iterations: int) -> dict[str, float]:
    """µs per request for each step the gateway runs on the load test's request, without the network."""
    body, hermes = orjson.dumps(CHAT), get_format("hermes")
    job = parse_chat_request(body)
    generation = upstream_request(template)
    lines = [line[5:] for line in sse.split(b"\n") if line.startswith(b"data:")]
    pieces = [c for c in (orjson.loads(line).get("content") for line in lines) if c]
    events = parse_pieces(pieces)
    done = Completed("tool_calls", Usage(40, len(pieces)))

    def encode_stream() -> bytes:
        enc = ChunkEncoder("chatcmpl-bench", MODEL, include_usage=False)
        return b"".join([enc.opening(), *(enc.event(e) or b"" for e in events), settled(enc.closing(done))])

    def collect() -> bytes:
        collector = ResponseCollector("chatcmpl-bench", MODEL)
        for event in events:
            collector.add(event)
        return orjson.dumps(settled(collector.result(done)))

    stages: dict[str, Callable[[], Any]] = {
        "parse_chat_request": lambda: parse_chat_request(body),
        "build_prompt (Qwen2.5 template)": lambda: build_prompt(job.conversation, hermes, template),
        "upstream body (completion_body+dumps)": lambda: orjson.dumps(backend.completion_body(generation)),
        f"upstream SSE decode ({len(lines)} lines)": lambda: [orjson.loads(line) for line in lines],
        f"parser ({len(pieces)} pieces, {len(events)} events)": lambda: parse_pieces(pieces),
        "  of which new_call_id": hermes.new_call_id,
        "stream encode (ChunkEncoder)": encode_stream,
        "non-stream collect (+dumps)": collect,
    }
    return {name: best_us(run, iterations) for name, run in stages.items()}


def upstream_request(template: ChatTemplate) -> GenerationRequest:
    """What the gateway sends the backend for CHAT, built with the gateway's own code."""
    plan = build_prompt(parse_chat_request(orjson.dumps(CHAT)).conversation, get_format("hermes"), template)
    return GenerationRequest(prompt=plan.prompt, upstream_model=MODEL, stop=plan.stop,
                             preserved_tokens=plan.preserved_tokens, bos_token=plan.bos_token)


# -- report ---------------------------------------------------------------------------------------

def table(rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """Rows as columns headed by their keys; `columns` maps a key to its format spec (strings print as they
    are, a missing key is blank). The first column is left-aligned, the others right-aligned."""
    cells = [[row[k] if isinstance(row.get(k), str) else format(row[k], spec) if k in row else ""
              for k, spec in columns.items()] for row in rows]
    widths = [max(len(key), *(len(line[i]) for line in cells)) for i, key in enumerate(columns)]
    for first, *rest in [list(columns), *cells]:
        print("  ".join([first.ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(rest, widths[1:]))]))


def with_overhead(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds overhead_p50_ms/_p99_ms (gateway minus direct) to gateway rows; returns the rows to print."""
    by_key, shown = {(r["conc"], r["path"]): r for r in rows}, []
    for r in rows:
        shown.append({k: v for k, v in r.items() if k != "first_p50_ms" or "stream" in r["path"]})
        if r["path"].startswith("gateway"):
            base = by_key[(r["conc"], r["path"].replace("gateway", "direct"))]
            r["overhead_p50_ms"], r["overhead_p99_ms"] = r["p50_ms"] - base["p50_ms"], r["p99_ms"] - base["p99_ms"]
            shown.append({"path": "overhead", "p50_ms": f"{r['overhead_p50_ms']:+.2f}",
                          "p99_ms": f"{r['overhead_p99_ms']:+.2f}"})
    return shown


def report(load: list[dict[str, Any]], parsing: list[dict[str, Any]], stages: dict[str, float],
           load_before: float) -> None:
    print(f"\nLoad: the fake llama-server, the gateway and this client share {os.cpu_count()} CPU cores, each its "
          f"own process (load average before: {load_before:.2f}).\nFake reply: {len(REPLY_CHUNKS)} tokens, no "
          "delays. Latency to last byte; first_p50_ms = to the first SSE event; overhead = gateway - direct.")
    table(with_overhead(load), {"conc": "d", "path": "s", "n": "d", "rps": ".0f", "p50_ms": ".2f", "p99_ms": ".2f",
                                "first_p50_ms": ".2f", "chunks_req": ".0f", "chunks_s": ".0f"})
    print(f"\nParser (hermes; one call fed in {CHUNK_CHARS}-character pieces), and ChunkEncoder.event per event")
    table(parsing, {"kind": "s", "bytes": "d", "pieces": "d", "events": "d", "parse_ms": ".1f", "mb_s": ".2f",
                    "us_piece": ".2f", "encode_us_event": ".2f"})
    for kind in ("string", "structure"):
        *_, a, b = [None, *sorted((r for r in parsing if r["kind"] == kind), key=lambda r: r["bytes"])]
        if a:
            print(f"{kind}: time({b['bytes'] / 1e6:.2f} MB) / time({a['bytes'] / 1e6:.2f} MB) = "
                  f"{b['parse_ms'] / a['parse_ms']:.1f}; size ratio {b['bytes'] / a['bytes']:.1f} (equal if linear)")
    print("\nGateway CPU per request, no network (the load test's request and reply), us")
    streamed = sum(us for name, us in stages.items() if not name.startswith(("non-stream", "  ")))
    table([{"stage": name, "us": us} for name, us in [*stages.items(), ("total, streamed", streamed)]],
          {"stage": "s", "us": ".1f"})


# -- main -----------------------------------------------------------------------------------------

async def bench(quick: bool) -> dict[str, Any]:
    levels = {1: 60, 8: 96, 32: 128} if quick else {1: 450, 8: 900, 32: 1536}
    load_before = os.getloadavg()[0]
    template = load_template_file(QWEN25, eos_token=EOS)
    async with servers() as (fake_url, gateway_url):
        backend = LlamaCppBackend("fake", HttpSettings(base_url=fake_url))
        direct = orjson.dumps(backend.completion_body(upstream_request(template)))  # what the gateway sends
        sse = await check_replies(fake_url, gateway_url, direct)
        print("Load test: 4 paths x 3 concurrency levels, interleaved rounds after a warm-up", flush=True)
        load = await load_tests(fake_url, gateway_url, direct, levels, rounds=2 if quick else 3)
    print("Parser and CPU stages (backend and gateway stopped)", flush=True)
    sizes = [("string", n) for n in (10_000, 100_000, 1_000_000)]
    sizes += [("structure", n) for n in ((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000))]
    payload = {"string": string_payload, "structure": structure_payload}
    parsing = [parser_row(kind, payload[kind](n), 1 if quick else 3) for kind, n in sizes]
    stages = stage_costs(sse, template, backend, 200 if quick else 2000)
    await backend.close()
    report(load, parsing, stages, load_before)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "loadavg_before": load_before, "note": "backend, gateway and client share these CPUs"}
    return {"quick": quick, "machine": machine, "load": load, "parser": parsing, "stages_us": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and sizes (about 15 s)")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        return serve_fake()
    started = time.perf_counter()
    result = asyncio.run(bench(args.quick))
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = ROOT / "bench" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
