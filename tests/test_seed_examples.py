"""The four Python examples of LM Studio's tool-use documentation (the seed document toolwire was
started from) run against toolwire unchanged except for `base_url`.

The code is read from the seed document itself at test time; the only other edit undoes the
document's rendering of `->` as `→`. Each script runs as its own process with the real `openai`
SDK; a fake llama-server plays a Qwen2.5 model writing hermes tool calls.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from tests.conftest import QWEN25
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import SHARED, make_config, running_gateway

SEED = SHARED / "seeds" / "000_e434279848f4bc60.txt"
MODEL = "lmstudio-community/qwen2.5-7b-instruct"  # the examples' own model name, routed as is

EXAMPLES = {
    "single_turn": ("from openai import OpenAI\n\n# Connect to LM Studio", "say_hello(name) # Prints: Hello, Bob the Builder!"),
    "multi_turn": ("from datetime import datetime, timedelta", "print(response.choices[0].message.content, flush=True)"),
    "agent": ("import json\nfrom urllib.parse import urlparse", 'if __name__ == "__main__":\n    chat()'),
    "streaming_chatbot": ("from openai import OpenAI\nimport time", 'if __name__ == "__main__":\n    chat_loop()'),
}


def example_code(name: str, base_url: str) -> str:
    text = SEED.read_text(encoding="utf-8")
    start_marker, end_marker = EXAMPLES[name]
    start = text.index(start_marker)
    end = text.index(end_marker, start) + len(end_marker)
    code = text[start:end].replace("→", "->")
    assert code.count('base_url="https://:1234/v1"') == 1
    return code.replace('base_url="https://:1234/v1"', f'base_url="{base_url}"')


def call(name: str, arguments: str) -> Scripted:
    return Scripted(split_text(f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'))


@pytest.fixture
async def seed_gateway(fake_llama: FakeLlamaServer) -> AsyncIterator[str]:
    backends = [{"name": "fake", "type": "llamacpp", "url": fake_llama.url}]
    models = [{"name": MODEL, "backend": "fake", "tool_format": "hermes", "chat_template": str(QWEN25)}]
    async with running_gateway(make_config(backends, models)) as url:
        yield url


async def run_example(name: str, base_url: str, stdin: str = "") -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", example_code(name, base_url),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    text = output.decode()
    assert process.returncode == 0, text
    return text


async def test_single_turn(seed_gateway: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(call("say_hello", '{"name": "Bob the Builder"}'))
    output = await run_example("single_turn", seed_gateway)
    assert output.strip() == "Hello, Bob the Builder!"


async def test_multi_turn(seed_gateway: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(
        call("get_delivery_date", '{"order_id": "1017"}'),
        Scripted(split_text("Your order number 1017 will arrive soon.")),
    )
    output = await run_example("multi_turn", seed_gateway)
    assert "finish_reason='tool_calls'" in output and "name='get_delivery_date'" in output
    assert output.rstrip().endswith("Your order number 1017 will arrive soon.")
    second_prompt = fake_llama.requests[1]["prompt"]
    assert '<tool_call>\n{"name": "get_delivery_date", "arguments": {"order_id": "1017"}}\n</tool_call>' in second_prompt
    assert '<tool_response>\n{"order_id": "1017", "delivery_date": "' in second_prompt


async def test_agent(seed_gateway: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(
        call("get_current_time", "{}"),
        Scripted(split_text("It is time for tea.")),
        call("analyze_directory", '{"path": "."}'),
        Scripted(split_text("Your directory has files.")),
    )
    output = await run_example("agent", seed_gateway, "What time is it?\nWhat is in this directory?\nquit\n")
    assert "Assistant: It is time for tea." in output
    assert "Assistant: Your directory has files." in output
    assert "Assistant: Goodbye!" in output
    assert '"status": "success"' in fake_llama.requests[1]["prompt"], "the tool's result went back to the model"


async def test_streaming_chatbot(seed_gateway: str, fake_llama: FakeLlamaServer) -> None:
    joke = "Why don't scientists trust atoms? Because they make up everything."
    fake_llama.script(
        Scripted(split_text(joke + '\n<tool_call>\n{"name": "get_current_time", "arguments": {}}\n</tool_call>')),
        Scripted(split_text("The current time is now.")),
    )
    output = await run_example("streaming_chatbot", seed_gateway, "Tell me a joke, then tell me the current time\nquit\n")
    assert f"Assistant: {joke}" in output
    assert "**Calling Tool: get_current_time**" in output
    assert "The current time is now." in output
    assert "<tool_response>\n{'time': '" in fake_llama.requests[1]["prompt"]
