"""Backends toolwire generates through: one module per wire protocol, one small interface."""

from __future__ import annotations

from .base import Backend, BackendEvent, Finish, GenerationRequest, SamplingParams, TemplateInfo, TextPiece, Usage
from .http import HttpSettings
from .llamacpp import LlamaCppBackend

_BACKENDS = {"llamacpp": LlamaCppBackend}


def backend_types() -> list[str]:
    return sorted(_BACKENDS)


def create_backend(backend_type: str, name: str, settings: HttpSettings) -> Backend:
    try:
        factory = _BACKENDS[backend_type]
    except KeyError:
        raise ValueError(f"backend type {backend_type!r} is not supported (supported: {', '.join(backend_types())})") from None
    return factory(name, settings)


__all__ = [
    "Backend",
    "BackendEvent",
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
