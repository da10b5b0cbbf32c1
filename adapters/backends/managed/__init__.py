"""llama.cpp servers toolwire launches and supervises itself: found, started on a free loopback
port, loaded on demand, unloaded when idle, restarted after a crash, stopped with the gateway."""

from __future__ import annotations

from .backend import ManagedLlamaCppBackend, supervisors_of
from .binary import BinaryNotFound, find_server_binary
from .fleet import Fleet
from .spec import LaunchSpec, ModelNotFound, is_model_package, resolve_model
from .supervisor import ModelState, ModelStatus, ModelSupervisor

__all__ = [
    "BinaryNotFound",
    "Fleet",
    "LaunchSpec",
    "ManagedLlamaCppBackend",
    "ModelNotFound",
    "ModelState",
    "ModelStatus",
    "ModelSupervisor",
    "find_server_binary",
    "is_model_package",
    "resolve_model",
    "supervisors_of",
]
