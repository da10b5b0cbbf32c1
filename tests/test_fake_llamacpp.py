"""The fake llama-server speaks llama-server's wire format: checked over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes.llamacpp import FakeLlamaServer, Scripted, error_body, split_text

PARTIAL_KEYS = ["index", "content", "tokens", "stop", "id_slot", "tokens_predicted", "tokens_evaluated"]
FINAL_KEYS = [
    "index",
    "content",
    "tokens",
    "id_slot",
    "stop",
    "model",
    "tokens_predicted",
    "tokens_evaluated",
    "generation_settings",
    "prompt",
    "has_new_line",
    "truncated",
    "stop_type",
    "stopping_word",
    "tokens_cached",
    "timings",
]
TIMINGS_KEYS = [
    "cache_n",
    "prompt_n",
    "prompt_ms",
    "prompt_per_token_ms",
    "prompt_per_second",
    "predicted_n",
    "predicted_ms",
    "predicted_per_token_ms",
    "predicted_per_second",
]


def with_fake(**options: Any) -> Callable[[Callable[..., Awaitable[None]]], Callable[[], None]]:
    """Run an async test body against a started fake, inside a client session."""

    def wrap(body: Callable[..., Awaitable[None]]) -> Callable[[], None]:
        def test() -> None:
            async def main() -> None:
                async with FakeLlamaServer(**options) as fake, aiohttp.ClientSession() as session:
                    await body(fake, session)

            asyncio.run(main())

        test.__name__ = body.__name__
        return test

    return wrap


async def post_stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[Any, bytes]:
    async with session.post(url + "/completion", json={"stream": True, **body}) as response:
        return response, await response.read()


def events(raw: bytes) -> list[bytes]:
    """Split an SSE body into its events; each must be a complete ``data: ...`` or ``:`` block."""
    assert raw.endswith(b"\n\n")
    return raw[:-2].split(b"\n\n")


def data_events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for event in events(raw):
        if event.startswith(b":"):
            continue
        assert event.startswith(b"data: ") and b"\n" not in event
        out.append(orjson.loads(event[len(b"data: ") :]))
    return out


@with_fake()
async def test_stream_lines_partials_final_and_no_done(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["Hel", "lo", " world"], prompt_tokens=7))
    response, raw = await post_stream(session, fake.url, {"prompt": "Hi"})

    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert b"[DONE]" not in raw
    chunks = data_events(raw)
    partials, final = chunks[:-1], chunks[-1]
    # three scripted tokens, then the EOS token as one more (empty) partial
    assert [p["content"] for p in partials] == ["Hel", "lo", " world", ""]
    for n, partial in enumerate(partials, start=1):
        assert list(partial) == PARTIAL_KEYS
        assert partial["stop"] is False and partial["id_slot"] == -1 and len(partial["tokens"]) == 1
        assert partial["tokens_predicted"] == n and partial["tokens_evaluated"] == 7
    assert list(final) == FINAL_KEYS
    assert final["stop"] is True and final["stop_type"] == "eos" and final["stopping_word"] == ""
    assert final["content"] == "" and final["tokens"] == []  # already streamed
    assert final["tokens_predicted"] == 4 and final["tokens_evaluated"] == 7
    assert final["tokens_cached"] == 7 + 4 - 1
    assert final["truncated"] is False and final["model"] == "fake-model"
    assert list(final["timings"]) == TIMINGS_KEYS
    assert final["prompt"] == "<bos>Hi"
    assert fake.requests == [{"stream": True, "prompt": "Hi"}]


@with_fake()
async def test_stop_word_is_cut_and_prefixes_are_held_back(
    fake: FakeLlamaServer, session: aiohttp.ClientSession
) -> None:
    fake.script(Scripted(["The", " answer", " </", "ans", "wer> and", " more"]))
    _, raw = await post_stream(session, fake.url, {"prompt": "Q", "stop": ["</answer>"]})

    chunks = data_events(raw)
    partials, final = chunks[:-1], chunks[-1]
    # " </" could start the stop string: the whole unsent text is held (empty content); the token that
    # completes it sends what came before the stop string
    assert [p["content"] for p in partials] == ["The", " answer", "", "", " "]
    assert "timings" in partials[-1] and "timings" not in partials[0]
    assert final["stop_type"] == "word" and final["stopping_word"] == "</answer>"
    assert final["tokens_predicted"] == 5
    assert "".join(p["content"] for p in partials) == "The answer "


@with_fake()
async def test_held_prefix_is_released_when_it_is_not_a_stop(
    fake: FakeLlamaServer, session: aiohttp.ClientSession
) -> None:
    fake.script(Scripted(["a <", "b>"]))
    _, raw = await post_stream(session, fake.url, {"prompt": "Q", "stop": ["<|end|>"]})

    contents = [c["content"] for c in data_events(raw)]
    assert contents == ["", "a <b>", "", ""]  # the whole token waits, not just its "<"


@with_fake()
async def test_limit_drops_a_held_prefix_from_the_stream_only(
    fake: FakeLlamaServer, session: aiohttp.ClientSession
) -> None:
    # as llama-server does: the held " hello" never reaches the stream, but is in the non-stream content
    fake.script(Scripted(["Say", " hello", " there"]), Scripted(["Say", " hello", " there"]))
    body = {"prompt": "x", "n_predict": 2, "stop": ["hello world"]}
    _, raw = await post_stream(session, fake.url, body)
    assert [c["content"] for c in data_events(raw)] == ["Say", "", ""]
    async with session.post(fake.url + "/completion", json=body) as response:
        assert (await response.json())["content"] == "Say hello"


@with_fake()
async def test_odd_limits_as_the_real_server(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script("Say hello", "Say hello")
    async with session.post(fake.url + "/completion", json={"prompt": "x", "n_predict": 0}) as response:
        body = await response.json()
    assert (body["content"], body["tokens_predicted"], body["stop_type"]) == ("Say", 1, "limit")
    async with session.post(fake.url + "/completion", json={"prompt": "x", "stop": [""]}) as response:
        body = await response.json()
    assert (body["content"], body["stop_type"], body["stopping_word"]) == ("", "word", "")


@with_fake(bos_token="", eos_token="<|endoftext|>", eog_tokens={"<|im_end|>"}, special_tokens={"<tool_call>"})
async def test_no_bos_and_other_end_tokens(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["Hi", "<|im_end|>", "never"]))
    async with session.post(fake.url + "/completion", json={"prompt": "<|im_start|>user"}) as response:
        body = await response.json()
    assert body["prompt"] == "<|im_start|>user"
    assert (body["content"], body["stop_type"], body["tokens_predicted"]) == ("Hi", "eos", 2)


@with_fake()
async def test_non_stream_is_one_object_with_the_cut_content(
    fake: FakeLlamaServer, session: aiohttp.ClientSession
) -> None:
    fake.script(Scripted(["one", " two", "STOP", " three"]))
    async with session.post(fake.url + "/completion", json={"prompt": "x", "stop": ["STOP"]}) as response:
        body = await response.json()
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert list(body) == FINAL_KEYS
    assert body["content"] == "one two"
    assert body["stop_type"] == "word" and body["stopping_word"] == "STOP"
    assert body["tokens_predicted"] == 3


@with_fake()
async def test_n_predict_limit(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["a", "b", "c", "d", "e"]), Scripted(["a", "b", "c", "d", "e"]))
    async with session.post(fake.url + "/completion", json={"prompt": "x", "n_predict": 3}) as response:
        body = await response.json()
    assert body["content"] == "abc" and body["stop_type"] == "limit" and body["tokens_predicted"] == 3
    assert body["generation_settings"]["n_predict"] == 3

    _, raw = await post_stream(session, fake.url, {"prompt": "x", "max_tokens": 2})
    chunks = data_events(raw)
    assert [c["content"] for c in chunks[:-1]] == ["a", "b"]
    assert chunks[-1]["stop_type"] == "limit"


@with_fake(n_ctx=10)
async def test_context_limits(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["a"] * 20, prompt_tokens=6), Scripted(["a"], prompt_tokens=12))
    async with session.post(fake.url + "/completion", json={"prompt": "x"}) as response:
        body = await response.json()
    assert body["stop_type"] == "limit" and body["truncated"] is True and body["tokens_predicted"] == 4

    _, raw = await post_stream(session, fake.url, {"prompt": "x"})
    error = orjson.loads(raw)["error"]
    assert error == {
        "code": 400,
        "message": "request (12 tokens) exceeds the available context size (10 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 12,
        "n_ctx": 10,
    }


@with_fake()
async def test_http_error(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted([], http_error=error_body("Loading model", "unavailable_error")))
    async with session.post(fake.url + "/completion", json={"prompt": "x", "stream": True}) as response:
        assert response.status == 503
        assert await response.json() == {
            "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
        }


@with_fake()
async def test_in_band_error_ends_the_stream(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["a", "b", "c"], error_after=2), Scripted(["a", "b", "c"], error_after=2))
    response, raw = await post_stream(session, fake.url, {"prompt": "x"})
    chunks = data_events(raw)
    assert response.status == 200
    assert [c.get("content") for c in chunks[:2]] == ["a", "b"]
    assert chunks[2] == {"error": {"code": 500, "message": "Compute error.", "type": "server_error"}}
    assert len(chunks) == 3

    async with session.post(fake.url + "/completion", json={"prompt": "x"}) as response:
        assert response.status == 500
        assert (await response.json())["error"]["type"] == "server_error"


@with_fake(special_tokens={"<tool_call>", "</tool_call>"})
async def test_special_tokens_print_only_when_preserved(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    text = '<tool_call>{"name": "f"}</tool_call>'
    fake.script(text, text)
    async with session.post(fake.url + "/completion", json={"prompt": "x"}) as response:
        assert (await response.json())["content"] == '{"name": "f"}'
    body = {"prompt": "x", "preserved_tokens": ["<tool_call>", "</tool_call>"]}
    async with session.post(fake.url + "/completion", json=body) as response:
        assert (await response.json())["content"] == text


@with_fake(special_tokens={"<tool_call>"})
async def test_request_checks(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    async def error_of(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with session.post(fake.url + "/completion", json=body) as response:
            return response.status, (await response.json())["error"]

    trigger = {"type": 1, "value": "<tool_call>"}
    status, error = await error_of({"prompt": "x", "grammar": "root ::= x", "grammar_triggers": [trigger]})
    assert status == 400 and error == {
        "code": 400,
        "message": "Field 'grammar_triggers': Grammar trigger word should be marked as preserved token: <tool_call>",
        "type": "invalid_request_error",
    }
    status, error = await error_of({"prompt": "x", "grammar_lazy": True, "grammar_triggers": []})
    assert error["message"] == "Field 'grammar_triggers': Error: no triggers set for lazy grammar!"
    status, error = await error_of({"temperature": 0.5})
    assert status == 400 and error["message"] == "[json.exception.out_of_range.403] key 'prompt' not found"
    status, error = await error_of({"prompt": "x", "n_predict": -2})
    assert error["message"] == "Field 'n_predict': Value must be between -1 <= value <= 2147483647, but got -2"
    async with session.post(fake.url + "/completion", data=b"{bad") as response:
        assert response.status == 400
        assert (await response.json())["error"]["message"].startswith("[json.exception.parse_error.101]")
    status, error = await error_of({"prompt": "x", "temperature": "hot"})
    assert error["message"] == "Field 'temperature': [json.exception.type_error.302] type must be number, but is string"
    assert fake.pending == 0 and fake.completed == 0  # refused requests use no scripted reply

    fake.script("ok")
    ok = {"prompt": "x", "grammar": "root ::= x", "grammar_lazy": True, "preserved_tokens": ["<tool_call>"]}
    async with session.post(fake.url + "/completion", json={**ok, "grammar_triggers": [trigger]}) as response:
        settings = (await response.json())["generation_settings"]
    token = settings["preserved_tokens"][0]
    assert settings["grammar_triggers"] == [{"type": 0, "value": "<tool_call>", "token": token}]


@with_fake()
async def test_cut_after_leaves_the_body_unfinished(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["a", "b", "c"], cut_after=2))
    async with session.post(fake.url + "/completion", json={"prompt": "x", "stream": True}) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert fake.cancelled == 0


@with_fake()
async def test_client_disconnect_is_counted(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["a", "b", "c", "d"], delay=0.2))
    async with session.post(fake.url + "/completion", json={"prompt": "x", "stream": True}) as response:
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"data: ")
        response.close()  # the client gives up mid-stream
    await fake.wait_cancelled(1, timeout=2)
    assert fake.completed == 0


@with_fake()
async def test_hang_until_the_client_times_out(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted([], hang=True))
    with pytest.raises(asyncio.TimeoutError):
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with session.post(fake.url + "/completion", json={"prompt": "x"}, timeout=timeout) as response:
            await response.read()
    await fake.wait_cancelled(1, timeout=2)


@with_fake(ping_every=0.05)
async def test_silent_stream_gets_ping_comments(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    fake.script(Scripted(["a"], delay=0.2), Scripted(["a"], delay=0.2))
    _, raw = await post_stream(session, fake.url, {"prompt": "x"})
    assert events(raw)[:2] == [b":", b":"]  # comment lines while the "model" is silent
    assert [c["content"] for c in data_events(raw)[:-1]] == ["a", ""]
    _, raw = await post_stream(session, fake.url, {"prompt": "x", "sse_ping_interval": -1})
    assert b":" not in events(raw)


@with_fake(chat_template="{{ messages }}", n_ctx=2048)
async def test_health_props_loading_tokenize(fake: FakeLlamaServer, session: aiohttp.ClientSession) -> None:
    async with session.get(fake.url + "/health") as response:
        assert response.status == 200 and await response.json() == {"status": "ok"}
        assert response.headers["Server"] == "llama.cpp" and response.headers["Access-Control-Allow-Origin"] == ""
    async with session.get(fake.url + "/props") as response:
        props = await response.json()
    assert props["chat_template"] == "{{ messages }}"
    assert props["bos_token"] == "<bos>" and props["eos_token"] == "<eos>"
    assert props["default_generation_settings"]["n_ctx"] == 2048 and props["total_slots"] == 1
    async with session.get(fake.url + "/v1/models") as response:
        assert (await response.json())["data"][0]["id"] == "fake-model"
    async with session.post(fake.url + "/tokenize", json={"content": "Hello world", "with_pieces": True}) as response:
        pieces = [t["piece"] for t in (await response.json())["tokens"]]
    assert pieces == ["Hello", " world"] == split_text("Hello world")

    fake.loading = True
    async with session.get(fake.url + "/health") as response:
        assert response.status == 503
        loading = {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}
        assert await response.json() == loading
