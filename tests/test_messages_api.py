"""Anthropic's Messages API through the running gateway, driven by the official `anthropic` SDK (and
raw HTTP where the wire itself is the point), against the fake llama.cpp, vLLM and Ollama servers.

The same model output must give the same calls here as on the OpenAI surface, and the same
conversation must reach the backend as the same request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from anthropic import (
    APIStatusError,
    AsyncAnthropic,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
)
from openai import AsyncOpenAI

from tests.conftest import GEMMA3, QWEN25, fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import make_config, running_gateway

MODEL = "qwen2.5-7b-instruct"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"name": "get_weather", "description": "Current weather for a city", "input_schema": SCHEMA}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
TOOLS = [WEATHER, TIME]
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": SCHEMA}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
ASK = [{"role": "user", "content": "Weather in Paris and the time?"}]


def hermes_call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


PARIS = hermes_call("get_weather", '{"city": "Paris"}')
CORPUS = {
    "text": "It is sunny in Paris.",
    "single call": PARIS,
    "parallel calls": PARIS + "\n" + hermes_call("get_time", "{}"),
    "text around a call": "Let me look.\n" + PARIS + "\nOne moment.",
    "reasoning and a call": "<think>The user wants Paris.</think>\n\n" + PARIS,
    "unicode": hermes_call("get_weather", '{"city": "Zürich \\"Alt\\"\\n東京"}'),
    "malformed call": '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>',
}


@pytest.fixture
async def claude(gateway_url: str) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=gateway_url.removesuffix("/v1"), api_key="test-key", max_retries=0,
                              timeout=30) as sdk:
        yield sdk


def script(fake: FakeLlamaServer, output: str, times: int = 1) -> None:
    # Tokens come apart in time, as a model's do (the gateway forwards what each read brings).
    fake.script(*(Scripted(split_text(output), delay=0.002) for _ in range(times)))


def summary(content: list[Any]) -> list[tuple[Any, ...]]:
    """A reply's blocks, as plain tuples (block ids left out: they are fresh each time)."""
    out: list[tuple[Any, ...]] = []
    for block in content:
        if block.type == "text":
            out.append(("text", block.text))
        elif block.type == "thinking":
            out.append(("thinking", block.thinking))
        else:
            assert block.type == "tool_use" and block.id.startswith("toolu_01") and len(block.id) == 30
            out.append(("tool_use", block.name, block.input))
    return out


DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


async def raw_stream(sdk: AsyncAnthropic, **params: Any) -> tuple[list[Any], list[tuple[Any, ...]], Any]:
    """`messages.create(stream=True)` accumulated by hand from the events, checking their order."""
    events = [event async for event in await sdk.messages.create(stream=True, **params)]
    assert events[0].type == "message_start" and events[0].message.content == []
    assert events[0].message.stop_reason is None
    assert [e.type for e in events[-2:]] == ["message_delta", "message_stop"]
    blocks: dict[int, list[Any]] = {}
    open_index = None
    for event in events[1:-2]:
        if event.type == "content_block_start":
            assert open_index is None and event.index == len(blocks), "blocks open one at a time, in order"
            open_index = event.index
            block = event.content_block
            blocks[event.index] = [block.type, getattr(block, "name", None), ""]
        elif event.type == "content_block_delta":
            assert event.index == open_index
            field = DELTA_FIELDS[event.delta.type]
            blocks[event.index][2] += getattr(event.delta, field)
        else:
            assert event.type == "content_block_stop" and event.index == open_index
            open_index = None
    assert open_index is None
    accumulated: list[tuple[Any, ...]] = []
    for kind, name, text in (blocks[i] for i in sorted(blocks)):
        accumulated.append(("tool_use", name, json.loads(text or "{}")) if kind == "tool_use" else (kind, text))
    return events, accumulated, events[-2]


@pytest.mark.parametrize("case", list(CORPUS))
async def test_same_output_same_calls_as_the_openai_surface(
    client: AsyncOpenAI, claude: AsyncAnthropic, fake_llama: FakeLlamaServer, case: str
) -> None:
    if case == "malformed call":  # each broken reply is continued under a grammar: the model writes a null
        fake_llama.script(*(item for _ in range(4) for item in (Scripted(split_text(CORPUS[case])), "null}}")))
    else:
        script(fake_llama, CORPUS[case], times=4)
    openai = (await client.chat.completions.create(model=MODEL, messages=ASK, tools=OPENAI_TOOLS)).choices[0]
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "messages": ASK, "tools": TOOLS,
                              "thinking": {"type": "enabled", "budget_tokens": 1024}}
    whole = await claude.messages.create(**params)
    blocks = summary(whole.content)

    calls = [("tool_use", c.function.name, json.loads(c.function.arguments)) for c in openai.message.tool_calls or []]
    assert [b for b in blocks if b[0] == "tool_use"] == calls
    assert "".join(b[1] for b in blocks if b[0] == "text") == (openai.message.content or "")
    reasoning = getattr(openai.message, "reasoning_content", None) or ""
    assert "".join(b[1] for b in blocks if b[0] == "thinking") == reasoning
    assert whole.stop_reason == ("tool_use" if calls else "end_turn")
    assert {"tool_calls": "tool_use", "stop": "end_turn"}[openai.finish_reason] == whole.stop_reason
    assert whole.id.startswith("msg_01") and whole.model == MODEL and whole.role == "assistant"
    assert whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0

    if case == "malformed call":  # broken after its name: repaired with what the model wrote, in every mode
        assert calls == [("tool_use", "get_weather", {"city": None})]
    events, streamed, delta = await raw_stream(claude, **params)
    assert streamed == blocks
    assert delta.delta.stop_reason == whole.stop_reason and delta.usage.output_tokens == whole.usage.output_tokens
    if case == "single call":
        fragments = [e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        assert len(fragments) > 2, "the input arrives in pieces as the model writes it"

    async with claude.messages.stream(**params) as stream:
        final = await stream.get_final_message()
    assert summary(final.content) == blocks and final.stop_reason == whole.stop_reason


async def test_thinking_is_returned_only_when_asked_for(claude: AsyncAnthropic, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, CORPUS["reasoning and a call"], times=3)
    call = ("tool_use", "get_weather", {"city": "Paris"})
    for thinking in (None, {"type": "disabled"}):
        extra = {"thinking": thinking} if thinking else {}
        whole = await claude.messages.create(model=MODEL, max_tokens=64, messages=ASK, tools=TOOLS, **extra)
        assert summary(whole.content) == [call]
    _, streamed, _ = await raw_stream(claude, model=MODEL, max_tokens=64, messages=ASK, tools=TOOLS,
                                      thinking={"type": "adaptive"})
    assert streamed == [("thinking", "The user wants Paris."), call]


async def test_the_wire_is_anthropics_sse(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, "Let me look.\n" + PARIS)
    body = {"model": MODEL, "max_tokens": 64, "messages": ASK, "tools": TOOLS, "stream": True}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as session, session.post(f"{gateway_url}/messages", json=body,
                                                                headers=headers) as reply:
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/event-stream")
        text = await reply.text()
    frames = [dict(line.split(": ", 1) for line in block.split("\n")) for block in text.split("\n\n") if block]
    events = [json.loads(frame["data"]) for frame in frames]
    assert [frame["event"] for frame in frames] == [event["type"] for event in events]
    kinds = [event["type"] for event in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert events[2]["content_block"] == {"type": "text", "text": ""}
    tool_start = next(e for e in events if e["type"] == "content_block_start" and e["index"] == 1)
    assert tool_start["content_block"]["input"] == {} and tool_start["content_block"]["name"] == "get_weather"
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    usage = events[-2]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


CHOICES = [
    ({}, {}),
    ({"tool_choice": {"type": "auto"}}, {"tool_choice": "auto"}),
    ({"tool_choice": {"type": "any"}}, {"tool_choice": "required"}),
    ({"tool_choice": {"type": "tool", "name": "get_time"}},
     {"tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
    ({"tool_choice": {"type": "none"}}, {"tool_choice": "none"}),
    ({"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}, {"parallel_tool_calls": False}),
    ({"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
     {"tool_choice": "required", "parallel_tool_calls": False}),
    # This SDK release no longer names the samplers; older clients (and the wire) still send them.
    ({"stop_sequences": ["END"], "extra_body": {"temperature": 0.5, "top_p": 0.9, "top_k": 7}},
     {"stop": ["END"], "temperature": 0.5, "top_p": 0.9, "extra_body": {"top_k": 7}}),
]


@pytest.mark.parametrize(("anthropic_params", "openai_params"), CHOICES)
async def test_tool_choice_and_sampling_reach_the_backend_as_from_the_openai_surface(
    client: AsyncOpenAI, claude: AsyncAnthropic, fake_llama: FakeLlamaServer,
    anthropic_params: dict[str, Any], openai_params: dict[str, Any],
) -> None:
    two_calls = PARIS + "\n" + hermes_call("get_time", "{}")
    script(fake_llama, two_calls, times=2)
    system = "You are terse."
    openai = await client.chat.completions.create(
        model=MODEL, max_tokens=64, messages=[{"role": "system", "content": system}, *ASK], tools=OPENAI_TOOLS,
        **openai_params)
    whole = await claude.messages.create(model=MODEL, max_tokens=64, system=[{"type": "text", "text": system}],
                                         messages=ASK, tools=TOOLS, **anthropic_params)
    from_openai, from_anthropic = fake_llama.requests[-2:]
    assert from_anthropic == from_openai
    calls = [("tool_use", c.function.name, json.loads(c.function.arguments)) for c in openai.choices[0].message.tool_calls or []]
    assert [b for b in summary(whole.content) if b[0] == "tool_use"] == calls
    if "parallel_tool_calls" in openai_params:
        assert len(calls) == 1


def get_weather(city: str) -> str:
    return {"Paris": "sunny, 21C"}.get(city, "unknown")


def weather_model(prompt: str) -> str:
    """A scripted model that reads its context: it calls the tool, then answers from the result."""
    if "<tool_response>" in prompt:
        result = prompt.rsplit("<tool_response>\n", 1)[1].split("\n</tool_response>", 1)[0]
        return f"The weather in Paris: {result}."
    return "Let me check.\n" + PARIS


async def test_a_tool_loop_tool_use_then_tool_result_then_the_answer(
    client: AsyncOpenAI, claude: AsyncAnthropic, fake_llama: FakeLlamaServer
) -> None:
    fake_llama.script(weather_model, weather_model)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await claude.messages.create(model=MODEL, max_tokens=128, messages=messages, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    use = next(block for block in first.content if block.type == "tool_use")
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": get_weather(**use.input)}]},
    ]
    async with claude.messages.stream(model=MODEL, max_tokens=128, messages=messages, tools=[WEATHER]) as stream:
        answer = await stream.get_final_message()
    assert answer.stop_reason == "end_turn"
    assert summary(answer.content) == [("text", "The weather in Paris: sunny, 21C.")]

    # The same conversation from an OpenAI client renders to the same prompt.
    fake_llama.script(weather_model)
    await client.chat.completions.create(model=MODEL, messages=[
        messages[0],
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ], tools=[OPENAI_TOOLS[0]])
    assert fake_llama.prompts[-1] == fake_llama.prompts[-2]


async def test_a_failed_tool_result_tells_the_model(claude: AsyncAnthropic, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, "Sorry.")
    await claude.messages.create(model=MODEL, max_tokens=16, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hidden", "signature": ""},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Atlantis"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": [{"type": "text", "text": "no such city"}]},
            {"type": "text", "text": "Try again?"}]},
    ])
    prompt = fake_llama.prompts[-1]
    assert "<tool_response>\nError: no such city\n</tool_response>" in prompt
    assert '{"name": "get_weather", "arguments": {"city": "Atlantis"}}' in prompt
    assert "Try again?" in prompt and "hidden" not in prompt


async def test_stop_reasons(claude: AsyncAnthropic, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, "Hello there END and more", times=2)
    whole = await claude.messages.create(model=MODEL, max_tokens=64, messages=ASK, stop_sequences=["END"])
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", "END")
    assert summary(whole.content) == [("text", "Hello there ")]
    _, _, delta = await raw_stream(claude, model=MODEL, max_tokens=64, messages=ASK, stop_sequences=["END"])
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("stop_sequence", "END")

    script(fake_llama, "one two three four five six seven")
    cut = await claude.messages.create(model=MODEL, max_tokens=3, messages=ASK)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3 and cut.stop_sequence is None

    script(fake_llama, "Done.")
    done = await claude.messages.create(model=MODEL, max_tokens=64, messages=ASK)
    assert done.stop_reason == "end_turn" and done.stop_sequence is None


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/messages", json=body, headers=headers) as reply:
        return reply.status, await reply.json()


@pytest.mark.parametrize(("body", "param_in_message"), [
    ({"model": MODEL, "messages": ASK}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 0, "messages": ASK}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 8, "messages": []}, "messages"),
    ({"model": MODEL, "max_tokens": 8, "messages": ASK, "temperature": 1.5}, "temperature"),
    ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}]}]}, "image"),
    ({"model": MODEL, "max_tokens": 8, "messages": ASK, "tools": [
        {"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
    ({"model": MODEL, "max_tokens": 8, "messages": ASK, "tools": [{"name": "x"}]}, "input_schema"),
    ({"model": MODEL, "max_tokens": 8, "messages": ASK, "tools": TOOLS,
      "tool_choice": {"type": "tool", "name": "nope"}}, "nope"),
    ({"model": MODEL, "max_tokens": 8, "messages": ASK, "tool_choice": {"type": "any"}}, "no tools"),
    ({"model": MODEL, "max_tokens": 8, "messages": [*ASK, {"role": "assistant", "content": "The answer is "}]},
     "trailing whitespace"),
    ({"model": MODEL, "max_tokens": 8, "messages": [*ASK, {"role": "assistant", "content": "The answer is"}],
      "tools": TOOLS, "tool_choice": {"type": "any"}}, "prefilled"),
    ({"model": MODEL, "max_tokens": 8, "messages": [*ASK, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "get_time", "input": {}}]}]}, "text blocks only"),
    ({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "t", "name": "get_time", "input": {}}]}]}, "assistant"),
])
async def test_bad_requests_are_anthropic_400s(gateway_url: str, body: dict[str, Any], param_in_message: str) -> None:
    status, error = await post(gateway_url, body)
    assert status == 400
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param_in_message in error["error"]["message"]
    assert error["request_id"].startswith("req_")


async def test_errors_through_the_sdk(claude: AsyncAnthropic, gateway_url: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        await claude.messages.create(model="claude-nope", max_tokens=8, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(BadRequestError) as bad:
        await claude.messages.create(model=MODEL, max_tokens=8, messages=ASK, tools=TOOLS,
                                     tool_choice={"type": "tool", "name": "get_stock"})
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    # Not valid JSON at all.
    async with aiohttp.ClientSession() as session, session.post(f"{gateway_url}/messages", data=b"{nope") as reply:
        assert reply.status == 400 and (await reply.json())["error"]["type"] == "invalid_request_error"
    # The OpenAI surfaces keep OpenAI's shape.
    async with aiohttp.ClientSession() as session, session.post(f"{gateway_url}/chat/completions", data=b"{") as reply:
        assert set((await reply.json())["error"]) == {"message", "type", "param", "code"}


async def test_keys_from_x_api_key_or_bearer(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, models, auth={"api_keys": [{"key": "sk-right", "models": [MODEL]}]})
    async with running_gateway(config) as url:
        base = url.removesuffix("/v1")
        script(fake_llama, "Hi.", times=2)
        async with AsyncAnthropic(base_url=base, api_key="sk-right", max_retries=0) as by_header:
            assert (await by_header.messages.create(model=MODEL, max_tokens=8, messages=ASK)).content[0].text == "Hi."
        async with AsyncAnthropic(base_url=base, auth_token="sk-right", max_retries=0) as by_bearer:
            assert (await by_bearer.messages.create(model=MODEL, max_tokens=8, messages=ASK)).content[0].text == "Hi."
        async with AsyncAnthropic(base_url=base, api_key="sk-wrong", max_retries=0) as wrong:
            with pytest.raises(AuthenticationError) as denied:
                await wrong.messages.create(model=MODEL, max_tokens=8, messages=ASK)
            assert denied.value.body["error"]["type"] == "authentication_error"
            assert "x-api-key" in denied.value.body["error"]["message"]
        status, error = await post(url, {"model": "gemma-3", "max_tokens": 8, "messages": ASK}, {"x-api-key": "sk-right"})
        assert status == 403 and error["error"]["type"] == "permission_error"


async def test_backend_faults(fake_llama: FakeLlamaServer, claude: AsyncAnthropic) -> None:
    fake_llama.script(Scripted(split_text("Partly cloudy with a chance of errors"), error_after=3))
    with pytest.raises(APIStatusError) as mid_stream:
        await raw_stream(claude, model=MODEL, max_tokens=64, messages=ASK)
    assert mid_stream.value.body["type"] == "error" and mid_stream.value.body["error"]["type"] == "api_error"
    assert "Compute error" in mid_stream.value.body["error"]["message"]

    backends, models = fake_routes("http://127.0.0.1:9")  # nothing listens there
    async with (
        running_gateway(make_config(backends, models)) as url,
        AsyncAnthropic(base_url=url.removesuffix("/v1"), api_key="k", max_retries=0) as sdk,
    ):
        with pytest.raises(InternalServerError) as unreachable:
            await sdk.messages.create(model=MODEL, max_tokens=8, messages=ASK)
    assert unreachable.value.status_code == 502 and unreachable.value.body["error"]["type"] == "api_error"


async def test_a_busy_backend_is_overloaded(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url, max_concurrency=1, queue_size=0)
    fake_llama.script(Scripted(["slow"], delay=1.0))
    async with running_gateway(make_config(backends, models)) as url:
        body = {"model": MODEL, "max_tokens": 8, "messages": ASK}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/messages", json={**body, "stream": True}) as slow,
        ):
            assert slow.status == 200
            status, error = await post(url, body)
            chat = await session.post(f"{url}/chat/completions", json=body)
            await slow.read()
    assert status == 529 and error["error"]["type"] == "overloaded_error"
    assert chat.status == 429, "the OpenAI surface keeps OpenAI's status for the same fault"


async def test_count_tokens_is_what_the_generation_is_charged(claude: AsyncAnthropic, fake_llama: FakeLlamaServer) -> None:
    params: dict[str, Any] = {"model": MODEL, "messages": ASK, "tools": TOOLS, "system": "Be brief."}
    for extra in ({}, {"tool_choice": {"type": "any"}}):
        counted = (await claude.messages.count_tokens(**params, **extra)).input_tokens
        script(fake_llama, PARIS)
        whole = await claude.messages.create(max_tokens=64, **params, **extra)
        assert counted == whole.usage.input_tokens + whole.usage.cache_read_input_tokens
    bare = (await claude.messages.count_tokens(model=MODEL, messages=ASK)).input_tokens
    assert bare < counted, "the tools are part of the prompt"
    with pytest.raises(NotFoundError):
        await claude.messages.count_tokens(model="nope", messages=ASK)


async def test_count_tokens_on_vllm_and_ollama() -> None:
    async with (
        FakeVllmServer(model="Qwen/Qwen2.5-7B-Instruct", eos_token="<|im_end|>", max_model_len=32768) as vllm,
        FakeOllama(models=[FakeModel(name="gemma3:270m", context_length=32768)]) as ollama,
    ):
        backends = [{"name": "vllm", "type": "vllm", "url": vllm.url}, {"name": "ollama", "type": "ollama", "url": ollama.url}]
        models = [
            {"name": "on-vllm", "backend": "vllm", "upstream_model": "Qwen/Qwen2.5-7B-Instruct",
             "tool_format": "hermes", "chat_template": str(QWEN25)},
            {"name": "on-ollama", "backend": "ollama", "upstream_model": "gemma3:270m", "tool_format": "default",
             "chat_template": str(GEMMA3), "bos_token": "<bos>", "eos_token": "<eos>"},
        ]
        async with (
            running_gateway(make_config(backends, models)) as url,
            AsyncAnthropic(base_url=url.removesuffix("/v1"), api_key="k", max_retries=0) as sdk,
        ):
            counted = (await sdk.messages.count_tokens(model="on-vllm", messages=ASK, tools=TOOLS)).input_tokens
            vllm.script(VllmScript(split_text(PARIS)))
            whole = await sdk.messages.create(model="on-vllm", max_tokens=64, messages=ASK, tools=TOOLS)
            assert summary(whole.content) == [("tool_use", "get_weather", {"city": "Paris"})]
            assert counted == whole.usage.input_tokens + whole.usage.cache_read_input_tokens
            with pytest.raises(APIStatusError) as unsupported:
                await sdk.messages.count_tokens(model="on-ollama", messages=ASK)
    assert unsupported.value.status_code == 501 and unsupported.value.body["error"]["type"] == "api_error"
    assert "no tokenizer" in unsupported.value.body["error"]["message"]
