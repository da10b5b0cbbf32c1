"""One gateway, three backend types at once: a model on llama.cpp, one on vLLM and one on Ollama,
each with tools, streamed and not, through the real `openai` SDK."""

from __future__ import annotations

import json

from openai import AsyncOpenAI

from tests.conftest import GEMMA3, QWEN25
from tests.fakes.llamacpp import FakeLlamaServer, split_text
from tests.fakes.llamacpp import Scripted as LlamaScript
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.ollama import Scripted as OllamaScript
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import make_config, running_gateway

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
HERMES = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
DEFAULT = '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}[END_TOOL_REQUEST]'
ASK = [{"role": "user", "content": "Weather in Paris?"}]


async def test_three_models_on_three_backends(fake_llama: FakeLlamaServer) -> None:
    async with (
        FakeVllmServer(model="Qwen/Qwen2.5-7B-Instruct", eos_token="<|im_end|>", max_model_len=32768) as vllm,
        FakeOllama(models=[FakeModel(name="gemma3:270m", context_length=32768)]) as ollama,
    ):
        backends = [
            {"name": "llama", "type": "llamacpp", "url": fake_llama.url},
            {"name": "vllm", "type": "vllm", "url": vllm.url},
            {"name": "ollama", "type": "ollama", "url": ollama.url},
        ]
        models = [
            {"name": "on-llama", "backend": "llama", "tool_format": "hermes", "chat_template": str(QWEN25)},
            {"name": "on-vllm", "backend": "vllm", "upstream_model": "Qwen/Qwen2.5-7B-Instruct",
             "tool_format": "hermes", "chat_template": str(QWEN25)},
            {"name": "on-ollama", "backend": "ollama", "upstream_model": "gemma3:270m", "tool_format": "default",
             "chat_template": str(GEMMA3), "bos_token": "<bos>", "eos_token": "<eos>"},
        ]
        scripts = {
            "on-llama": lambda: fake_llama.script(LlamaScript(split_text(HERMES))),
            "on-vllm": lambda: vllm.script(VllmScript(split_text(HERMES))),
            "on-ollama": lambda: ollama.script(OllamaScript(split_text(DEFAULT))),
        }
        async with running_gateway(make_config(backends, models)) as url:
            async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
                assert sorted([m.id async for m in client.models.list()]) == sorted(scripts)
                for model, script in scripts.items():
                    script()
                    whole = await client.chat.completions.create(model=model, messages=ASK, tools=TOOLS)
                    call = whole.choices[0].message.tool_calls[0]
                    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
                    assert whole.choices[0].finish_reason == "tool_calls"
                    script()
                    async with client.chat.completions.stream(model=model, messages=ASK, tools=TOOLS) as stream:
                        streamed = await stream.get_final_completion()
                    assert streamed.choices[0].message.tool_calls[0].function.arguments == call.function.arguments
                    assert streamed.choices[0].finish_reason == "tool_calls"
        assert len(fake_llama.requests) == 2 and len(vllm.requests) == 2 and len(ollama.requests) == 2
