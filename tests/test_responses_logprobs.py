"""Token log probabilities in the Responses API (`include: ["message.output_text.logprobs"]`,
`top_logprobs`), streamed and not, through the `openai` SDK against the fake llama.cpp server, whose
probabilities are derived from each token's text (tests/fakes/token_probs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError

from tests.conftest import fake_routes
from tests.fakes import token_probs
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import make_config, running_gateway
from tests.support.openapi import assert_valid

MODEL = "qwen2.5-7b-instruct"
ANSWER = "Hello there, my friend! 3 < 4 and déjà vu."
INCLUDE = ["message.output_text.logprobs"]


@pytest.fixture
async def client(fake_llama: FakeLlamaServer, tmp_path: Path) -> AsyncIterator[AsyncOpenAI]:
    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, models, responses={"sqlite_path": str(tmp_path / "r.sqlite3")})
    async with running_gateway(config) as url, AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as sdk:
        yield sdk


def check_tokens(tokens: list[Any], text: str, alternatives: int) -> None:
    assert "".join(token["token"] for token in tokens) == text
    for token in tokens:
        assert token["logprob"] == token_probs.token_logprob(token["token"])
        assert token["bytes"] == token_probs.utf8(token["token"])
        expected = token_probs.ranked(token["token"], alternatives) if alternatives else []
        assert [(top["token"], top["logprob"]) for top in token["top_logprobs"]] == expected


async def test_logprobs_of_the_output_text(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text(ANSWER)), Scripted(split_text(ANSWER)))
    response = await client.responses.create(model=MODEL, input="Hi", include=INCLUDE, top_logprobs=2)  # type: ignore[list-item]
    whole = response.model_dump(exclude_unset=True)  # what the gateway sent
    assert_valid("Response", whole)
    part = whole["output"][0]["content"][0]
    assert part["text"] == ANSWER and whole["top_logprobs"] == 2
    check_tokens(part["logprobs"], ANSWER, 2)
    assert fake_llama.requests[-1]["n_probs"] == 2

    stream = await client.responses.create(model=MODEL, input="Hi", include=INCLUDE, top_logprobs=2,  # type: ignore[list-item]
                                           stream=True)
    deltas: list[Any] = []
    done: list[Any] = []
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas += [token.model_dump() for token in event.logprobs]
        elif event.type == "response.output_text.done":
            done = [token.model_dump() for token in event.logprobs]
    assert [(t["token"], t["logprob"]) for t in deltas] == [(t["token"], t["logprob"]) for t in part["logprobs"]]
    assert [(t["token"], t["logprob"]) for t in done] == [(t["token"], t["logprob"]) for t in part["logprobs"]]


async def test_include_alone_gives_each_token_without_alternatives(
    client: AsyncOpenAI, fake_llama: FakeLlamaServer
) -> None:
    fake_llama.script(Scripted(split_text(ANSWER)))
    response = await client.responses.create(model=MODEL, input="Hi", include=INCLUDE)  # type: ignore[list-item]
    check_tokens(response.model_dump()["output"][0]["content"][0]["logprobs"], ANSWER, 0)


async def test_not_asked_not_given(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text(ANSWER)))
    response = await client.responses.create(model=MODEL, input="Hi", include=["reasoning.encrypted_content"])  # type: ignore[list-item]
    assert response.output[0].content[0].logprobs == []  # type: ignore[union-attr]
    assert "n_probs" not in fake_llama.requests[-1]


async def test_bad_values_are_400s(client: AsyncOpenAI) -> None:
    with pytest.raises(BadRequestError) as unknown:
        await client.responses.create(model=MODEL, input="Hi", include=["message.everything"])  # type: ignore[list-item]
    assert "include" in str(unknown.value.body)
    with pytest.raises(BadRequestError) as too_many:
        await client.responses.create(model=MODEL, input="Hi", include=INCLUDE, top_logprobs=21)  # type: ignore[list-item]
    assert "top_logprobs" in str(too_many.value.body)
