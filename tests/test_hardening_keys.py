"""Stored responses belong to the API key that created them (issue 13, item 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import make_config, running_gateway

MODEL = "qwen2.5-7b-instruct"


async def call(url: str, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session, session.request(method, url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_a_stored_response_is_only_its_keys(fake_llama: FakeLlamaServer, tmp_path: Path) -> None:
    backends, models = fake_routes(fake_llama.url)
    auth = {"api_keys": [{"key": "alice"}, {"key": "bob"}, {"key": "carol-gemma", "models": ["gemma-3"]}]}
    config = make_config(backends, models, auth=auth, responses={"sqlite_path": str(tmp_path / "r.sqlite3")})
    fake_llama.script("First answer.", "Second answer.")
    async with running_gateway(config) as url:
        status, made = await call(url, "POST", "/responses", "alice", {"model": MODEL, "input": "Hi"})
        assert status == 200
        rid = made["id"]
        for path in (f"/responses/{rid}", f"/responses/{rid}/input_items"):
            status, body = await call(url, "GET", path, "bob")
            assert status == 404 and body["error"]["code"] == "response_not_found", (path, body)
        status, body = await call(url, "DELETE", f"/responses/{rid}", "bob")
        assert status == 404 and body["error"]["code"] == "response_not_found"
        status, body = await call(url, "POST", "/responses", "bob", {"model": MODEL, "input": "Go on",
                                                                      "previous_response_id": rid})
        assert status in (400, 404) and body["error"]["code"] == "previous_response_not_found"
        # A key that may not use the stored response's model cannot continue it, even on its own model.
        status, body = await call(url, "POST", "/responses", "carol-gemma", {"model": "gemma-3", "input": "Go on",
                                                                               "previous_response_id": rid})
        assert status in (400, 404) and body["error"]["code"] == "previous_response_not_found"
        # The owner still has it all, and the other keys' attempts changed nothing.
        assert (await call(url, "GET", f"/responses/{rid}", "alice")) == (200, made)
        status, listing = await call(url, "GET", f"/responses/{rid}/input_items", "alice")
        assert status == 200 and len(listing["data"]) == 1
        status, second = await call(url, "POST", "/responses", "alice", {"model": MODEL, "input": "Go on",
                                                                          "previous_response_id": rid})
        assert status == 200 and second["output"][0]["content"][0]["text"] == "Second answer."
        assert "Hi" in fake_llama.requests[-1]["prompt"]
        assert (await call(url, "DELETE", f"/responses/{rid}", "alice"))[0] == 200
