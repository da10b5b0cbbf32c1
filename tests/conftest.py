"""Fixtures: a fake llama-server speaking the real wire format, the gateway as a real HTTP server
in front of it, and the real `openai` SDK as the client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.support.real_llama import RunningServer, start_server

QWEN25 = TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja"
GEMMA3 = TEMPLATES / "gemma3-instruct.index.jinja"
# Markers the fake treats as special tokens, which llama-server drops from the output unless the
# request lists them in `preserved_tokens` (in real Qwen2.5 GGUFs <tool_call> is a user-defined
# token that prints anyway; treating it as special proves the gateway preserves its markers).
QWEN_SPECIAL = {"<tool_call>", "</tool_call>", "<|im_end|>", "<|im_start|>", "<|endoftext|>"}


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real llama-server with the real small model, one per test module that asks for it."""
    server = start_server(tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()


@pytest.fixture
async def fake_llama() -> AsyncIterator[FakeLlamaServer]:
    server = FakeLlamaServer(bos_token="", eos_token="<|endoftext|>", special_tokens=QWEN_SPECIAL)
    await server.start()
    yield server
    await server.stop()


def fake_routes(url: str, **backend_extra: object) -> tuple[list[dict], list[dict]]:
    backends = [{"name": "fake", "type": "llamacpp", "url": url, **backend_extra}]
    models = [
        {"name": "qwen2.5-7b-instruct", "backend": "fake", "tool_format": "hermes", "chat_template": str(QWEN25),
         "eos_token": "<|endoftext|>"},
        {"name": "gemma-3", "backend": "fake", "tool_format": "default", "chat_template": str(GEMMA3),
         "bos_token": "<bos>", "eos_token": "<eos>"},
    ]
    return backends, models


@pytest.fixture
async def gateway_url(fake_llama: FakeLlamaServer) -> AsyncIterator[str]:
    backends, models = fake_routes(fake_llama.url)
    async with running_gateway(make_config(backends, models)) as url:
        yield url


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=gateway_url, api_key="test-key", max_retries=0, timeout=30) as sdk:
        yield sdk


def shared_path(*parts: str) -> Path:
    return TEMPLATES.parents[1].joinpath(*parts)
