"""A client's tool as the core takes it, the same from every request parser (chat, Responses,
Anthropic messages): a function given no parameters schema takes the default one, and the schema's
`$ref`s must resolve (a 400 naming where the schema stands in the request)."""

from __future__ import annotations

from typing import Any

from adapters.formats.conversation import ToolSpec, default_parameters

from ..core.schema_checks import check_schema_refs


def tool_spec(
    name: str, description: str | None, parameters: dict[str, Any] | None, strict: bool | None, *, param: str
) -> ToolSpec:
    """The tool; `param` is where its schema stands in the request (`tools[0].parameters`)."""
    spec = ToolSpec(name, description or "", parameters if parameters is not None else default_parameters(),
                    bool(strict))  # fmt: skip
    check_schema_refs(spec.parameters, param)
    return spec
