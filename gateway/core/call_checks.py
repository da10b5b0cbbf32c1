"""Checks on finished tool calls: arguments against the tool's JSON schema, and at most one call
when only one may be returned."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import regex  # type: ignore[import-untyped]
import structlog
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError

from adapters.formats.conversation import ToolSpec
from adapters.formats.events import (
    ParseEvent,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)

from .bounded import Overran, run_bounded
from .faults import CallRejected

log = structlog.get_logger("toolwire.calls")

# A client's `pattern` runs on the model's text: with the `regex` engine, which sees through the
# classic catastrophic patterns (`^(a+)+$`), gives the GIL back while it matches, and stops at a
# timeout; and the whole check of one call runs off the event loop within a time limit.
PATTERN_SECONDS = 0.5
VALIDATION_SECONDS = 2.0


def _search(pattern: str, text: str) -> bool:
    try:
        return regex.search(pattern, text, timeout=PATTERN_SECONDS, concurrent=True) is not None
    except regex.error:
        return True  # a pattern `regex` cannot read is not the model's fault


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterable[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, properties: dict[str, Any], instance: Any, schema: Any) -> Iterable[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern, "patternProperties": _pattern_properties})


class SchemaValidators:
    """Compiled validators by schema text, kept across requests: checking a schema against the
    metaschema costs far more than validating a call, and clients send the same tools again."""

    _LIMIT = 512

    def __init__(self) -> None:
        self._validators: dict[bytes, Any] = {}

    def get(self, tool: ToolSpec) -> Any:
        key = orjson.dumps(tool.parameters, option=orjson.OPT_SORT_KEYS)
        if key not in self._validators:
            if len(self._validators) >= self._LIMIT:
                self._validators.clear()
            try:
                Draft202012Validator.check_schema(tool.parameters)
                self._validators[key] = _Validator(tool.parameters)
            except SchemaError as error:
                log.warning("tool_schema_invalid", name=tool.name, error=error.message)
                self._validators[key] = None
        return self._validators[key]


class CallChecker:
    """Passes parser events through, validating each completed call.

    An invalid call is returned as the model wrote it, with a log line; for a tool marked
    `strict` it is an error instead, unless decoding was constrained (then the schema was
    already enforced as far as the backend could).
    """

    def __init__(
        self, tools: tuple[ToolSpec, ...], validators: SchemaValidators, *, constrained: bool, one_call: bool
    ) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._validators = validators
        self._constrained = constrained
        self._one_call = one_call
        self._names: dict[int, str] = {}
        self.calls = 0

    async def check(self, events: Iterable[ParseEvent]) -> list[ParseEvent]:
        kept: list[ParseEvent] = []
        for event in events:
            if isinstance(event, ToolCallStart | ToolCallArgs | ToolCallEnd | ToolCallFailed):
                if self._one_call and event.index > 0:
                    continue  # only the first call may be returned
                if isinstance(event, ToolCallStart):
                    self._names[event.index] = event.name
                elif isinstance(event, ToolCallEnd):
                    self.calls += 1
                    if not event.truncated:  # a cut call is unfinished by design: nothing to check
                        # A repaired call is checked and logged, never rejected: the slip was the model's.
                        await self._validate(self._names.get(event.index, ""), event.arguments, reject=not event.repaired)
            kept.append(event)
        return kept

    async def _validate(self, name: str, arguments: str, *, reject: bool = True) -> None:
        tool = self._tools.get(name)
        if tool is None:
            log.info("call_to_unknown_tool", name=name)  # returned as is: the client decides
            return
        validator = self._validators.get(tool)
        if validator is None:
            return
        try:
            problems = await run_bounded(
                lambda: [_describe(error) for error in validator.iter_errors(orjson.loads(arguments))],
                VALIDATION_SECONDS,
            )
        except (Overran, TimeoutError):
            problems = [f"(arguments): could not be checked against the schema within {VALIDATION_SECONDS:g}s"]
        if not problems:
            return
        log.warning("call_arguments_invalid", name=name, problems=problems)
        if reject and tool.strict and not self._constrained:
            raise CallRejected(name, problems)


def _describe(error: Any) -> str:
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where or '(arguments)'}: {error.message}"
