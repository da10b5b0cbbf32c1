"""The `/v1/responses` request as OpenAI defines it (`CreateResponse`), validated, and turned into
the same `ChatJob` that chat completions run on. Input items live in responses_items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from adapters.backends import SamplingParams
from adapters.formats.conversation import (
    FUNCTION_NAME_PATTERN,
    Conversation,
    Message,
    NamedToolChoice,
    ToolChoice,
    ToolSpec,
)

from ..core.faults import InvalidRequest
from ..core.job import ChatJob
from ..core.schema_checks import check_schema_refs
from .chat_request import validation_error
from .json_body import parse_json_object
from .mcp_request import McpToolParam
from .request_tools import tool_spec
from .responses_items import (
    ITEM_TYPES,
    InputItem,
    JsonObject,
    MessageItem,
    canonical_items,
    conversation_messages,
)


class _Model(BaseModel):
    # Unknown fields are ignored, as for chat, so newer clients keep working.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)  # "10" is not a number, as at OpenAI


class FunctionTool(_Model):
    type: Literal["function"]
    name: Annotated[str, Field(pattern=FUNCTION_NAME_PATTERN)]
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class ToolChoiceFunction(_Model):
    type: Literal["function"]
    name: str


class ToolChoiceAllowed(_Model):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[ToolChoiceFunction]


class ToolChoiceMcp(_Model):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


class TextFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    schema_: JsonObject | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Model):
    format: TextFormat | None = None


def _kind(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


class ResponsesRequest(_Model):
    model: str
    # Tagged, so an invalid item is reported as such, not also as "input should be a string".
    input: Annotated[
        Annotated[str, Tag("Text")] | Annotated[list[InputItem], Field(min_length=1), Tag("Items")],
        Discriminator(lambda value: "Text" if isinstance(value, str) else "Items"),
    ]
    instructions: str | None = None
    # Capitalised tags, which chat's error formatter leaves out of the param path.
    tools: list[Annotated[
        Annotated[FunctionTool, Tag("Function")] | Annotated[McpToolParam, Tag("Mcp")],
        Discriminator(lambda tool: "Mcp" if _kind(tool) == "mcp" else "Function"),
    ]] | None = None
    tool_choice: (Literal["none", "auto", "required"] | ToolChoiceFunction | ToolChoiceAllowed | ToolChoiceMcp
                  | None) = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: Annotated[int, Field(ge=16)] | None = None  # the spec's minimum
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    # Not in OpenAI's API; accepted as chat accepts them, for backends that have them.
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    seed: int | None = None
    text: TextConfig | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    background: bool | None = None
    conversation: Any = None
    user: str | None = None  # the caller's end user: a session key for `balance: affinity`
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    # OpenAI's includables; only the logprobs one adds anything here (toolwire runs none of the tools
    # the others are about, and writes no encrypted reasoning).
    include: list[Literal[
        "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
        "message.input_image.image_url", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
        "reasoning.encrypted_content", "message.output_text.logprobs",
    ]] | None = None

    @property
    def logprobs(self) -> int | None:
        """How many alternatives to give per token, or None when token logprobs are not asked for."""
        asked = "message.output_text.logprobs" in (self.include or ()) or bool(self.top_logprobs)
        return (self.top_logprobs or 0) if asked else None

    @property
    def keep(self) -> bool:
        return self.store is not False  # OpenAI stores unless told not to

    @property
    def function_tools(self) -> list[FunctionTool]:
        return [tool for tool in self.tools or [] if isinstance(tool, FunctionTool)]

    @property
    def mcp_tools(self) -> list[tuple[int, McpToolParam]]:
        """The `mcp` tools with their positions in `tools` (to name them in errors)."""
        return [(index, tool) for index, tool in enumerate(self.tools or []) if isinstance(tool, McpToolParam)]


def parse_responses_request(body: bytes) -> ResponsesRequest:
    """Validate a request body; any problem is a 400 that names the offending field."""
    data = parse_json_object(body)
    _check_kinds(data)
    try:
        request = ResponsesRequest.model_validate(data)
    except ValidationError as error:
        raise validation_error(error) from error
    if request.background:
        raise InvalidRequest("Background responses are not supported.", param="background", code="unsupported_parameter")
    if request.conversation is not None:
        raise InvalidRequest("Conversations are not supported; chain responses with 'previous_response_id'.",
                          param="conversation", code="unsupported_parameter")
    return request


def _check_kinds(data: JsonObject) -> None:
    """Clear 400s for shapes pydantic would only call 'invalid': other APIs' tools, other item types."""
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array of tools.", param="tools", code="invalid_type")
    for index, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            continue
        if tool.get("type") not in ("function", "mcp"):
            raise InvalidRequest(f"Tools of type '{tool.get('type')}' are not supported; only 'function' and 'mcp' "
                                 "tools are.",
                              param=f"tools[{index}].type", code="unsupported_tool")
        if "function" in tool and "name" not in tool:
            raise InvalidRequest(
                'Use the flat shape for function tools, {"type": "function", "name": ..., "description": ..., '
                '"parameters": {...}}: the Responses API does not take chat completions\' '
                '{"type": "function", "function": {...}}.',
                param=f"tools[{index}]", code="invalid_tool_shape")
    choice = data.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") not in ("function", "allowed_tools", "mcp"):
        raise InvalidRequest(f"tool_choice of type '{choice.get('type')}' is not supported.", param="tool_choice")
    items = data.get("input")
    for index, item in enumerate(items if isinstance(items, list) else []):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind is not None and kind not in ITEM_TYPES:
            raise InvalidRequest(f"Input items of type '{kind}' are not supported (supported: {', '.join(ITEM_TYPES)}).",
                              param=f"input[{index}].type", code="unsupported_input_item")


def input_items(request: ResponsesRequest) -> list[JsonObject]:
    """The request's own input as canonical items, each with an id (to store and list)."""
    items = [MessageItem(role="user", content=request.input)] if isinstance(request.input, str) else request.input
    return canonical_items(items)


def build_job(
    request: ResponsesRequest,
    history: Sequence[JsonObject],
    items: Sequence[JsonObject],
    mcp_tools: Sequence[ToolSpec] = (),
    mcp_servers: Mapping[str, Sequence[str]] | None = None,
) -> ChatJob:
    """One ChatJob from the stored chain's items, then this request's own (both canonical), offering
    the request's function tools and the MCP servers' tools."""
    # An empty `parameters` ({}) takes the default schema too.
    tools = [tool_spec(t.name, t.description, t.parameters or None, t.strict, param=f"tools[{index}].parameters")
             for index, t in enumerate(request.function_tools)]
    tools += mcp_tools
    if isinstance(request.tool_choice, ToolChoiceMcp):
        tools, tool_choice = _mcp_choice(request.tool_choice, tools, mcp_servers or {})
    else:
        tools, tool_choice = _tool_choice(request.tool_choice, tools)
    messages = [Message("system", request.instructions)] if request.instructions else []
    messages += conversation_messages([*history, *items], first_own=len(history))
    schema = _response_schema(request.text.format if request.text else None)
    if schema is not None:
        check_schema_refs(schema, "text.format.schema")
    sampling = SamplingParams(max_tokens=request.max_output_tokens, temperature=request.temperature,
                              top_p=request.top_p, top_k=request.top_k, min_p=request.min_p, seed=request.seed,
                              logprobs=request.logprobs)
    conversation = Conversation(tuple(messages), tuple(tools), tool_choice, request.parallel_tool_calls is not False)
    return ChatJob(model=request.model, conversation=conversation, sampling=sampling, stop=(),
                   stream=bool(request.stream), include_usage=True, response_schema=schema)


def _tool_choice(choice: Any, tools: list[ToolSpec]) -> tuple[list[ToolSpec], ToolChoice]:
    names = [tool.name for tool in tools]
    if choice is None or isinstance(choice, str):
        if choice == "required" and not tools:
            raise InvalidRequest("'tool_choice' is 'required' but no tools were given.", param="tool_choice")
        return tools, cast(ToolChoice, choice or "auto")
    if isinstance(choice, ToolChoiceFunction):
        if choice.name not in names:
            raise InvalidRequest(f"'tool_choice' names the function '{choice.name}', which is not among the given tools.",
                              param="tool_choice")
        return tools, NamedToolChoice(choice.name)
    allowed = set()
    for index, ref in enumerate(choice.tools):
        if ref.name not in names:
            raise InvalidRequest(f"Allowed tool '{ref.name}' is not among the given tools.",
                              param=f"tool_choice.tools[{index}]")
        allowed.add(ref.name)
    return [tool for tool in tools if tool.name in allowed], choice.mode


def _mcp_choice(
    choice: ToolChoiceMcp, tools: list[ToolSpec], servers: Mapping[str, Sequence[str]]
) -> tuple[list[ToolSpec], ToolChoice]:
    """A call to the named tool of that server, or to any of its tools."""
    if choice.server_label not in servers:
        raise InvalidRequest(f"'tool_choice' names the MCP server '{choice.server_label}', which is not among the "
                             "given tools.", param="tool_choice.server_label")
    names = servers[choice.server_label]
    if choice.name is None:
        return [tool for tool in tools if tool.name in names], "required"
    if choice.name not in names:
        raise InvalidRequest(f"The MCP server '{choice.server_label}' offers no tool '{choice.name}'.",
                             param="tool_choice.name")
    return tools, NamedToolChoice(choice.name)


def _response_schema(text_format: TextFormat | None) -> JsonObject | None:
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return {"type": "object"}
    if text_format.schema_ is None:
        raise InvalidRequest("text.format of type 'json_schema' needs a 'schema'.", param="text.format.schema")
    return text_format.schema_


def echo_fields(request: ResponsesRequest) -> JsonObject:
    """The request's settings as the `Response` object repeats them."""
    tools = [{"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters,
              "strict": bool(t.strict)} if isinstance(t, FunctionTool) else t.echo() for t in request.tools or []]
    choice = request.tool_choice
    text_format = request.text.format if request.text and request.text.format else TextFormat(type="text")
    if text_format.type == "json_schema":
        shown = text_format.model_dump(by_alias=True, exclude_none=True)
    else:
        shown = {"type": text_format.type}
    return {
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "store": request.keep,
        "temperature": request.temperature,
        "text": {"format": shown},
        "tool_choice": choice.model_dump() if isinstance(choice, BaseModel) else choice or "auto",
        "tools": tools,
        "top_p": request.top_p,
        "top_logprobs": request.top_logprobs or 0,
        "truncation": "disabled",
    }
