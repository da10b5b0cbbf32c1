"""`toolwire serve` as a user starts it: a real process, a config file, a port."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import TEMPLATES
from tests.support.real_llama import free_port

TOOLWIRE = [sys.executable, "-m", "gateway"]


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *TOOLWIRE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, output.decode()


async def test_bad_config_fails_at_start_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "backends:\n  - {name: a, type: llamacpp, url: 'http://127.0.0.1:1'}\n"
        "models:\n  - {name: m, backend: b}\n  - {name: n, backend: a, tool_format: nonsense}\n"
    )
    code, output = await run_cli("serve", "--config", str(config))
    assert code == 2
    assert f"{config}: models[0].backend: unknown backend 'b' (defined: a)" in output
    code, output = await run_cli("serve", env={"TOOLWIRE_CONFIG": str(tmp_path / "missing.yaml")})
    assert code == 2 and "missing.yaml: file not found" in output


async def test_unknown_tool_format_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "formats.yaml"
    config.write_text(
        "backends:\n  - {name: a, type: llamacpp, url: 'http://127.0.0.1:1'}\n"
        "models:\n  - {name: n, backend: a, tool_format: nonsense}\n"
    )
    code, output = await run_cli("serve", "--config", str(config))
    assert code == 2 and "models[0].tool_format: unknown tool format 'nonsense'" in output


async def test_serve_with_toolwire_config_variable(tmp_path: Path, fake_llama: FakeLlamaServer) -> None:
    port = free_port()
    config = tmp_path / "toolwire.yaml"
    config.write_text(
        f"listen: {{host: 127.0.0.1, port: '${{PORT}}'}}\n"
        f"backends:\n  - {{name: a, type: llamacpp, url: '{fake_llama.url}'}}\n"
        f"models:\n  - {{name: qwen, backend: a, tool_format: hermes, chat_template: '{TEMPLATES / 'Qwen-Qwen2.5-7B-Instruct.jinja'}'}}\n"
    )
    process = await asyncio.create_subprocess_exec(
        *TOOLWIRE, "serve", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "TOOLWIRE_CONFIG": str(config), "PORT": str(port)},
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/v1/models") as response:
                        body = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the gateway did not start")
            assert [m["id"] for m in body["data"]] == ["qwen"]
            fake_llama.script("Hi there")
            async with session.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}]},
            ) as response:
                answer = await response.json()
            assert answer["choices"][0]["message"]["content"] == "Hi there"
    finally:
        process.terminate()
        await process.wait()
