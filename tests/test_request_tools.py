"""Every request parser reads a client's tools (gateway/api/request_tools.py) and its body
(gateway/api/json_body.py) the same way: a schema whose `$ref` does not resolve is a 400 naming where
it stands, on each surface."""

from __future__ import annotations

import orjson
import pytest

from adapters.formats.conversation import default_parameters
from gateway.api.chat_request import parse_chat_request
from gateway.api.messages_request import parse_messages_request
from gateway.api.request_tools import tool_spec
from gateway.api.responses_request import build_job, parse_responses_request
from gateway.core.faults import InvalidRequest

BROKEN = {"type": "object", "properties": {"city": {"$ref": "#/$defs/missing"}}}


def test_a_tool_without_parameters_takes_the_default_schema() -> None:
    spec = tool_spec("f", None, None, None, param="tools[0].parameters")
    assert (spec.name, spec.description, spec.parameters, spec.strict) == ("f", "", default_parameters(), False)


def test_a_broken_ref_names_its_place_in_each_api() -> None:
    messages = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"name": "g", "input_schema": BROKEN}]}
    with pytest.raises(InvalidRequest) as fault:
        parse_messages_request(orjson.dumps(messages))
    assert fault.value.param == "tools.1.input_schema"

    responses = {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "g", "parameters": BROKEN}]}
    with pytest.raises(InvalidRequest) as fault:
        build_job(parse_responses_request(orjson.dumps(responses)), [], [])
    assert fault.value.param == "tools[0].parameters"

    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "g", "parameters": BROKEN}}]}
    with pytest.raises(InvalidRequest) as fault:
        parse_chat_request(orjson.dumps(chat))
    assert fault.value.param == "tools[0].function.parameters"


def test_a_messages_body_is_read_as_every_api_reads_one() -> None:
    """The Messages parser reads its body through json_body.py too, so its depth bound holds there."""
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "metadata": deep}
    with pytest.raises(InvalidRequest) as fault:
        parse_messages_request(orjson.dumps(body))
    assert fault.value.code == "invalid_json" and "nests deeper" in str(fault.value)
