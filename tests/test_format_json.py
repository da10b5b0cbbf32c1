"""The JSON-bodied native formats (Llama 3.x, Granite 3, Phi-4-mini, Command R7B) and
`tool_format: auto`, which must classify every fixture template."""

from __future__ import annotations

import json

import pytest
from openai import AsyncOpenAI

from adapters.formats import get_format
from adapters.formats.conversation import Conversation, Message, ToolCall, ToolSpec
from adapters.formats.detect import detect_format
from gateway.core.chat_template import load_template_file
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.test_stream_parser import Outcome, collect

WEATHER = ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
TIME = ToolSpec("get_time")
TOOLS = (WEATHER, TIME)


def parse(format_name: str, chunks: list[str]) -> Outcome:
    parser = get_format(format_name).new_parser(tools=TOOLS)
    events = [event for chunk in chunks for event in parser.feed(chunk)] + parser.close()
    return collect(events)


CORPUS = {
    "llama3_json": [
        ('{"name": "get_weather", "parameters": {"city": "Paris"}}', Outcome("", [("get_weather", {"city": "Paris"})])),
        ('\n\n{"name": "get_time", "parameters": {}}', Outcome("", [("get_time", {})])),
        ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Köln \\"x\\""}}',
         Outcome("", [("get_weather", {"city": 'Köln "x"'})])),
        ('{"name": "get_weather", "parameters": {"city": "A"}}; {"name": "get_time", "parameters": {}}',
         Outcome("", [("get_weather", {"city": "A"}), ("get_time", {})])),
        ('{"name": "Bob", "age": 3}', Outcome('{"name": "Bob", "age": 3}')),
        ('{"answer": 42}', Outcome('{"answer": 42}')),
        ("It is sunny.", Outcome("It is sunny.")),
        ('The JSON is {"name": "get_time", "parameters": {}}', Outcome('The JSON is {"name": "get_time", "parameters": {}}')),
        ('{"name": "get_weather", "parameters": {"city": "Par', Outcome('{"name": "get_weather", "parameters": {"city": "Par', failed=1)),
    ],
    "granite": [
        ('<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]',
         Outcome("", [("get_weather", {"city": "Paris"}), ("get_time", {})])),
        ("Hello", Outcome("Hello")),
        ('<|tool_call|>[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"ci',
         Outcome(', {"name": "get_weather", "arguments": {"ci', [("get_time", {})], failed=1)),
    ],
    "phi4_mini": [
        ('<|tool_call|>{"name": "get_time", "arguments": {}}<|/tool_call|>', Outcome("", [("get_time", {})])),
        (' functools[{"name": "get_weather", "arguments": {"city": "Oslo"}}]', Outcome("", [("get_weather", {"city": "Oslo"})])),
    ],
    "command_r7b": [
        ('<|START_THINKING|>I will look it up.<|END_THINKING|><|START_ACTION|>[{"tool_call_id": "0", "tool_name": '
         '"get_weather", "parameters": {"city": "Rome"}}]<|END_ACTION|>', Outcome("", [("get_weather", {"city": "Rome"})])),
        ("<|START_RESPONSE|>Ciao!<|END_RESPONSE|>", Outcome("Ciao!")),
    ],
}


@pytest.mark.parametrize(
    ("format_name", "text", "expected"),
    [pytest.param(name, text, expected, id=f"{name}-{i}") for name, cases in CORPUS.items() for i, (text, expected) in enumerate(cases)],
)
def test_corpus_split_at_every_position(format_name: str, text: str, expected: Outcome) -> None:
    for cut in range(len(text) + 1):
        assert parse(format_name, [text[:cut], text[cut:]]) == expected, f"split at {cut}"


HISTORY = Conversation(
    messages=(
        Message("user", "Weather in Paris and the time?"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'), ToolCall("call_2", "get_time", "{}"))),
        Message("tool", "sunny", tool_call_id="call_1"),
        Message("tool", "noon", tool_call_id="call_2"),
    ),
    tools=TOOLS,
)

# template -> (format, text the rendered history must contain: the call as the model was trained to see it)
ROUND_TRIP = {
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ("llama3_json", '{"name": "get_time", "parameters": {}}'),
    "tool_chat_template_granite.jinja": ("granite", '"name": "get_weather"'),
    "ibm-granite-granite-3.3-2B-Instruct.jinja": ("granite", "get_weather"),
    "llama-cpp-microsoft-Phi-4-mini-instruct.jinja": ("phi4_mini", '"name": "get_weather"'),
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": ("command_r7b", '"tool_name": "get_weather"'),
}


@pytest.mark.parametrize("template_name", list(ROUND_TRIP))
def test_history_round_trip_renders(template_name: str) -> None:
    format_name, expected = ROUND_TRIP[template_name]
    template = load_template_file(TEMPLATES / template_name, bos_token="<s>", eos_token="</s>")
    fmt = get_format(format_name)
    data = fmt.template_input(HISTORY, template.caps)
    prompt = template.render(data.messages, tools=data.tools, add_generation_prompt=True)
    assert expected in prompt
    assert "sunny" in prompt and "noon" in prompt, "both tool results are in the prompt"
    assert "Weather for a city" in prompt, "the tools are described"


# Every fixture template and the format its markers name. Templates that name none fall back to
# `default` here; `auto` may still learn their syntax from their renders (test_format_learned).
EXPECTED_FORMATS = {
    "Apriel-1.6-15b-Thinker-fixed.jinja": "apriel",
    "ByteDance-Seed-OSS.jinja": "seed_oss",
    "GLM-4.7-Flash.jinja": "glm45",
    "GigaChat3-10B-A1.8B.jinja": "default",
    "Kimi-K3.jinja": "default",
    "LFM2-8B-A1B.jinja": "lfm2",
    "LFM2.5-8B-A1B.jinja": "lfm2",
    "LFM2.5-Instruct.jinja": "lfm2",
    "MiniMax-M2.jinja": "minimax_m2",
    "NVIDIA-Nemotron-Nano-v2.jinja": "nemotron",
    "StepFun3.5-Flash.jinja": "qwen3_coder",
    "deepseek-ai-DeepSeek-V3.2.jinja": "deepseek_v32",
    "gemma4.jinja": "gemma4",
    "google-gemma-4-31B-it.jinja": "gemma4",
    "google-gemma-4-31B-it-interleaved.jinja": "gemma4",
    "tool_chat_template_functiongemma.jinja": "functiongemma",
    "tool_chat_template_toolace.jinja": "pythonic",
    "tool_chat_template_xlam_llama.jinja": "xlam",
    "tool_chat_template_xlam_qwen.jinja": "xlam",
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": "command_r_plus",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": "command_r7b",
    "GLM-4.6.jinja": "glm45",
    "Kimi-K2-Instruct.jinja": "kimi_k2",
    "Kimi-K2-Thinking.jinja": "kimi_k2",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": "mistral",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": "hermes",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": "hermes",
    "Qwen-QwQ-32B.jinja": "hermes",
    "Qwen-Qwen2.5-7B-Instruct.jinja": "hermes",
    "Qwen-Qwen3-0.6B.jinja": "hermes",
    "Qwen3-Coder.jinja": "qwen3_coder",
    "Qwen3.5-4B.jinja": "qwen3_coder",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": "deepseek",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": "deepseek",
    "deepseek-ai-DeepSeek-V3.1.jinja": "deepseek",
    "fireworks-ai-llama-3-firefunction-v2.jinja": "phi4_mini",
    "gemma3-instruct.index.jinja": "default",
    "google-gemma-2-2b-it.jinja": "default",
    "ibm-granite-granite-3.3-2B-Instruct.jinja": "granite",
    "ibm-granite-granite-4.0.jinja": "hermes",
    "llama-cpp-deepseek-r1.jinja": "deepseek",
    "llama-cpp-microsoft-Phi-4-mini-instruct.jinja": "phi4_mini",
    "meetkai-functionary-medium-v3.1.jinja": "functionary_v3_1",
    "meetkai-functionary-medium-v3.2.jinja": "functionary_v3_2",
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3_json",
    "meta-llama-Llama-3.2-3B-Instruct.jinja": "llama3_json",
    "meta-llama-Llama-3.3-70B-Instruct.jinja": "llama3_json",
    "microsoft-Phi-3.5-mini-instruct.jinja": "default",
    "microsoft-Phi-4-mini-instruct.jinja": "default",
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": "mistral",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral",
    "moonshotai-Kimi-K2.jinja": "kimi_k2",
    "openai-gpt-oss-120b.jinja": "gpt_oss",
    "tool_chat_template_deepseekv3.jinja": "deepseek",
    "tool_chat_template_gemma3_pythonic.jinja": "pythonic",
    "tool_chat_template_granite.jinja": "granite",
    "tool_chat_template_hermes.jinja": "hermes",
    "tool_chat_template_llama3.2_pythonic.jinja": "pythonic",
    "tool_chat_template_llama4_json.jinja": "llama3_json",
    "tool_chat_template_llama4_pythonic.jinja": "pythonic",
    "tool_chat_template_mistral3.jinja": "mistral",
    "tool_chat_template_phi4_mini.jinja": "phi4_mini",
    "unsloth-mistral-Devstral-Small-2507.jinja": "mistral",
}


def test_every_fixture_template_is_classified() -> None:
    fixtures = sorted(path.name for path in TEMPLATES.glob("*.jinja"))
    assert fixtures == sorted(EXPECTED_FORMATS), "the table covers every fixture"
    for name in fixtures:
        detection = detect_format((TEMPLATES / name).read_text())
        assert detection.format == EXPECTED_FORMATS[name], f"{name}: {detection.reason}"
        assert detection.reason


async def test_auto_format_through_the_gateway(fake_llama: FakeLlamaServer) -> None:
    backends = [{"name": "fake", "type": "llamacpp", "url": fake_llama.url}]
    models = [{"name": "llama-3.1", "backend": "fake", "tool_format": "auto",
               "chat_template": str(TEMPLATES / "meta-llama-Llama-3.1-8B-Instruct.jinja"),
               "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER.parameters}}]
    output = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            for stream in (False, True):
                fake_llama.script(Scripted(split_text(output)))
                messages = [{"role": "user", "content": "Weather in Paris?"}]
                if stream:
                    async with client.chat.completions.stream(model="llama-3.1", messages=messages, tools=tools) as s:
                        reply = await s.get_final_completion()
                else:
                    reply = await client.chat.completions.create(model="llama-3.1", messages=messages, tools=tools)
                call = reply.choices[0].message.tool_calls[0]
                assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
                assert reply.choices[0].finish_reason == "tool_calls"
    body = fake_llama.requests[-1]
    assert "<|eot_id|>" in body["stop"] and "<|eom_id|>" in body["stop"]
    assert "<|python_tag|>" in body["preserved_tokens"]
    assert not body["prompt"].startswith("<|begin_of_text|>"), "no double BOS"
