"""Running toolwire as a service: health, metrics, request ids, keys, limits, CORS, debug render,
graceful shutdown, config reload and `toolwire check` — against the running gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import structlog
from openai import (
    AsyncOpenAI,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
)

from tests.conftest import QWEN25, fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port

MODEL = "qwen2.5-7b-instruct"
HELLO = [{"role": "user", "content": "hi"}]


async def get(url: str, **kwargs) -> tuple[int, dict | str, dict]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as session:
        async with session.get(url, **kwargs) as response:
            body = await (response.json() if response.content_type == "application/json" else response.text())
            return response.status, body, dict(response.headers)


async def test_health_live_and_ready(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    backends.append({"name": "down", "type": "llamacpp", "url": f"http://127.0.0.1:{free_port()}"})
    async with running_gateway(make_config(backends, models)) as url:
        root = url.removesuffix("/v1")
        assert (await get(root + "/health/live"))[:2] == (200, {"status": "ok"})
        status, body, _ = await get(root + "/health/ready")
        assert status == 200 and body["status"] == "ready"
    models.append({"name": "orphan", "backend": "down", "chat_template": str(QWEN25)})
    async with running_gateway(make_config(backends, models)) as url:
        status, body, _ = await get(url.removesuffix("/v1") + "/health/ready")
        assert status == 503 and body["backends"] == {"fake": True, "down": False}
        assert body["problems"] == ["model 'orphan': backend 'down' is not reachable"]


async def test_metrics_and_request_ids(gateway_url: str, client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    call = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    fake_llama.script(Scripted(split_text(call)), Scripted(split_text(call)), Scripted(split_text("<tool_call>\n[oops")))
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=HELLO, tools=tools, extra_headers={"X-Request-ID": "trace-me-123"}
    )
    assert raw.headers["x-request-id"] == "trace-me-123"
    stream = await client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO, tools=tools, stream=True)
    assert stream.headers["x-request-id"].startswith("req_")
    async for _ in stream.parse():
        pass
    await client.chat.completions.create(model=MODEL, messages=HELLO, tools=tools)
    status, text, headers = await get(gateway_url.removesuffix("/v1") + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert f'toolwire_requests_total{{backend="fake",model="{MODEL}",route="chat",status="200"}} 3.0' in text
    assert 'toolwire_tool_calls_total{format="hermes"} 2.0' in text
    assert 'toolwire_malformed_tool_calls_total{format="hermes"} 1.0' in text
    assert f'toolwire_time_to_first_token_seconds_count{{model="{MODEL}"}} 3.0' in text
    assert 'toolwire_gateway_overhead_seconds_count{route="chat"} 3.0' in text
    assert f'toolwire_tokens_total{{direction="out",model="{MODEL}"}}' in text
    assert "toolwire_streams_in_flight 0.0" in text


async def test_api_keys_and_allowed_models(fake_llama: FakeLlamaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLWIRE_API_KEYS", "env-key")
    backends, models = fake_routes(fake_llama.url)
    auth = {"api_keys": [{"key": "qwen-only", "models": ["qwen*"]}, {"key": "${UNSET_KEY:-}"}]}
    async with running_gateway(make_config(backends, models, auth=auth)) as url:
        async with AsyncOpenAI(base_url=url, api_key="wrong", max_retries=0) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.models.list()
            assert caught.value.code == "invalid_api_key"
        status, body, _ = await get(url + "/models")  # no Authorization header at all
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        async with AsyncOpenAI(base_url=url, api_key="qwen-only", max_retries=0) as client:
            assert [m.id async for m in client.models.list()] == [MODEL], "a key sees only its models"
            fake_llama.script("hello")
            reply = await client.chat.completions.create(model=MODEL, messages=HELLO)
            assert reply.choices[0].message.content == "hello"
            with pytest.raises(PermissionDeniedError):
                await client.chat.completions.create(model="gemma-3", messages=HELLO)
        async with AsyncOpenAI(base_url=url, api_key="env-key", max_retries=0) as client:
            assert len([m async for m in client.models.list()]) == 2
        root = url.removesuffix("/v1")
        assert (await get(root + "/health/ready"))[0] == 200 and (await get(root + "/metrics"))[0] == 200


async def test_body_limit_concurrency_limit_and_timeout(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url, max_concurrency=1, queue_size=0)
    config = make_config(backends, models, limits={"max_body_bytes": 2000, "request_timeout": 1.0})
    async with running_gateway(config) as url:
        async with aiohttp.ClientSession() as session:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 5000}]}
            async with session.post(url + "/chat/completions", json=body) as response:
                assert response.status == 413 and (await response.json())["error"]["code"] == "request_too_large"
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            fake_llama.script(Scripted(["slow"] * 5, delay=0.1), Scripted(["late"] * 50, delay=0.1))
            first = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HELLO))
            await asyncio.sleep(0.1)
            with pytest.raises(RateLimitError) as caught:
                await client.chat.completions.create(model=MODEL, messages=HELLO)
            assert caught.value.code == "backend_busy" and caught.value.response.headers["retry-after"]
            assert (await first).choices[0].message.content == "slow" * 5
            with pytest.raises(Exception) as timed_out:  # 50 chunks x 0.1 s > the 1 s limit
                await client.chat.completions.create(model=MODEL, messages=HELLO)
            assert getattr(timed_out.value, "status_code", None) == 504


async def test_cors_is_off_by_default_and_configurable(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    origin = {"Origin": "https://app.example"}
    async with running_gateway(make_config(backends, models)) as url:
        _, _, headers = await get(url + "/models", headers=origin)
        assert "Access-Control-Allow-Origin" not in headers
    async with running_gateway(make_config(backends, models, cors={"allow_origins": ["https://app.example"]})) as url:
        _, _, headers = await get(url + "/models", headers=origin)
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with aiohttp.ClientSession() as session:
            async with session.options(
                url + "/chat/completions", headers={**origin, "Access-Control-Request-Method": "POST"}
            ) as response:
                assert response.status == 204 and "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_debug_render_and_prompt_logging(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    body = {"model": MODEL, "messages": HELLO, "tool_choice": {"type": "function", "function": {"name": "get_time"}},
            "tools": [{"type": "function", "function": {"name": "get_time"}}]}
    async with running_gateway(make_config(backends, models)) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/debug/render", json=body) as response:
                assert response.status == 404, "off unless enabled"
    config = make_config(backends, models, debug={"render_endpoint": True, "log_prompts": True})
    async with running_gateway(config) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/debug/render", json=body) as response:
                rendered = await response.json()
        assert rendered["prompt"].endswith("<|im_start|>assistant\n<tool_call>\n")
        assert "<|im_end|>" in rendered["stop"] and rendered["tool_format"] == "hermes"
        assert rendered["constraint"]["json_schema"]["properties"]["name"] == {"const": "get_time"}
        assert fake_llama.requests == [], "rendering never calls the backend"
        fake_llama.script("logged answer")
        with structlog.testing.capture_logs() as logs:
            async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
                await client.chat.completions.create(model=MODEL, messages=HELLO)
        events = {entry["event"]: entry for entry in logs}
        assert events["prompt_rendered"]["prompt"].endswith("<|im_start|>assistant\n")
        assert events["model_output"]["output"] == "logged answer"
        assert events["request"]["model"] == MODEL and events["request"]["request_id"]


def write_config(path: Path, fake_url: str, port: int, models: list[str], grace: float = 10) -> None:
    routes = "".join(
        f"  - {{name: {name}, backend: fake, tool_format: hermes, chat_template: '{QWEN25}'}}\n" for name in models
    )
    path.write_text(
        f"listen: {{host: 127.0.0.1, port: {port}}}\nlimits: {{shutdown_grace: {grace}}}\n"
        f"backends:\n  - {{name: fake, type: llamacpp, url: '{fake_url}'}}\nmodels:\n{routes}"
    )


async def start_gateway(config: Path, port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env={**os.environ},
    )
    for _ in range(100):
        try:
            if (await get(f"http://127.0.0.1:{port}/health/live"))[0] == 200:
                return process
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
    raise AssertionError("the gateway did not start")


async def test_sigterm_lets_the_stream_finish_and_refuses_new_work(tmp_path: Path, fake_llama: FakeLlamaServer) -> None:
    port = free_port()
    write_config(tmp_path / "t.yaml", fake_llama.url, port, ["qwen"])
    process = await start_gateway(tmp_path / "t.yaml", port)
    url = f"http://127.0.0.1:{port}"
    fake_llama.script(Scripted(["tick "] * 15, delay=0.1))
    async with AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        stream = await client.chat.completions.create(model="qwen", messages=HELLO, stream=True)
        first = await anext(stream)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert (await get(url + "/health/ready"))[:2] == (503, {"status": "shutting_down"})
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/v1/models") as response:
                assert response.status == 503 and (await response.json())["error"]["code"] == "shutting_down"
        chunks = [first] + [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tick " * 15 and chunks[-1].choices[0].finish_reason == "stop", "the stream finished"
    assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_sighup_reloads_routes_and_keeps_them_on_a_bad_file(tmp_path: Path, fake_llama: FakeLlamaServer) -> None:
    port = free_port()
    config = tmp_path / "t.yaml"
    write_config(config, fake_llama.url, port, ["one"])
    process = await start_gateway(config, port)
    models_url = f"http://127.0.0.1:{port}/v1/models"
    try:
        write_config(config, fake_llama.url, port, ["one", "two"])
        process.send_signal(signal.SIGHUP)
        for _ in range(50):
            if [m["id"] for m in (await get(models_url))[1]["data"]] == ["one", "two"]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the reload did not take")
        config.write_text("models: [oops")
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert [m["id"] for m in (await get(models_url))[1]["data"]] == ["one", "two"], "the bad file was rejected"
    finally:
        process.terminate()
        await process.wait()


async def test_check_command(tmp_path: Path, fake_llama: FakeLlamaServer) -> None:
    config = tmp_path / "t.yaml"
    write_config(config, fake_llama.url, free_port(), ["qwen"])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "check", "--config", str(config), stdout=asyncio.subprocess.PIPE
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert "qwen" in output and "hermes" in output and "1 ok, 0 with problems" in output
    write_config(config, f"http://127.0.0.1:{free_port()}", free_port(), ["qwen"])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "check", "--config", str(config), stdout=asyncio.subprocess.PIPE
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 1 and "PROBLEM" in output
