"""`logprobs` / `top_logprobs` honored on llama.cpp, vLLM and Ollama, in OpenAI's shape, streamed and
not, through the real `openai` SDK: the content's tokens only, each with the log probability the
backend gave for it (the fakes derive it from the token's text), in the order they make the content."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError

from adapters.backends.base import TokenLogprob
from adapters.formats.events import ReasoningDelta, TextDelta, ToolCallArgs
from gateway.core.logprob_alignment import LogprobAligner
from tests.conftest import GEMMA3, QWEN25
from tests.fakes import token_probs
from tests.fakes.llamacpp import FakeLlamaServer, split_text
from tests.fakes.llamacpp import Scripted as LlamaScript
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.ollama import Scripted as OllamaScript
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import make_config, running_gateway

ASK = [{"role": "user", "content": "Say hello."}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ANSWER = "Hello there, my friend! [not a call] 3 < 4 and déjà vu."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@dataclass
class Backends:
    url: str
    script: dict[str, Callable[[list[str]], None]]
    requests: dict[str, Callable[[], dict[str, Any]]]


@pytest.fixture
async def backends(fake_llama: FakeLlamaServer) -> AsyncIterator[Backends]:
    async with AsyncExitStack() as stack:
        vllm = await stack.enter_async_context(
            FakeVllmServer(model="Qwen/Qwen2.5-7B-Instruct", eos_token="<|im_end|>", max_model_len=32768))
        ollama = await stack.enter_async_context(FakeOllama(models=[FakeModel(name="qwen", context_length=32768)]))
        config = make_config(
            [{"name": "llama", "type": "llamacpp", "url": fake_llama.url},
             {"name": "vllm", "type": "vllm", "url": vllm.url},
             {"name": "ollama", "type": "ollama", "url": ollama.url}],
            [{"name": "on-llama", "backend": "llama", "tool_format": "hermes", "chat_template": str(QWEN25)},
             {"name": "on-vllm", "backend": "vllm", "upstream_model": "Qwen/Qwen2.5-7B-Instruct",
              "tool_format": "hermes", "chat_template": str(QWEN25)},
             {"name": "on-ollama", "backend": "ollama", "upstream_model": "qwen", "tool_format": "hermes",
              "chat_template": str(QWEN25)},
             {"name": "gemma-on-llama", "backend": "llama", "tool_format": "default", "chat_template": str(GEMMA3),
              "bos_token": "<bos>", "eos_token": "<eos>"}],
        )
        url = await stack.enter_async_context(running_gateway(config))
        yield Backends(
            url,
            {"on-llama": lambda chunks: fake_llama.script(LlamaScript(chunks)),
             "gemma-on-llama": lambda chunks: fake_llama.script(LlamaScript(chunks)),
             "on-vllm": lambda chunks: vllm.script(VllmScript(chunks)),
             "on-ollama": lambda chunks: ollama.script(OllamaScript(chunks))},
            {"on-llama": lambda: fake_llama.requests[-1], "on-vllm": lambda: vllm.requests[-1],
             "on-ollama": lambda: ollama.requests[-1]},
        )


def expected(tokens: list[str], top: int) -> list[dict[str, Any]]:
    """What the fakes' probabilities must become in OpenAI's shape."""
    return [{"token": t, "logprob": token_probs.token_logprob(t), "bytes": token_probs.utf8(t),
             "top_logprobs": [{"token": a, "logprob": v, "bytes": token_probs.utf8(a)}
                              for a, v in token_probs.ranked(t, top)][:top]} for t in tokens]


async def ask(url: str, model: str, *, stream: bool, **extra: Any) -> tuple[str, list[dict[str, Any]] | None, Any]:
    """The answer's content, its logprobs' content (None when the reply has none), and the reply."""
    async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=30) as client:
        if not stream:
            reply = await client.chat.completions.create(model=model, messages=ASK, **extra)
            choice = reply.choices[0]
            logprobs = choice.logprobs.model_dump()["content"] if choice.logprobs is not None else None
            return choice.message.content or "", logprobs, reply
        chunks = [chunk async for chunk in await client.chat.completions.create(
            model=model, messages=ASK, stream=True, **extra)]
        content, tokens, seen = "", [], False
        for chunk in chunks:
            for choice in chunk.choices:
                content += choice.delta.content or ""
                if choice.logprobs is not None:
                    seen = True
                    tokens += choice.logprobs.model_dump()["content"]
                    assert choice.delta.content, "logprobs ride only on chunks with content"
        return content, tokens if seen else None, chunks


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["on-llama", "on-vllm", "on-ollama"])
async def test_content_tokens_with_their_logprobs(backends: Backends, model: str, stream: bool) -> None:
    tokens = split_text(ANSWER)
    backends.script[model](tokens)
    content, logprobs, _ = await ask(backends.url, model, stream=stream, logprobs=True, top_logprobs=3)
    assert content == ANSWER
    assert logprobs == expected(tokens, 3)
    assert all(entry["logprob"] <= 0 for entry in logprobs)


@pytest.mark.parametrize("model", ["on-llama", "on-vllm", "on-ollama"])
async def test_what_each_backend_is_asked(backends: Backends, model: str) -> None:
    backends.script[model](["ok"])
    await ask(backends.url, model, stream=False, logprobs=True, top_logprobs=2)
    sent = backends.requests[model]()
    asked = {"on-llama": sent.get("n_probs"), "on-vllm": sent.get("logprobs"),
             "on-ollama": (sent.get("logprobs"), sent.get("top_logprobs"))}[model]
    assert asked == {"on-llama": 2, "on-vllm": 2, "on-ollama": (True, 2)}[model]
    # logprobs without top_logprobs: each token's own, no alternatives (llama.cpp needs n_probs >= 1)
    backends.script[model](split_text("Hi you"))
    content, logprobs, _ = await ask(backends.url, model, stream=True, logprobs=True)
    assert content == "Hi you" and logprobs == expected(["Hi", " you"], 0)
    sent = backends.requests[model]()
    asked = {"on-llama": sent.get("n_probs"), "on-vllm": sent.get("logprobs"),
             "on-ollama": (sent.get("logprobs"), sent.get("top_logprobs"))}[model]
    assert asked == {"on-llama": 1, "on-vllm": 0, "on-ollama": (True, 0)}[model]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["on-llama", "on-vllm", "on-ollama"])
async def test_tokens_of_a_tool_call_are_not_content(backends: Backends, model: str, stream: bool) -> None:
    before = split_text("Let me check. ")
    backends.script[model](before + split_text(CALL, special=["<tool_call>", "</tool_call>"]))
    content, logprobs, reply = await ask(backends.url, model, stream=stream, logprobs=True, top_logprobs=1,
                                         tools=TOOLS)
    assert content == "Let me check."  # the space before a call is not content either
    assert logprobs == expected(before[:-1], 1)
    if not stream:
        assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"


async def test_held_back_text_keeps_its_tokens(backends: Backends) -> None:
    # The default format holds "[" back (it may open [TOOL_REQUEST]); its token still goes with the text.
    tokens = ["Look", " [", "TOOL", " not", "]", " done"]
    backends.script["gemma-on-llama"](tokens)
    content, logprobs, _ = await ask(backends.url, "gemma-on-llama", stream=True, logprobs=True, tools=TOOLS)
    assert content == "".join(tokens)
    assert logprobs == expected(tokens, 0)


async def test_stop_string_tokens_are_dropped(backends: Backends) -> None:
    backends.script["on-llama"](split_text("one two three four"))
    content, logprobs, _ = await ask(backends.url, "on-llama", stream=True, logprobs=True, stop=[" three"])
    assert content == "one two"
    assert logprobs == expected(["one", " two"], 0)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_not_asked_means_null(backends: Backends, stream: bool) -> None:
    backends.script["on-llama"](split_text("plain answer"))
    content, logprobs, _ = await ask(backends.url, "on-llama", stream=stream)
    assert content == "plain answer" and logprobs is None
    assert "n_probs" not in backends.requests["on-llama"]()


async def test_top_logprobs_without_logprobs_is_400(backends: Backends) -> None:
    async with AsyncOpenAI(base_url=backends.url, api_key="x", max_retries=0) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.chat.completions.create(model="on-llama", messages=ASK, top_logprobs=2)
        assert caught.value.body["param"] == "top_logprobs"  # type: ignore[index]
        with pytest.raises(BadRequestError) as caught:
            await client.chat.completions.create(model="on-llama", messages=ASK, logprobs=True, top_logprobs=21)
        assert caught.value.body["param"] == "top_logprobs"  # type: ignore[index]


def _tokens(*texts: str) -> list[TokenLogprob]:
    return [TokenLogprob(text, -0.1 * index) for index, text in enumerate(texts)]


def test_aligner_places_each_token_once_and_skips_what_is_not_content() -> None:
    aligner = LogprobAligner()
    # A token split over two deltas goes with the first; reasoning and argument text are skipped.
    first, second = TextDelta("Hel"), TextDelta("lo")
    aligner.place(_tokens("Hello"), [first, second])
    assert [t.token for t in first.logprobs or ()] == ["Hello"] and second.logprobs == ()
    thinking, args, after = ReasoningDelta(" hmm"), ToolCallArgs(0, '{"a": " ok"}'), TextDelta(" ok")
    aligner.place(_tokens("<think>", " hmm", "</think>", "<call>", '{"a":', ' " ok"}', "</call>", " ok"),
                  [thinking, args, after])
    assert [t.token for t in after.logprobs or ()] == [" ok"]
    rewritten = TextDelta("never written")
    aligner.place(_tokens("x"), [rewritten])
    assert rewritten.logprobs == ()
