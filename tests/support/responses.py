"""Helpers for Responses API tests: raw HTTP and SSE against the gateway, every event checked
against OpenAI's spec schema for its type, and the event order checked item by item."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import aiohttp

from .openapi import assert_valid, spec

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@cache
def event_schemas() -> dict[str, str]:
    """Event type -> the spec's schema for it, read from the `ResponseStreamEvent` union."""
    schemas = spec()["components"]["schemas"]
    names = [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ResponseStreamEvent"]["anyOf"]]
    return {schemas[name]["properties"]["type"]["enum"][0]: name for name in names}


async def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST /v1/responses without streaming: (status, JSON body)."""
    async with aiohttp.ClientSession() as session, session.post(f"{url}/responses", json=body) as reply:
        return reply.status, await reply.json()


async def get(url: str, path: str, method: str = "GET") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, f"{url}{path}") as reply:
        return reply.status, await reply.json()


async def stream(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST /v1/responses with stream: every event, each validated against the spec schema of its type,
    with its SSE `event:` name checked against its `type`."""
    async with aiohttp.ClientSession() as session, session.post(f"{url}/responses", json={**body, "stream": True}) as reply:
        assert reply.status == 200, await reply.text()
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        text = await reply.text()
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"]
        assert_valid(event_schemas()[event["type"]], event)
        events.append(event)
    return events


def check_order(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Asserts OpenAI's event order and that deltas add up to what the done events and the final
    response say; returns the final response (of the terminal event)."""
    assert [e["sequence_number"] for e in events] == list(range(len(events))), [(e["sequence_number"], e["type"]) for e in events]
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    rest = events[2:]
    done_items: list[dict[str, Any]] = []
    while rest and rest[0]["type"] == "response.output_item.added":
        added, rest = rest[0], rest[1:]
        index, item = added["output_index"], added["item"]
        assert index == len(done_items) and item["status"] == "in_progress"
        kind = item["type"]
        if kind in ("message", "reasoning"):
            delta, done = ("response.output_text.delta", "response.output_text.done") if kind == "message" else (
                "response.reasoning_text.delta", "response.reasoning_text.done")
            assert rest[0]["type"] == "response.content_part.added" and rest[0]["part"]["text"] == ""
            rest = rest[1:]
            pieces = []
            while rest and rest[0]["type"] == delta:
                pieces.append(rest[0]["delta"])
                rest = rest[1:]
            if not rest or rest[0]["type"] != done:
                break  # cut short by a failure
            assert rest[0]["text"] == "".join(pieces)
            assert rest[1]["type"] == "response.content_part.done" and rest[1]["part"]["text"] == rest[0]["text"]
            rest = rest[2:]
        else:
            assert kind == "function_call" and item["arguments"] == ""
            pieces = []
            while rest and rest[0]["type"] == "response.function_call_arguments.delta":
                pieces.append(rest[0]["delta"])
                rest = rest[1:]
            if not rest or rest[0]["type"] != "response.function_call_arguments.done":
                break
            assert rest[0]["arguments"] == "".join(pieces) and rest[0]["name"] == item["name"]
            rest = rest[1:]
        assert rest[0]["type"] == "response.output_item.done" and rest[0]["output_index"] == index
        assert rest[0]["item"]["id"] == item["id"]
        done_items.append(rest[0]["item"])
        rest = rest[1:]
    if rest and rest[0]["type"] == "error":
        rest = rest[1:]
        assert [e["type"] for e in rest] == ["response.failed"]
    assert len(rest) == 1 and rest[0]["type"] in TERMINAL, [e["type"] for e in rest]
    final = rest[0]["response"]
    assert final["output"] == done_items
    return final


def summary(output: list[Any]) -> list[tuple[Any, ...]]:
    """What a test compares: item types, texts, call names and parsed arguments (dicts or SDK objects)."""
    out: list[tuple[Any, ...]] = []
    for item in output:
        item = item if isinstance(item, dict) else item.model_dump()
        if item["type"] == "function_call":
            out.append(("function_call", item["name"], json.loads(item["arguments"])))
        else:
            out.append((item["type"], "".join(part["text"] for part in item["content"])))
    return out
