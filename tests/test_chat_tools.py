"""Tool calling through the running gateway, with the real `openai` SDK, against a fake
llama-server that streams scripted model output in the real wire format."""

from __future__ import annotations

import json

import pytest
from openai import APIError, AsyncOpenAI, LengthFinishReasonError

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import make_config, running_gateway

HERMES_MODEL = "qwen2.5-7b-instruct"
DEFAULT_MODEL = "gemma-3"

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


def hermes_call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


async def ask(client: AsyncOpenAI, model: str = HERMES_MODEL, **kwargs):  # type: ignore[no-untyped-def]
    return await client.chat.completions.create(model=model, messages=kwargs.pop("messages", ASK), tools=kwargs.pop("tools", TOOLS), **kwargs)


async def ask_streamed(client: AsyncOpenAI, model: str = HERMES_MODEL, **kwargs) -> tuple[list, object]:  # type: ignore[no-untyped-def]
    """The raw chunks, and the SDK stream helper's own accumulation of them."""
    chunks = []
    async with client.chat.completions.stream(
        model=model, messages=kwargs.pop("messages", ASK), tools=kwargs.pop("tools", TOOLS), **kwargs
    ) as stream:
        async for event in stream:
            if event.type == "chunk":
                chunks.append(event.chunk)
        final = await stream.get_final_completion()
    return chunks, final


def summary(message) -> tuple:  # type: ignore[no-untyped-def]
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    return message.content, calls


CORPUS = {
    "single call": (hermes_call("get_weather", '{"city": "Paris"}'), (None, [("get_weather", {"city": "Paris"})]), "tool_calls"),
    "parallel calls": (
        hermes_call("get_weather", '{"city": "Paris"}') + "\n" + hermes_call("get_time", "{}"),
        (None, [("get_weather", {"city": "Paris"}), ("get_time", {})]),
        "tool_calls",
    ),
    "text around a call": (
        "Let me look.\n" + hermes_call("get_weather", '{"city": "Paris"}') + "\nOne moment.",
        ("Let me look.\n\nOne moment.", [("get_weather", {"city": "Paris"})]),
        "tool_calls",
    ),
    "no call": ("It is sunny in Paris.", ("It is sunny in Paris.", []), "stop"),
    "unicode and escapes": (
        hermes_call("get_weather", '{"city": "Zürich \\"Altstadt\\"\\n東京 \\u00e9"}'),
        (None, [("get_weather", {"city": 'Zürich "Altstadt"\n東京 é'})]),
        "tool_calls",
    ),
    "malformed call": (
        '<tool_call>\n["name": "get_weather", function: "date"]\n</tool_call>',
        ('<tool_call>\n["name": "get_weather", function: "date"]\n</tool_call>', []),
        "stop",
    ),
}


@pytest.mark.parametrize("case", list(CORPUS))
async def test_corpus_stream_and_non_stream_agree(client: AsyncOpenAI, fake_llama: FakeLlamaServer, case: str) -> None:
    output, expected, finish_reason = CORPUS[case]
    fake_llama.script(Scripted(split_text(output)), Scripted(split_text(output)))
    whole = await ask(client)
    chunks, streamed = await ask_streamed(client)
    assert summary(whole.choices[0].message) == expected
    assert whole.choices[0].finish_reason == finish_reason
    assert summary(streamed.choices[0].message) == expected
    assert streamed.choices[0].finish_reason == finish_reason
    for message in (whole.choices[0].message, streamed.choices[0].message):
        for call in message.tool_calls or []:
            assert call.type == "function" and call.id.startswith("call_")
    ids = [c.id for c in whole.choices[0].message.tool_calls or []]
    assert len(set(ids)) == len(ids)


async def test_stream_deltas_follow_openai_rules(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    output = hermes_call("get_weather", '{"city": "' + "long " * 60 + '"}') + "\n" + hermes_call("get_time", "{}")
    # A model writes a token at a time: paced, each piece arrives in its own read and its own delta.
    fake_llama.script(Scripted(split_text(output, every=4), delay=0.002))
    stream = await ask(client, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    seen: dict[int, list] = {}
    for chunk in chunks[:-1]:
        delta = chunk.choices[0].delta
        assert not (delta.content and delta.tool_calls), "content and calls never share a chunk"
        for call in delta.tool_calls or []:
            if call.index not in seen:
                assert call.id and call.type == "function" and call.function.name, "first delta carries id, type, name"
                seen[call.index] = [call.function.arguments or ""]
            else:
                assert call.id is None and call.function.name is None, "id and name are sent once"
                seen[call.index].append(call.function.arguments)
    assert sorted(seen) == [0, 1]
    assert len(seen[0]) > 10, "a long argument streams in many fragments"
    assert json.loads("".join(seen[0])) == {"city": "long " * 60}
    assert "".join(seen[1]) == "{}"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("model", [HERMES_MODEL, DEFAULT_MODEL])
async def test_markers_split_at_every_position(client: AsyncOpenAI, fake_llama: FakeLlamaServer, model: str) -> None:
    if model == HERMES_MODEL:
        output = 'Sure.\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    else:
        output = 'Sure.\n[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST]'
    for cut in range(1, len(output)):
        fake_llama.script(Scripted([output[:cut], output[cut:]]), Scripted([output[:cut], output[cut:]]))
        whole = await ask(client, model=model)
        _, streamed = await ask_streamed(client, model=model)
        for message in (whole.choices[0].message, streamed.choices[0].message):
            assert summary(message) == ("Sure.", [("get_time", {})]), f"split at {cut}"


async def test_malformed_after_name_is_repaired(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    """By default a call broken after its name ends with valid JSON: a finished turn, stream and not."""
    output = "Checking.\n" + hermes_call("get_weather", '{"city": "Paris",}') + "\nDone."
    fake_llama.script(Scripted(split_text(output)), Scripted(split_text(output)))
    whole = await ask(client)
    _, streamed = await ask_streamed(client)
    for response in (whole, streamed):
        message = response.choices[0].message
        [call] = message.tool_calls or []
        assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] == "Paris"
        assert message.content == "Checking.\n\nDone."  # the broken block is not content
        assert response.choices[0].finish_reason == "tool_calls"
    assert streamed.choices[0].message.tool_calls[0].function.arguments == whole.choices[0].message.tool_calls[0].function.arguments


async def test_malformed_after_name_without_repair_ends_with_error(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    models = [{**model, "repair": False} for model in models]
    async with running_gateway(make_config(backends, models)) as url, AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        output = hermes_call("get_weather", '{"city": "Paris",}')
        fake_llama.script(Scripted(split_text(output)), Scripted(split_text(output)))
        whole = await ask(client)
        assert whole.choices[0].message.tool_calls is None
        assert whole.choices[0].message.content == output
        with pytest.raises(APIError, match="broke off"):
            await ask_streamed(client)


async def test_max_tokens_cut_inside_a_call_keeps_the_call_as_written(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    """As OpenAI returns a call the token limit cut: the call with the arguments written so far,
    `finish_reason: "length"`, a normal end of stream; the SDK's parse helpers raise their own error."""
    output = hermes_call("get_weather", '{"city": "Paris"}')
    pieces = split_text(output)
    fake_llama.script(*[Scripted(pieces)] * 3, Scripted(["Hello", " there", " friend"]))
    cut = pieces.index("Paris")  # the limit falls inside the arguments, after the name
    whole = await ask(client, max_tokens=cut)
    choice = whole.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content is None
    assert [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []] == [("get_weather", '{"city": "')]
    stream = await client.chat.completions.create(model=HERMES_MODEL, messages=ASK, tools=TOOLS, max_tokens=cut, stream=True)
    names, arguments, finishes = [], "", []
    async for chunk in stream:  # ends at `[DONE]`, with no error
        for call in chunk.choices[0].delta.tool_calls or []:
            names += [call.function.name] if call.function and call.function.name else []
            arguments += call.function.arguments or "" if call.function else ""
        finishes += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert (names, arguments, finishes) == (["get_weather"], '{"city": "', ["length"])
    with pytest.raises(LengthFinishReasonError):
        await ask_streamed(client, max_tokens=cut)
    text = await ask(client, max_completion_tokens=2)
    assert (text.choices[0].message.content, text.choices[0].finish_reason) == ("Hello there", "length")
    assert fake_llama.requests[-1]["n_predict"] == 2


async def test_max_tokens_cut_before_the_name_is_text(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    output = hermes_call("get_weather", '{"city": "Paris"}')
    pieces = split_text(output)
    cut = pieces.index("get") + 1  # the name is not complete
    fake_llama.script(Scripted(pieces), Scripted(pieces))
    whole = await ask(client, max_tokens=cut)
    assert (whole.choices[0].finish_reason, whole.choices[0].message.tool_calls) == ("length", None)
    assert whole.choices[0].message.content == "".join(pieces[:cut])
    stream = await client.chat.completions.create(model=HERMES_MODEL, messages=ASK, tools=TOOLS, max_tokens=cut, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert not any(c.choices[0].delta.tool_calls for c in chunks)


async def test_default_format_end_to_end(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    output = '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}[END_TOOL_REQUEST]'
    fake_llama.script(Scripted(split_text(output)))
    whole = await ask(client, model=DEFAULT_MODEL)
    assert summary(whole.choices[0].message) == (None, [("get_weather", {"city": "Paris"})])
    prompt = fake_llama.requests[-1]["prompt"]
    assert "[TOOL_REQUEST]" in prompt and '"get_weather"' in prompt, "the system block teaches the tools"
    assert not prompt.startswith("<bos>"), "llama-server adds BOS itself; the template's copy is dropped"
    assert prompt.startswith("<start_of_turn>user\n"), "Gemma has no system role: the block joins the user turn"


async def test_request_sent_upstream(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(["ok"]))
    await ask(client, temperature=0.3, top_p=0.9, seed=7, stop=["END"], max_tokens=50, extra_body={"top_k": 20})
    body = fake_llama.requests[-1]
    assert body["stream"] is True and body["n_predict"] == 50
    assert (body["temperature"], body["top_p"], body["seed"], body["top_k"]) == (0.3, 0.9, 7, 20)
    assert "<|im_end|>" in body["stop"] and "END" in body["stop"], "the template's end of turn and the client's stops"
    assert "<tool_call>" in body["preserved_tokens"] and "</tool_call>" in body["preserved_tokens"]
    prompt = body["prompt"]
    assert prompt.endswith("<|im_start|>assistant\n")
    assert '"name": "get_weather"' in prompt and "<tools>" in prompt, "tools rendered by Qwen2.5's own template"


async def test_special_token_markers_reach_the_parser(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    """The fake drops special tokens unless preserved, like llama-server: the call survives only
    because the gateway asks for its markers to be kept."""
    fake_llama.script(Scripted(split_text(hermes_call("get_time", "{}"), special=["<tool_call>", "</tool_call>"])))
    whole = await ask(client)
    assert summary(whole.choices[0].message) == (None, [("get_time", {})])


async def test_history_round_trip_renders_calls_and_results(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny, 21C"},
    ]
    fake_llama.script(Scripted(["It is sunny."]), Scripted(["It is sunny."]))
    answer = await ask(client, messages=history)
    assert answer.choices[0].message.content == "It is sunny."
    qwen_prompt = fake_llama.requests[-1]["prompt"]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in qwen_prompt
    assert "<tool_response>\nsunny, 21C\n</tool_response>" in qwen_prompt
    await ask(client, model=DEFAULT_MODEL, messages=history)
    gemma_prompt = fake_llama.requests[-1]["prompt"]
    assert '[TOOL_REQUEST]{"name":"get_weather","arguments":{"city":"Paris"}}[END_TOOL_REQUEST]' in gemma_prompt
    assert '[TOOL_RESULT]{"name":"get_weather","content":"sunny, 21C"}[END_TOOL_RESULT]' in gemma_prompt
