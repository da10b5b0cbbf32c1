"""Backends toolwire generates through: one module per wire protocol, one small interface."""

from __future__ import annotations

import importlib

from .base import (
    Backend,
    BackendEvent,
    Constraint,
    Finish,
    GenerationRequest,
    SamplingParams,
    TemplateInfo,
    TextPiece,
    Usage,
)
from .http import HttpSettings

# Backend type -> "module:class" in this package; imported when a config names the type.
_BACKENDS = {
    "llamacpp": "llamacpp:LlamaCppBackend",
    "vllm": "vllm:VllmBackend",
    "openai-completions": "vllm:OpenAICompletionsBackend",
    "ollama": "ollama:OllamaBackend",
}


def backend_types() -> list[str]:
    """Every backend type, in the order they were registered."""
    return list(_BACKENDS)


def create_backend(backend_type: str, name: str, settings: HttpSettings) -> Backend:
    try:
        module_name, class_name = _BACKENDS[backend_type].split(":")
    except KeyError:
        raise ValueError(f"backend type {backend_type!r} is not supported (supported: {', '.join(backend_types())})") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)(name, settings)


__all__ = [
    "Backend",
    "BackendEvent",
    "Constraint",
    "Finish",
    "GenerationRequest",
    "HttpSettings",
    "SamplingParams",
    "TemplateInfo",
    "TextPiece",
    "Usage",
    "backend_types",
    "create_backend",
]
