"""Tool-call formats, registered by name. Each is a small description over one shared parser."""

from __future__ import annotations

from .base import TemplateInput, TemplateTraits, ToolFormat
from .default import DefaultFormat
from .hermes import HermesFormat

_FORMATS: tuple[type[ToolFormat], ...] = (DefaultFormat, HermesFormat)


def format_names() -> list[str]:
    return [fmt.name for fmt in _FORMATS]


def get_format(name: str) -> ToolFormat:
    """The format registered under `name`; KeyError lists the known ones."""
    for fmt in _FORMATS:
        if fmt.name == name:
            return fmt()
    raise KeyError(f"unknown tool format {name!r} (known: {', '.join(format_names())})")


__all__ = ["TemplateInput", "TemplateTraits", "ToolFormat", "format_names", "get_format"]
