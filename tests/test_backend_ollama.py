"""The Ollama backend (`type: ollama`, native `POST /api/generate` with `raw: true`): through the running
gateway with the real `openai` SDK, against a fake Ollama that speaks its wire format; plus checks of
the fake's own wire format over plain HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from openai import APIError, AsyncOpenAI, BadRequestError

from adapters.backends import GenerationRequest, HttpSettings
from adapters.backends.ollama import DEFAULT_NUM_CTX, OllamaBackend
from tests.conftest import GEMMA3, QWEN25
from tests.fakes.llamacpp import split_text
from tests.fakes.ollama import CONTEXT_ERROR, FakeModel, FakeOllama, Scripted
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port

GEMMA_UPSTREAM = "gemma3:270m"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "Weather in Paris and the time?"}]
HELLO = [{"role": "user", "content": "hi"}]
STORY = ["Once", " upon", " a", " time", " there", " was"]


def call(name: str, arguments: str) -> str:
    return f'[TOOL_REQUEST]{{"name": "{name}", "arguments": {arguments}}}[END_TOOL_REQUEST]'


def fake_models() -> list[FakeModel]:
    return [
        # Ollama >= 0.30 runs a GGUF with a chat template natively and shows that template.
        FakeModel(name=GEMMA_UPSTREAM, context_length=32768, chat_template=GEMMA3.read_text()),
        FakeModel(name="llama3.2:1b", architecture="llama", context_length=131072, chat_template=None),
        FakeModel(name="tiny:latest", architecture="tiny", context_length=None),
        FakeModel(name="deepseek:latest", architecture="deepseek2", context_shift=False, context_length=64),
        FakeModel(name="qwen3:0.6b", architecture="qwen3", capabilities=("completion", "thinking")),
    ]


def routes(url: str, **backend_extra: Any) -> tuple[list[dict], list[dict]]:
    backends = [{"name": "ollama", "type": "ollama", "url": url, **backend_extra}]
    gemma = {"backend": "ollama", "tool_format": "default", "chat_template": str(GEMMA3),
             "bos_token": "<bos>", "eos_token": "<eos>"}
    models = [
        {"name": "gemma-3", "upstream_model": GEMMA_UPSTREAM, **gemma, "context_size": 16384, "keep_alive": "10m"},
        {"name": "gemma-3-auto", "upstream_model": GEMMA_UPSTREAM, **gemma},
        {"name": "gemma-3-forever", "upstream_model": GEMMA_UPSTREAM, **gemma, "context_size": 8192,
         "keep_alive": "-1"},
        {"name": "gemma-3-backend", "upstream_model": GEMMA_UPSTREAM, "backend": "ollama", "tool_format": "default",
         "chat_template": "backend"},
        {"name": "llama-go-only", "upstream_model": "llama3.2:1b", "backend": "ollama", "chat_template": "backend"},
        {"name": "tiny", "upstream_model": "tiny:latest", **gemma},
        {"name": "deepseek", "upstream_model": "deepseek:latest", **gemma},
        {"name": "qwen3", "upstream_model": "qwen3:0.6b", **gemma},
        {"name": "missing", "upstream_model": "missing:latest", **gemma, "context_size": 4096},
        {"name": "missing-auto", "upstream_model": "missing:latest", **gemma},
    ]
    return backends, models


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=fake_models()) as server:
        yield server


@pytest.fixture
async def client(fake: FakeOllama) -> AsyncIterator[AsyncOpenAI]:
    async with running_gateway(make_config(*routes(fake.url, timeouts={"read": 0.5}))) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=30) as sdk:
            yield sdk


async def ask(client: AsyncOpenAI, model: str = "gemma-3", **kwargs: Any) -> Any:
    return await client.chat.completions.create(
        model=model, messages=kwargs.pop("messages", ASK), tools=kwargs.pop("tools", TOOLS), **kwargs
    )


async def ask_streamed(client: AsyncOpenAI, model: str = "gemma-3", **kwargs: Any) -> tuple[list, Any]:
    chunks = []
    async with client.chat.completions.stream(
        model=model, messages=kwargs.pop("messages", ASK), tools=kwargs.pop("tools", TOOLS), **kwargs
    ) as stream:
        async for event in stream:
            if event.type == "chunk":
                chunks.append(event.chunk)
        final = await stream.get_final_completion()
    return chunks, final


def summary(message: Any) -> tuple:
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    return message.content, calls


# ---- tool calls in the default format ------------------------------------------------------------

CORPUS = {
    "single call": (
        call("get_weather", '{"city": "Paris"}'), (None, [("get_weather", {"city": "Paris"})]), "tool_calls"
    ),
    "parallel calls": (
        call("get_weather", '{"city": "Paris"}') + "\n" + call("get_time", "{}"),
        (None, [("get_weather", {"city": "Paris"}), ("get_time", {})]),
        "tool_calls",
    ),
    "text around a call": (
        "Let me look.\n" + call("get_weather", '{"city": "Paris"}') + "\nOne moment.",
        ("Let me look.\n\nOne moment.", [("get_weather", {"city": "Paris"})]),
        "tool_calls",
    ),
    "no call": ("It is sunny in Paris & <warm>.", ("It is sunny in Paris & <warm>.", []), "stop"),
}


@pytest.mark.parametrize("case", list(CORPUS))
async def test_default_format_stream_and_non_stream_agree(client: AsyncOpenAI, fake: FakeOllama, case: str) -> None:
    output, expected, finish_reason = CORPUS[case]
    fake.script(output, output)
    whole = await ask(client)
    _, streamed = await ask_streamed(client)
    for completion in (whole, streamed):
        assert summary(completion.choices[0].message) == expected
        assert completion.choices[0].finish_reason == finish_reason
    ids = [c.id for c in whole.choices[0].message.tool_calls or []]
    assert len(set(ids)) == len(ids) and all(i.startswith("call_") for i in ids)


async def test_calls_survive_text_split_at_every_position(client: AsyncOpenAI, fake: FakeOllama) -> None:
    output = 'Sure.\n[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST]'
    for cut in range(1, len(output), 7):
        fake.script(Scripted([output[:cut], output[cut:]]), Scripted([output[:cut], output[cut:]]))
        whole = await ask(client)
        _, streamed = await ask_streamed(client)
        for message in (whole.choices[0].message, streamed.choices[0].message):
            assert summary(message) == ("Sure.", [("get_time", {})]), f"split at {cut}"


async def test_hermes_markers_that_are_not_control_tokens_survive() -> None:
    """Qwen2.5/Qwen3 have `<tool_call>` as an added token with special=false: a user-defined token in the
    GGUF, which Ollama prints even in raw mode. Only control tokens (`<|im_end|>`, ...) vanish."""
    qwen = FakeModel(name="qwen2.5:7b", architecture="qwen2", chat_template=QWEN25.read_text(), add_bos=False)
    async with FakeOllama(models=[qwen], special_tokens={"<|im_start|>"},
                          eog_tokens={"<|im_end|>", "<|endoftext|>"}) as fake:
        models = [{"name": "qwen", "backend": "ollama", "upstream_model": "qwen2.5:7b", "tool_format": "hermes",
                   "chat_template": "backend"}]
        async with running_gateway(make_config(routes(fake.url)[0], models)) as url:
            async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
                output = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call><|im_end|>ignored'
                fake.script(Scripted(split_text(output, special=["<tool_call>", "</tool_call>", "<|im_end|>"])))
                reply = await ask(client, model="qwen")
        assert summary(reply.choices[0].message) == (None, [("get_time", {})])
        assert reply.choices[0].finish_reason == "tool_calls"
        assert fake.requests[-1]["prompt"].endswith("<|im_start|>assistant\n")


# ---- what goes upstream --------------------------------------------------------------------------


async def test_request_shape_sent_upstream(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script("ok")
    await ask(client, temperature=0.3, top_p=0.9, seed=7, stop=["END"], max_tokens=50,
              presence_penalty=0.5, frequency_penalty=0.25, extra_body={"top_k": 20, "min_p": 0.05})
    body = fake.requests[-1]
    assert list(body)[:6] == ["model", "prompt", "raw", "stream", "think", "options"]
    assert body["model"] == GEMMA_UPSTREAM
    assert (body["raw"], body["stream"], body["think"], body["keep_alive"]) == (True, True, False, "10m")
    options = body["options"]
    assert options["num_ctx"] == 16384, "the route's context_size"
    assert options["num_predict"] == 50
    assert (options["temperature"], options["top_p"], options["seed"], options["top_k"], options["min_p"]) == (
        0.3, 0.9, 7, 20, 0.05)
    assert (options["presence_penalty"], options["frequency_penalty"]) == (0.5, 0.25)
    assert "<end_of_turn>" in options["stop"] and "<eos>" in options["stop"] and "END" in options["stop"]
    prompt = body["prompt"]
    assert not prompt.startswith("<bos>"), "Ollama adds BOS to a raw prompt itself: the template's copy goes"
    assert prompt.startswith("<start_of_turn>user\n") and prompt.endswith("<start_of_turn>model\n")
    assert "[TOOL_REQUEST]" in prompt and '"get_weather"' in prompt
    assert fake.generations[-1]["num_ctx"] == 16384 and fake.shows == [], "no /api/show needed"


async def test_unset_max_tokens_is_unlimited_and_keep_alive_is_omitted(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script("ok")
    await ask(client, model="gemma-3-auto")
    body = fake.requests[-1]
    assert body["options"]["num_predict"] == -1 and "keep_alive" not in body
    assert "temperature" not in body["options"], "unset sampling leaves the model's own defaults"


async def test_keep_alive_number_goes_as_a_json_number(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script("ok")
    reply = await ask(client, model="gemma-3-forever")
    assert reply.choices[0].message.content == "ok"
    assert fake.requests[-1]["keep_alive"] == -1, 'Ollama refuses "-1" as a string (a Go duration needs a unit)'


async def test_num_ctx_from_api_show_asked_once(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script("one", "two")
    await ask(client, model="gemma-3-auto")
    await ask(client, model="gemma-3-auto")
    assert [r["options"]["num_ctx"] for r in fake.requests] == [32768, 32768], "gemma3.context_length"
    assert fake.shows == [{"model": GEMMA_UPSTREAM}]


async def test_num_ctx_defaults_when_api_show_has_no_length(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script("ok")
    await ask(client, model="tiny")
    assert fake.requests[-1]["options"]["num_ctx"] == DEFAULT_NUM_CTX == 8192


async def test_long_prompt_is_not_truncated_because_num_ctx_is_sent(client: AsyncOpenAI, fake: FakeOllama) -> None:
    long_text = "word " * 6000  # longer than Ollama's default 4096 context
    fake.script("ok")
    reply = await ask(client, messages=[{"role": "user", "content": long_text}])
    seen = fake.generations[-1]
    assert seen["num_ctx"] == 16384 and not seen["truncated"]
    assert reply.usage.prompt_tokens == seen["prompt_tokens"] > 6000
    # The same prompt without num_ctx: Ollama silently keeps only part of it.
    async with aiohttp.ClientSession() as session:
        body = {**fake.requests[-1], "options": {}}
        async with session.post(fake.url + "/api/generate", json=body) as response:
            lines = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert fake.generations[-1]["truncated"] and lines[-1]["prompt_eval_count"] < 4096


async def test_finish_reason_length_and_usage(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script("Hello there friend", "Hello there friend")
    whole = await ask(client, max_tokens=2, tools=None)
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == ("Hello there", "length")
    assert fake.requests[-1]["options"]["num_predict"] == 2
    assert whole.usage.completion_tokens == 2 and whole.usage.prompt_tokens == fake.generations[-1]["prompt_tokens"]
    stream = await client.chat.completions.create(
        model="gemma-3", messages=ASK, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage.completion_tokens == 4, "three words and the EOS token"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


async def test_stop_strings_end_the_answer(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script("It is sunny. END and more")
    reply = await ask(client, stop=["END"])
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("It is sunny. ", "stop")


async def test_thinking_model_text_is_not_taken_out_of_the_answer(client: AsyncOpenAI, fake: FakeOllama) -> None:
    """Ollama turns think on for a thinking-capable model unless told otherwise, and then moves the
    text between think tags into a `thinking` field, even in raw mode: the gateway must get it all."""
    fake.script(Scripted(["<think>", "The user", " wants", "</think>", "Hi"]))
    reply = await ask(client, model="qwen3", tools=None)
    assert reply.choices[0].message.content == "<think>The user wants</think>Hi"


# ---- chat template from /api/show ----------------------------------------------------------------


async def test_template_discovered_from_api_show(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script(call("get_weather", '{"city": "Paris"}'))
    reply = await ask(client, model="gemma-3-backend")
    assert summary(reply.choices[0].message) == (None, [("get_weather", {"city": "Paris"})])
    body = fake.requests[-1]
    assert body["prompt"].startswith("<start_of_turn>user\n"), "rendered with the GGUF template, BOS left to Ollama"
    assert "<end_of_turn>" in body["options"]["stop"]
    assert body["options"]["num_ctx"] == 32768
    assert fake.shows == [{"model": GEMMA_UPSTREAM}], "one /api/show serves the template and num_ctx"


async def test_go_template_only_is_a_clear_502(client: AsyncOpenAI, fake: FakeOllama) -> None:
    with pytest.raises(APIError) as caught:
        await ask(client, model="llama-go-only", tools=None)
    assert caught.value.status_code == 502 and caught.value.code == "chat_template_unavailable"
    assert "only a Go template" in caught.value.message and "chat_template:" in caught.value.message
    assert fake.requests == []


# ---- faults --------------------------------------------------------------------------------------


async def test_backend_refused_is_502() -> None:
    async with running_gateway(make_config(*routes(f"http://127.0.0.1:{free_port()}"))) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            for model in ("gemma-3", "gemma-3-auto"):
                for stream in (False, True):
                    with pytest.raises(APIError) as caught:
                        await client.chat.completions.create(model=model, messages=HELLO, stream=stream)
                    assert caught.value.status_code == 502 and caught.value.code == "backend_unreachable"


async def test_backend_silence_is_504_within_the_read_timeout(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script(Scripted([], hang=True))
    started = time.monotonic()
    with pytest.raises(APIError) as caught:
        await ask(client, tools=None)
    assert caught.value.status_code == 504 and caught.value.code == "backend_timeout"
    assert time.monotonic() - started < 3
    await fake.wait_cancelled(1)


@pytest.mark.parametrize("model", ["missing", "missing-auto"])
async def test_unknown_upstream_model_keeps_ollamas_message(client: AsyncOpenAI, fake: FakeOllama, model: str) -> None:
    for stream in (False, True):
        with pytest.raises(APIError) as caught:
            await client.chat.completions.create(model=model, messages=HELLO, stream=stream)
        assert caught.value.status_code == 502
        assert "HTTP 404: model 'missing:latest' not found" in caught.value.message


async def test_http_error_keeps_its_message(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script(Scripted([], http_error=(400, "raw mode does not support template, system, or context")))
    with pytest.raises(BadRequestError) as caught:
        await ask(client, tools=None)
    assert "raw mode does not support template" in caught.value.message


async def test_prompt_over_the_context_is_context_length_exceeded(client: AsyncOpenAI, fake: FakeOllama) -> None:
    with pytest.raises(BadRequestError) as caught:
        await ask(client, model="deepseek", messages=[{"role": "user", "content": "word " * 200}])
    assert caught.value.code == "context_length_exceeded" and CONTEXT_ERROR in caught.value.message


async def test_in_band_error_mid_stream_is_an_error_event(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script(Scripted(STORY, error_after=2, error="an error was encountered while running the model: boom"))
    received = []
    with pytest.raises(APIError, match="boom"):
        stream = await ask(client, tools=None, stream=True)
        async for chunk in stream:
            received.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "Once upon", "what came before the error was streamed"
    assert not [c for c in received if c.choices and c.choices[0].finish_reason]
    # Without streaming the same fault is an HTTP error, never a truncated answer.
    fake.script(Scripted(STORY, error_after=2, error="an error was encountered while running the model: boom"))
    with pytest.raises(APIError) as caught:
        await ask(client, tools=None)
    assert caught.value.status_code == 502 and "boom" in caught.value.message


async def test_error_before_the_first_line_is_an_http_error(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script(Scripted(STORY, error_after=0, error="model runner has unexpectedly stopped"))
    with pytest.raises(APIError) as caught:
        await ask(client, tools=None, stream=True)
    assert caught.value.status_code == 502 and "HTTP 500: model runner has unexpectedly stopped" in caught.value.message


@pytest.mark.parametrize("fault", [{"cut_after": 2}, {"drop_done": True}])
async def test_broken_stream_is_an_error(client: AsyncOpenAI, fake: FakeOllama, fault: dict) -> None:
    fake.script(Scripted(STORY, **fault), Scripted(STORY, **fault))
    received = []
    with pytest.raises(APIError):
        stream = await ask(client, tools=None, stream=True)
        async for chunk in stream:
            received.append(chunk)
    assert not [c for c in received if c.choices and c.choices[0].finish_reason]
    with pytest.raises(APIError) as caught:
        await ask(client, tools=None)
    assert caught.value.status_code == 502 and caught.value.code == "backend_protocol_error"


async def test_client_disconnect_cancels_the_upstream_request(client: AsyncOpenAI, fake: FakeOllama) -> None:
    fake.script(Scripted(["tick"] * 200, delay=0.05))
    async with aiohttp.ClientSession() as session:
        url = str(client.base_url).rstrip("/") + "/chat/completions"
        async with session.post(url, json={"model": "gemma-3", "messages": HELLO, "stream": True}) as response:
            assert response.status == 200
            await response.content.readline()
    await fake.wait_cancelled(1, timeout=5)
    assert fake.cancelled == 1


async def test_health_and_template_info_directly(fake: FakeOllama) -> None:
    backend = OllamaBackend("ollama", HttpSettings(base_url=fake.url))
    down = OllamaBackend("down", HttpSettings(base_url=f"http://127.0.0.1:{free_port()}", connect_timeout=1))
    try:
        assert await backend.health() and not await down.health()
        info = await backend.template_info(GEMMA_UPSTREAM)
        assert info.chat_template == GEMMA3.read_text() and info.context_size == 32768
        assert (info.bos_token, info.eos_token) == (None, None)
        fake.script(Scripted(["a", "b"], done_reason="length"))
        events = [e async for e in backend.generate(GenerationRequest(prompt="x", upstream_model="tiny:latest"))]
        # One text event per socket read: the two lines may arrive in one read or in two.
        assert "".join(e.text for e in events[:-1]) == "ab" and all(e.text for e in events[:-1])
        assert events[-1].reason == "length" and events[-1].usage.completion_tokens == 2
    finally:
        await backend.close()
        await down.close()


# ---- the fake's own wire format ------------------------------------------------------------------

PARTIAL_KEYS = ["model", "created_at", "response", "done"]
FINAL_KEYS = ["model", "created_at", "response", "done", "done_reason", "total_duration", "load_duration",
              "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"]
CREATED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


async def generate(fake: FakeOllama, body: dict) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.url + "/api/generate", json=body) as response:
            return response.status, response.headers["Content-Type"], await response.read()


async def test_fake_streams_ndjson_like_ollama(fake: FakeOllama) -> None:
    fake.script(Scripted(["<start_of_turn>", "Hi", " <b>", "&", " you", "<end_of_turn>", "never"]))
    body = {"model": GEMMA_UPSTREAM, "prompt": "<start_of_turn>user\nhello", "raw": True}
    status, content_type, raw = await generate(fake, body)
    assert (status, content_type) == (200, "application/x-ndjson")
    assert b"\\u003cb\\u003e" in raw and b"\\u0026" in raw, "Go escapes HTML characters"
    lines = [orjson.loads(line) for line in raw.splitlines()]
    assert all(list(line) == PARTIAL_KEYS and not line["done"] for line in lines[:-1])
    assert [line["response"] for line in lines[:-1]] == ["Hi", " <b>", "&", " you"], "control tokens never print"
    final = lines[-1]
    assert list(final) == FINAL_KEYS and final["response"] == "" and final["done_reason"] == "stop"
    assert "context" not in final, "raw mode returns no context"
    assert final["eval_count"] == 6 and final["prompt_eval_count"] == 3
    assert all(CREATED_AT.fullmatch(line["created_at"]) for line in lines)


async def test_fake_applies_stop_and_num_predict(fake: FakeOllama) -> None:
    fake.script(Scripted(["a", "b", "ST", "OP", "c"]), Scripted(["a", "b", "c", "d"]))
    body = {"model": GEMMA_UPSTREAM, "prompt": "p", "raw": True, "stream": False, "options": {"stop": ["STOP"]}}
    status, content_type, raw = await generate(fake, body)
    answer = orjson.loads(raw)
    assert (status, content_type) == (200, "application/json; charset=utf-8")
    assert (answer["response"], answer["done_reason"]) == ("ab", "stop")
    body["options"] = {"num_predict": 3}
    answer = orjson.loads((await generate(fake, body))[2])
    assert (answer["response"], answer["done_reason"], answer["eval_count"]) == ("abc", "length", 3)


async def test_fake_errors_as_ollama_sends_them(fake: FakeOllama) -> None:
    base = {"model": GEMMA_UPSTREAM, "prompt": "p", "raw": True}
    cases = [
        ({**base, "model": "nope"}, 404, "model 'nope' not found"),
        ({**base, "keep_alive": "-1"}, 400, 'time: missing unit in duration "-1"'),
        ({**base, "system": "be nice"}, 400, "raw mode does not support template, system, or context"),
        ({**base, "raw": "yes"}, 400,
         "json: cannot unmarshal string into Go struct field GenerateRequest.raw of type bool"),
        ({**base, "options": {"num_ctx": "big"}}, 500, 'option "num_ctx" must be of type integer'),
        ({**base, "think": True}, 400, f'"{GEMMA_UPSTREAM}" does not support thinking'),
    ]
    for body, status, message in cases:
        got_status, _, raw = await generate(fake, body)
        assert (got_status, orjson.loads(raw)) == (status, {"error": message}), body
    fake.script(Scripted(["a", "b", "c"], error_after=1, error="boom"))
    status, _, raw = await generate(fake, base)
    assert status == 200 and [orjson.loads(x) for x in raw.splitlines()][-1] == {"error": "boom"}
    status, _, raw = await generate(fake, {**base, "prompt": ""})
    assert status == 200 and orjson.loads(raw)["done_reason"] == "load"


async def test_fake_splits_thinking_unless_think_is_false() -> None:
    model = FakeModel(name="qwen3:0.6b", architecture="qwen3", capabilities=("completion", "thinking"))
    async with FakeOllama(models=[model]) as fake:
        pieces = ["<think>", "hmm", "</think>", "Hi"]
        fake.script(Scripted(pieces), Scripted(pieces))
        body = {"model": "qwen3:0.6b", "prompt": "p", "raw": True, "stream": False}
        answer = orjson.loads((await generate(fake, body))[2])
        assert (answer["thinking"], answer["response"]) == ("hmm", "Hi")
        answer = orjson.loads((await generate(fake, {**body, "think": False}))[2])
        assert answer["response"] == "<think>hmm</think>Hi" and "thinking" not in answer


async def test_fake_show_tags_version(fake: FakeOllama) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.url + "/api/show", json={"model": "llama3.2:1b"}) as response:
            show = await response.json()
        assert show["template"].startswith("{{- range") and "tokenizer.chat_template" not in show["model_info"]
        assert show["model_info"]["llama.context_length"] == 131072
        assert list(show["model_info"]) == sorted(show["model_info"])
        assert show["capabilities"] == ["completion"] and show["details"]["family"] == "llama"
        async with session.post(fake.url + "/api/show", json={"model": "nope"}) as response:
            assert response.status == 404 and await response.json() == {"error": "model 'nope' not found"}
        async with session.get(fake.url + "/api/tags") as response:
            names = [m["name"] for m in (await response.json())["models"]]
        assert GEMMA_UPSTREAM in names
        async with session.get(fake.url + "/api/version") as response:
            assert (await response.json()) == {"version": fake.version}
        async with session.get(fake.url + "/api/nothing") as response:
            assert response.status == 404 and await response.text() == "404 page not found"
