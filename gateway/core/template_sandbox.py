"""The Jinja environment chat templates render in, set up like transformers' (its
chat_template_utils compiles templates the same way): Jinja's sandbox, read-only inputs, the
globals and filters templates expect, and a size limit on every text a render builds."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import SandboxedEnvironment, modifies_known_mutable


class TemplateError(Exception):
    """A template failed to compile, called raise_exception(), or failed while rendering."""


class TemplateRejected(TemplateError):
    """The template itself refused what it was given: it called `raise_exception(message)`."""


class TemplateTooLarge(TemplateError):
    """A render built text past the size limit: the template's fault, whatever the input."""


# The longest text a render may build or output, in characters. A prompt is at most about the
# request body (32 MiB by default) plus the template's own text; string doubling or a huge
# `'x' * n` stops here instead of growing the process by gigabytes. (Time is bounded by the
# caller, which renders off the event loop: gateway/core/bounded.py.)
MAX_TEXT = 48 * 1024 * 1024


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; here it just renders."""

    tags = {"generation"}  # noqa: RUF012 - jinja2 reads it as a plain class attribute

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return caller()


class _SafeNamespace(jinja2.utils.Namespace):
    """`namespace()` that refuses underscore names, which could reach Python internals (as transformers does)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # Jinja's signature trick: `namespace(self=1)` stays legal
        self, attrs = args[0], dict(*args[1:], **kwargs)
        for key in attrs:
            _SafeNamespace._check(key)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, key: str, value: Any) -> None:
        _SafeNamespace._check(key)  # not self._check: Namespace looks attributes up among its own items
        super().__setitem__(key, value)

    @staticmethod
    def _check(key: Any) -> None:
        if isinstance(key, str) and key.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {key!r} may not start with an underscore")


def _dict(*args: Any, **kwargs: Any) -> dict:
    # A plain function rather than the `dict` type itself, so templates cannot reach type attributes through it.
    return dict(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise TemplateRejected(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # Jinja's own tojson HTML-escapes `<>&'` and takes only `indent`; templates expect plain json.dumps.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys,
                      default=_list_iterator)


def _list_iterator(value: Any) -> list:
    # `tools|map(attribute='function')|tojson` (llama.cpp's DeepSeek-R1 template) hands json.dumps a generator.
    # transformers fails there; we write it as the list it stands for. Anything else still fails.
    if isinstance(value, Iterator):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _InputList(list[Any]):
    """A list the template was given: it may read it, not change it."""


class _InputDict(dict[Any, Any]):
    """A dict the template was given: it may read it, not change it."""


def read_only(value: Any) -> Any:
    """`value` with every list and dict in it marked as the caller's (copied, not frozen in place)."""
    if isinstance(value, dict):
        return _InputDict({key: read_only(item) for key, item in value.items()})
    if isinstance(value, list):
        return _InputList(read_only(item) for item in value)
    return value


# The plain containers a template creates itself (`[]`, `{}`, `namespace(ids=[])`, a slice).
_TEMPLATE_OWN = (list, dict, set)


def _sized(value: Any) -> Any:
    """`value`, unless it is text or a sequence past the size limit."""
    if isinstance(value, str | list | tuple | bytes) and len(value) > MAX_TEXT:
        raise TemplateTooLarge(f"the template built a value of {len(value)} items (limit {MAX_TEXT})")
    return value


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | bytes) else 0


_BIG_FORMAT = re.compile(r"%[-+ #0]*(\d{7,}|\*)|\.\d{7,}")  # a width or precision of millions, or `*`
# Methods of text whose int arguments size their result: center(10**9) allocates first, asks later.
_SIZING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "join", "replace", "format"})


def checked_join(join: Any) -> Any:
    def joined(parts: Any) -> Any:
        parts = list(parts)
        if sum(len(str(part)) for part in parts) > MAX_TEXT:
            raise TemplateTooLarge(f"the template joined text past the size limit ({MAX_TEXT})")
        return join(parts)

    return joined


def _checked_filter(function: Any) -> Any:
    @functools.wraps(function)  # keeps jinja's pass_context / pass_environment marks
    def checked(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_TEXT:
                raise TemplateTooLarge(f"a filter argument of {value} is past the size limit")
        return _sized(function(*args, **kwargs))

    return checked


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, plus what transformers' immutable one refuses and llama.cpp's renderer allows:
    a template may append to, pop from and update the lists and dicts it built (Kimi K2 queues call ids
    that way). What it was given stays read-only, and every other sandbox rule holds.

    Every operator, call and filter that can grow text is checked against `MAX_TEXT` before it
    allocates (or, where the size cannot be known first, right after)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return type(obj) in _TEMPLATE_OWN or not modifies_known_mutable(obj, attr)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if _size_of(sized) and isinstance(count, int) and _size_of(sized) * count > MAX_TEXT:
                    raise TemplateTooLarge(f"the template multiplied text past the size limit ({MAX_TEXT})")
        elif operator == "**":
            if isinstance(right, int | float) and isinstance(left, int | float) and abs(right) > 64 and abs(left) > 1:
                raise TemplateTooLarge(f"the template raised a number to the power {right}")
        elif operator == "+":
            if _size_of(left) + _size_of(right) > MAX_TEXT:
                raise TemplateTooLarge(f"the template added text past the size limit ({MAX_TEXT})")
        elif operator == "%" and isinstance(left, str) and _BIG_FORMAT.search(left):
            raise TemplateTooLarge("the template formats with a width of millions of characters")
        return _sized(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if getattr(obj, "__self__", None).__class__ is str and getattr(obj, "__name__", "") in _SIZING_METHODS:
            for value in (*args, *kwargs.values()):
                if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_TEXT:
                    raise TemplateTooLarge(f"a text method argument of {value} is past the size limit")
                if isinstance(value, str) and _BIG_FORMAT.search(value):
                    raise TemplateTooLarge("the template formats with a width of millions of characters")
        return _sized(super().call(context, obj, *args, **kwargs))


def sandbox_environment() -> SandboxedEnvironment:
    env = _Sandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    for name, function in list(env.filters.items()):
        env.filters[name] = _checked_filter(function)
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_dict,
                       namespace=_SafeNamespace)
    return env


