"""Tools for `act()`: what the model is told about each one, and how a call's arguments become
the keyword arguments of its implementation.

Three ways to define one: a plain function (name, docstring and type hints), a `ToolFunctionDef`
(name, description, parameter types and implementation given explicitly), or a `JsonSchemaTool`
(a JSON schema written by hand). Pydantic builds the schema from type hints and validates, with
coercion, the arguments the model sends ("3" for an `int` becomes 3).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema

from .errors import InvalidToolArguments

Implementation = Callable[..., Any]

_JSON_TYPES: Mapping[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict,
    "null": type(None),
}


# Parameters are model fields under aliases (p0, p1, ... -> the real names), so a parameter may
# be called "json" or "copy" without clashing with BaseModel's own attributes.
class _ClosedArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _OpenArguments(BaseModel):
    model_config = ConfigDict(extra="allow")


class _NoFieldTitles(GenerateJsonSchema):
    """Pydantic titles every property after its name; the model gains nothing from that."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(frozen=True)
class ToolFunctionDef:
    """A tool defined explicitly. `parameters` maps each parameter's name to its type: any type
    pydantic knows (`int`, `list[str]`, a model, ...), or `Annotated[int, Field(description=...)]`;
    a `Field(default=...)` in `Annotated` makes the parameter optional."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    implementation: Implementation

    @classmethod
    def from_callable(
        cls, func: Implementation, *, name: str | None = None, description: str | None = None
    ) -> ToolFunctionDef:
        """The definition a function gives (its name, docstring and type hints), with its name or
        description replaced when given."""
        parameters: dict[str, Any] = {}
        for parameter in inspect.signature(func, eval_str=True).parameters.values():
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                raise TypeError(f"tool {func.__name__!r}: parameter {parameter.name!r} cannot be passed by name")
            annotation = Any if parameter.annotation is parameter.empty else parameter.annotation
            if parameter.default is not parameter.empty:
                annotation = Annotated[annotation, Field(default=parameter.default)]
            parameters[parameter.name] = annotation
        return cls(
            name=name or str(getattr(func, "__name__", type(func).__name__)),
            description=description if description is not None else inspect.getdoc(func) or "",
            parameters=parameters,
            implementation=func,
        )


@dataclass(frozen=True)
class JsonSchemaTool:
    """A tool whose parameters are a JSON schema written by hand, sent to the model as is.

    The implementation is called with the arguments as keyword arguments. They are checked and
    coerced against the top-level properties' `type` (string, integer, number, boolean, array,
    object, null), `required` and `additionalProperties: false`; deeper constraints are the
    implementation's to check.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    implementation: Implementation

    @classmethod
    def from_openai(cls, tool: Mapping[str, Any], implementation: Implementation) -> JsonSchemaTool:
        """From an OpenAI tool object, `{"type": "function", "function": {name, description, parameters}}`."""
        function = tool["function"]
        return cls(
            name=function["name"],
            description=function.get("description", ""),
            parameters=function.get("parameters", {"type": "object", "properties": {}}),
            implementation=implementation,
        )


ToolDefinition = ToolFunctionDef | JsonSchemaTool | Implementation


@dataclass(frozen=True)
class Tool:
    """A tool ready for use: its OpenAI definition, its argument model and its implementation."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    implementation: Implementation
    arguments_model: type[BaseModel]
    names: Mapping[str, str]  # model field -> parameter name

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.implementation)

    def openai_tool(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = dict(self.parameters)
        return {"type": "function", "function": function}

    def arguments(self, raw: Any) -> dict[str, Any]:
        """The keyword arguments for the implementation; `InvalidToolArguments` if they don't fit."""
        if not isinstance(raw, dict):
            raise InvalidToolArguments(f"Error: the arguments for tool {self.name!r} must be a JSON object.")
        try:
            model = self.arguments_model.model_validate(raw)
        except ValidationError as exc:
            raise InvalidToolArguments(
                f"Error: the arguments for tool {self.name!r} do not fit its parameters: {_problems(exc)}."
            ) from exc
        # Only what the model sent, so the implementation's own defaults fill in the rest.
        kwargs = {self.names[field]: getattr(model, field) for field in model.model_fields_set}
        kwargs.update(model.model_extra or {})
        return kwargs

    def call_blocking(self, kwargs: dict[str, Any]) -> Any:
        """Run the implementation in this thread (an async one in an event loop of its own)."""
        result = self.implementation(**kwargs)
        if inspect.isawaitable(result):
            return asyncio.run(_awaited(result))
        return result

    async def call(self, kwargs: dict[str, Any]) -> Any:
        """Run the implementation without blocking the event loop: a sync one in a worker thread."""
        if self.is_async:
            return await self.implementation(**kwargs)
        result = await asyncio.to_thread(self.implementation, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


def build_tools(definitions: Iterable[ToolDefinition]) -> dict[str, Tool]:
    """Tools by name, in the order given; a duplicate name is a `ValueError`."""
    tools: dict[str, Tool] = {}
    for definition in definitions:
        tool = to_tool(definition)
        if tool.name in tools:
            raise ValueError(f"two tools are named {tool.name!r}")
        tools[tool.name] = tool
    return tools


def to_tool(definition: ToolDefinition) -> Tool:
    if isinstance(definition, JsonSchemaTool):
        return _schema_tool(definition)
    if isinstance(definition, ToolFunctionDef):
        return _typed_tool(definition)
    if callable(definition):
        return _typed_tool(ToolFunctionDef.from_callable(definition))
    raise TypeError(f"a tool is a function, a ToolFunctionDef or a JsonSchemaTool, not {type(definition).__name__}")


def _typed_tool(definition: ToolFunctionDef) -> Tool:
    fields = {f"p{i}": (annotation, Field(alias=name)) for i, (name, annotation) in enumerate(definition.parameters.items())}
    model = create_model(f"{definition.name}_arguments", __base__=_ClosedArguments, **fields)  # type: ignore[call-overload]
    schema = model.model_json_schema(by_alias=True, schema_generator=_NoFieldTitles)
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return Tool(definition.name, definition.description, schema, definition.implementation, model, _names(definition.parameters))


def _schema_tool(definition: JsonSchemaTool) -> Tool:
    schema = definition.parameters
    required = set(schema.get("required", ()))
    properties = dict(schema.get("properties", {}))
    fields = {
        f"p{i}": (_json_type(spec), Field(alias=name) if name in required else Field(default=None, alias=name))
        for i, (name, spec) in enumerate(properties.items())
    }
    base = _ClosedArguments if schema.get("additionalProperties") is False else _OpenArguments
    model = create_model(f"{definition.name}_arguments", __base__=base, **fields)  # type: ignore[call-overload]
    return Tool(definition.name, definition.description, dict(schema), definition.implementation, model, _names(properties))


def _names(parameters: Mapping[str, Any]) -> dict[str, str]:
    return {f"p{i}": name for i, name in enumerate(parameters)}


def _json_type(schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    return _JSON_TYPES.get(kind, Any) if isinstance(kind, str) else Any
