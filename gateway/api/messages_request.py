"""Anthropic's `/v1/messages` (and `/v1/messages/count_tokens`) request, validated, and turned into
the same `ChatJob` chat completions run on.

Anthropic's conversation maps onto toolwire's: `system` is a system message, `tool_use` blocks are
an assistant's calls, each `tool_result` block is a tool message, `tool_choice` any / tool / none
are required / a named function / none, and `disable_parallel_tool_use` is
`parallel_tool_calls: false`. Thinking blocks sent back are dropped, as chat templates drop earlier
reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.backends import SamplingParams
from adapters.formats.conversation import (
    Conversation,
    Message,
    NamedToolChoice,
    ToolCall,
    ToolChoice,
)

from ..core.faults import InvalidRequest
from ..core.job import ChatJob
from .json_body import parse_json_object
from .request_tools import tool_spec

_TOOL_NAME = r"^[a-zA-Z0-9_\-]{1,128}$"
# Block types toolwire reads, by where they may appear.
_MESSAGE_BLOCKS = ("text", "tool_use", "tool_result", "thinking", "redacted_thinking")
_TEXT_ONLY = ("text",)
JsonObject = dict[str, Any]


class _Model(BaseModel):
    # Unknown fields (cache_control, citations, service_tier, ...) are ignored, so newer clients work.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextBlock(_Model):
    type: Literal["text"]
    text: str


class ToolUseBlock(_Model):
    type: Literal["tool_use"]
    id: Annotated[str, Field(min_length=1)]
    name: str
    input: JsonObject


class ToolResultBlock(_Model):
    type: Literal["tool_result"]
    tool_use_id: Annotated[str, Field(min_length=1)]
    content: str | list[TextBlock] | None = None
    is_error: bool = False


class ThinkingBlock(_Model):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Model):
    type: Literal["redacted_thinking"]
    data: str = ""


Block = Annotated[
    TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock, Field(discriminator="type")
]


class MessageIn(_Model):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolIn(_Model):
    type: Literal["custom"] | None = None
    name: Annotated[str, Field(pattern=_TOOL_NAME)]
    description: str = ""
    input_schema: JsonObject
    strict: bool | None = None


class ToolChoiceAuto(_Model):
    type: Literal["auto"]
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(_Model):
    type: Literal["any"]
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(_Model):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(_Model):
    type: Literal["none"]


ToolChoiceIn = Annotated[ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")]


class ThinkingConfig(_Model):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Annotated[int, Field(ge=1)] | None = None


class Metadata(_Model):
    user_id: str | None = None


class OutputFormat(_Model):
    type: Literal["json_schema"]
    schema_: JsonObject = Field(alias="schema")


class OutputConfig(_Model):
    format: OutputFormat | None = None


class CountTokensRequest(_Model):
    """The fields `count_tokens` takes: everything that shapes the prompt."""

    model: str
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: Metadata | None = None


@dataclass(frozen=True, slots=True)
class MessagesJob:
    """The job, plus what only the Messages encoding needs to know."""

    job: ChatJob
    stop_sequences: tuple[str, ...]
    # Thinking blocks are returned only when the request turns thinking on.
    thinking: bool


def parse_messages_request(body: bytes) -> MessagesJob:
    """Validate a `/v1/messages` body; any problem is a 400 that names the offending field."""
    request = _validate(MessagesRequest, body)
    assert isinstance(request, MessagesRequest)
    stop = tuple(s for s in request.stop_sequences or () if s)
    sampling = SamplingParams(
        max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p, top_k=request.top_k
    )
    job = _job(request, sampling, stop=stop, stream=request.stream)
    thinking = request.thinking is not None and request.thinking.type != "disabled"
    return MessagesJob(job=job, stop_sequences=stop, thinking=thinking)


def parse_count_tokens_request(body: bytes) -> ChatJob:
    """Validate a `/v1/messages/count_tokens` body into the job whose prompt is counted."""
    request = _validate(CountTokensRequest, body)
    return _job(request, SamplingParams(), stop=(), stream=False)


def _validate(model: type[CountTokensRequest], body: bytes) -> CountTokensRequest:
    data = parse_json_object(body)
    _check_kinds(data)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _validation_error(error) from error


def _check_kinds(data: JsonObject) -> None:
    """Clear 400s for what pydantic would only call invalid: server tools, images, documents."""
    for index, tool in enumerate(_list(data.get("tools"))):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in (None, "custom"):
            raise InvalidRequest(
                f"Tools of type '{kind}' are tools Anthropic's servers run; toolwire serves custom tools "
                "(name, description, input_schema).", param=f"tools.{index}.type")
    system = data.get("system")
    _check_blocks(_list(system), "system", _TEXT_ONLY)
    for position, message in enumerate(_list(data.get("messages"))):
        content = message.get("content") if isinstance(message, dict) else None
        where = f"messages.{position}.content"
        _check_blocks(_list(content), where, _MESSAGE_BLOCKS)
        for index, block in enumerate(_list(content)):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                _check_blocks(_list(block.get("content")), f"{where}.{index}.content", _TEXT_ONLY)


def _check_blocks(blocks: list[Any], where: str, allowed: tuple[str, ...]) -> None:
    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if isinstance(kind, str) and kind not in allowed:
            raise InvalidRequest(
                f"Content blocks of type '{kind}' are not supported here (supported: {', '.join(allowed)}).",
                param=f"{where}.{index}.type", code="unsupported_content")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _validation_error(error: ValidationError) -> InvalidRequest:
    """Anthropic names fields with dots (`messages.0.content`); union branches are left out."""
    first = error.errors()[0]
    tags = {"str", "none", *_MESSAGE_BLOCKS, "auto", "any", "tool"}
    parts = [str(part) for part in first["loc"]
             if not (isinstance(part, str) and (part in tags or "[" in part or part[:1].isupper()))]
    param = ".".join(parts)
    message = "Field required" if first["type"] == "missing" else first["msg"]
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return InvalidRequest(f"{param}: {message}{more}", param=param, code="invalid_value")


def _job(request: CountTokensRequest, sampling: SamplingParams, *, stop: tuple[str, ...], stream: bool) -> ChatJob:
    tools = tuple(tool_spec(tool.name, tool.description, tool.input_schema, tool.strict,
                            param=f"tools.{index}.input_schema") for index, tool in enumerate(request.tools or ()))
    choice, parallel = _tool_choice(request.tool_choice, {tool.name for tool in tools})
    turns, prefill = _conversation(request.messages)
    if prefill and choice not in ("auto", "none"):
        raise InvalidRequest("A prefilled assistant turn cannot be combined with a tool_choice that forces a call.",
                             param="tool_choice")
    messages = _system(request.system) + turns
    schema = request.output_config.format.schema_ if request.output_config and request.output_config.format else None
    return ChatJob(
        model=request.model,
        conversation=Conversation(tuple(messages), tools, choice, parallel),
        sampling=sampling,
        stop=stop,
        stream=stream,
        include_usage=True,
        response_schema=schema,
        continues=prefill,
    )


def _tool_choice(choice: Any, names: set[str]) -> tuple[ToolChoice, bool]:
    """toolwire's tool_choice and whether parallel calls are allowed."""
    if choice is None:
        return "auto", True
    if isinstance(choice, ToolChoiceNone):
        return "none", True
    parallel = not choice.disable_parallel_tool_use
    if isinstance(choice, ToolChoiceAuto):
        return "auto", parallel
    if not names:
        raise InvalidRequest(f"tool_choice is '{choice.type}' but no tools were given.", param="tool_choice.type")
    if isinstance(choice, ToolChoiceAny):
        return "required", parallel
    if choice.name not in names:
        raise InvalidRequest(f"tool_choice names the tool '{choice.name}', which is not among the given tools.",
                             param="tool_choice.name")
    return NamedToolChoice(choice.name), parallel


def _system(system: str | list[TextBlock] | None) -> list[Message]:
    text = system if isinstance(system, str) else "\n".join(block.text for block in system or ())
    return [Message("system", text)] if text else []


def _conversation(messages: list[MessageIn]) -> tuple[list[Message], str]:
    """The turns to render, and the prefill: a final assistant turn is the reply's opening, which
    the model continues (Anthropic's prefill), so it is not rendered as a finished turn."""
    turns = _merged_turns(messages)
    prefill = ""
    if turns[-1][0] == "assistant":
        prefill = _prefill(turns.pop()[1], len(messages) - 1)
        if not turns:
            raise InvalidRequest("The first message must be a user turn.", param="messages.0.role")
    out: list[Message] = []
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results that answer them
    for role, blocks, position in turns:
        if role == "assistant":
            out.append(_assistant(blocks, position, names))
        else:
            out.extend(_user(blocks, position, names))
    return out, prefill


def _prefill(blocks: list[Any], position: int) -> str:
    if not all(isinstance(block, TextBlock) for block in blocks):
        raise InvalidRequest("A final assistant message (a prefill) may hold text blocks only.",
                             param=f"messages.{position}.content")
    text = "".join(block.text for block in blocks)
    if text != text.rstrip():
        # As Anthropic: the model would go on after the whitespace, which tokenizes badly.
        raise InvalidRequest("final assistant content cannot end with trailing whitespace",
                             param=f"messages.{position}.content")
    return text


def _merged_turns(messages: list[MessageIn]) -> list[tuple[str, list[Any], int]]:
    """Consecutive messages of one role are one turn, as Anthropic combines them."""
    turns: list[tuple[str, list[Any], int]] = []
    for position, message in enumerate(messages):
        blocks = [TextBlock(type="text", text=message.content)] if isinstance(message.content, str) else message.content
        if turns and turns[-1][0] == message.role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((message.role, list(blocks), position))
    return turns


def _assistant(blocks: list[Any], position: int, names: dict[str, str]) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            names[block.id] = block.name
            calls.append(ToolCall(id=block.id, name=block.name, arguments=orjson.dumps(block.input).decode()))
        elif isinstance(block, ToolResultBlock):
            raise InvalidRequest("tool_result blocks belong in user messages.", param=f"messages.{position}.content")
        # thinking / redacted_thinking: earlier reasoning is not rendered again
    return Message("assistant", "\n".join(texts), tool_calls=tuple(calls))


def _user(blocks: list[Any], position: int, names: dict[str, str]) -> list[Message]:
    out: list[Message] = []
    texts: list[str] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolResultBlock):
            if texts:
                out.append(Message("user", "\n".join(texts)))
                texts = []
            out.append(Message("tool", _result_text(block), tool_call_id=block.tool_use_id,
                               name=names.get(block.tool_use_id)))
        elif isinstance(block, ToolUseBlock):
            raise InvalidRequest("tool_use blocks belong in assistant messages.", param=f"messages.{position}.content")
    if texts:
        out.append(Message("user", "\n".join(texts)))
    return out


def _result_text(block: ToolResultBlock) -> str:
    content = block.content
    text = content if isinstance(content, str) else "\n".join(part.text for part in content or ())
    if block.is_error and not text.lower().startswith("error"):
        # The chat side has no error flag: the model learns of the failure from the text.
        text = f"Error: {text}" if text else "Error"
    return text
