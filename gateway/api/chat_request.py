"""The `/v1/chat/completions` request as OpenAI defines it, validated, and turned into a `ChatJob`.

Raw JSON stops here: everything past this module works on typed objects.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.backends import SamplingParams
from adapters.formats.conversation import (
    FUNCTION_NAME_PATTERN,
    Conversation,
    Message,
    NamedToolChoice,
    ToolCall,
    ToolChoice,
)

from ..core.faults import InvalidRequest
from ..core.job import Affinity, ChatJob
from ..core.schema_checks import check_schema_refs
from .json_body import parse_json_object
from .request_tools import tool_spec


class _Model(BaseModel):
    # Unknown fields are ignored, as most OpenAI-compatible servers do, so newer clients work.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)  # "10" is not a number, as at OpenAI


class TextPart(_Model):
    type: Literal["text"]
    text: str


class OtherPart(_Model):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    type: str


class FunctionCallIn(_Model):
    name: str
    # OpenAI sends a JSON string; some clients send the object itself.
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_Model):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCallIn


class MessageIn(_Model):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | OtherPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCallIn | None = None  # legacy assistant field
    # An assistant turn's reasoning, sent back by clients that keep it (vLLM and llama.cpp call it
    # reasoning_content; OpenRouter-style clients `reasoning`). Any other shape is ignored, not refused.
    reasoning_content: Any = None
    reasoning: Any = None

    @property
    def reasoning_text(self) -> str | None:
        for value in (self.reasoning_content, self.reasoning):
            if isinstance(value, str) and value:
                return value
        return None


class FunctionDef(_Model):
    name: Annotated[str, Field(pattern=FUNCTION_NAME_PATTERN)]
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(_Model):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Model):
    name: str


class NamedToolChoiceIn(_Model):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Model):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Model):
    include_usage: bool = False


class ChatCompletionRequest(_Model):
    model: str
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDef] | None = None  # legacy
    function_call: Literal["none", "auto"] | NamedFunction | None = None  # legacy
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0)] | None = None
    stop: str | list[str] | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None  # the caller's end user: a session key for `balance: affinity`
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None  # honored where the backend gives them (stream_driver checks)
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    # Accepted only in their harmless values: toolwire returns no audio.
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _single_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only n=1 is supported")
        return value


def parse_chat_request(body: bytes) -> ChatJob:
    """Validate a request body; any problem is a 400 that names the offending field."""
    data = parse_json_object(body)
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as error:
        raise validation_error(error) from error
    return _to_job(request)


def validation_error(error: ValidationError) -> InvalidRequest:
    first = error.errors()[0]
    param = _param_path(first["loc"])
    message = first["msg"]
    if first["type"] == "missing":
        message = "Field required"
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return InvalidRequest(f"Invalid value for '{param}': {message}{more}", param=param, code="invalid_value")


def _param_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "list[union[TextPart,OtherPart]]") or "[" in str(part) or str(part)[:1].isupper():
            continue  # pydantic's names for union branches, not fields
        else:
            path += f".{part}" if path else str(part)
    return path


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    """What toolwire cannot honor is a clear 400, never silently dropped."""
    if request.top_logprobs and request.logprobs is not True:
        raise InvalidRequest("'top_logprobs' needs 'logprobs': true.", param="top_logprobs", code="invalid_value")
    refused = {
        "modalities": "audio" in (request.modalities or ()),
        "audio": request.audio is not None,
    }
    for param, asked in refused.items():
        if asked:
            raise InvalidRequest(f"'{param}' is not supported: toolwire returns text and tool calls only, without "
                                 "audio.", param=param, code="unsupported_parameter")


def _logit_bias(bias: dict[str, float] | None) -> tuple[tuple[int, float], ...] | None:
    if not bias:
        return None
    pairs = []
    for token, value in bias.items():
        if not token.isdigit():
            raise InvalidRequest(f"logit_bias keys are token ids; {token!r} is not one.", param=f"logit_bias.{token}",
                                 code="invalid_value")
        pairs.append((int(token), float(value)))
    return tuple(pairs)


def _to_job(request: ChatCompletionRequest) -> ChatJob:
    _refuse_unsupported(request)
    functions = [tool.function for tool in request.tools or []] + list(request.functions or [])
    tools = [tool_spec(function.name, function.description, function.parameters, function.strict,
                       param=f"tools[{index}].function.parameters")
             for index, function in enumerate(functions)]
    names = {tool.name for tool in tools}
    tool_choice = _tool_choice(request, names)
    messages = tuple(_message(message, position) for position, message in enumerate(request.messages))
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    sampling = SamplingParams(
        max_tokens=request.max_completion_tokens or request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        min_p=request.min_p,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        repeat_penalty=request.repeat_penalty,
        logit_bias=_logit_bias(request.logit_bias),
        logprobs=(request.top_logprobs or 0) if request.logprobs else None,
    )
    conversation = Conversation(
        messages=messages,
        tools=tuple(tools),
        tool_choice=tool_choice,
        parallel_tool_calls=request.parallel_tool_calls is not False,
    )
    return ChatJob(
        model=request.model,
        conversation=conversation,
        sampling=sampling,
        stop=tuple(s for s in stop if s),
        stream=request.stream,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
        response_schema=_checked(_response_schema(request.response_format), "response_format.json_schema.schema"),
        affinity=Affinity(lookup=(f"user:{request.user}",), record=(f"user:{request.user}",)) if request.user else None,
    )


def _checked(schema: dict[str, Any] | None, param: str) -> dict[str, Any] | None:
    if schema is not None:
        check_schema_refs(schema, param)
    return schema


def _response_schema(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return {"type": "object"}
    if response_format.json_schema is None:
        raise InvalidRequest("response_format of type 'json_schema' needs a 'json_schema'.", param="response_format")
    return response_format.json_schema.schema_


def _tool_choice(request: ChatCompletionRequest, names: set[str]) -> ToolChoice:
    choice = request.tool_choice if request.tool_choice is not None else request.function_call
    param = "tool_choice" if request.tool_choice is not None else "function_call"
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice != "none" and not names:
            raise InvalidRequest(f"'{param}' is '{choice}' but no tools were given.", param=param)
        return choice
    name = choice.function.name if isinstance(choice, NamedToolChoiceIn) else choice.name
    if name not in names:
        raise InvalidRequest(
            f"'{param}' names the function '{name}', which is not among the given tools.", param=param
        )
    return NamedToolChoice(name)


def _message(message: MessageIn, position: int) -> Message:
    content = _text_content(message, position)
    role = message.role
    if role == "developer":
        return Message("system", content)
    if role == "function":  # legacy function result
        return Message("tool", content, name=message.name)
    if role == "tool":
        return Message("tool", content, tool_call_id=message.tool_call_id, name=message.name)
    if role == "assistant":
        calls = [_call(call.id, call.function, position, index) for index, call in enumerate(message.tool_calls or [])]
        if message.function_call is not None:
            calls.append(_call("", message.function_call, position, len(calls)))
        return Message("assistant", content, tool_calls=tuple(calls), reasoning=message.reasoning_text)
    return Message(role, content)


def _call(call_id: str, function: FunctionCallIn, position: int, index: int) -> ToolCall:
    arguments = function.arguments
    if isinstance(arguments, dict):
        arguments = orjson.dumps(arguments).decode()
    return ToolCall(id=call_id or f"call_{position}_{index}", name=function.name, arguments=arguments or "{}")


def _text_content(message: MessageIn, position: int) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for index, part in enumerate(content):
        if isinstance(part, TextPart):
            texts.append(part.text)
        else:
            raise InvalidRequest(
                f"Content parts of type '{part.type}' are not supported; send text.",
                param=f"messages[{position}].content[{index}]",
                code="unsupported_content",
            )
    return "\n".join(texts)
