"""Finding one backend or one route of a loaded config by its name (the gateway itself resolves
names through its routing table, so these lookups serve the tests alone)."""

from __future__ import annotations

from gateway.ops.backend_config import BackendConfig
from gateway.ops.config import GatewayConfig, ModelRoute


def backend_named(config: GatewayConfig, name: str) -> BackendConfig:
    """The backend section called `name`; KeyError if the file defines none."""
    for backend in config.backends:
        if backend.name == name:
            return backend
    raise KeyError(f"unknown backend {name!r}")


def route_named(config: GatewayConfig, model: str) -> ModelRoute:
    """The route whose public name is `model` (exactly, no aliases or globs); KeyError if none."""
    for route in config.models:
        if route.name == model:
            return route
    raise KeyError(f"unknown model {model!r}")
