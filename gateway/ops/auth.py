"""Gateway API keys: bearer tokens compared in constant time, each allowed a set of models."""

from __future__ import annotations

import fnmatch
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.faults import ModelNotAllowed, Unauthenticated
from .config import AuthConfig

KEYS_ENV = "TOOLWIRE_API_KEYS"  # comma-separated keys that may use every model


@dataclass(frozen=True, slots=True)
class ApiKey:
    secret: bytes
    models: tuple[str, ...]
    mcp_servers: tuple[str, ...] = ("*",)

    def allows(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def allows_mcp(self, label: str) -> bool:
        return any(fnmatch.fnmatchcase(label, pattern) for pattern in self.mcp_servers)


class KeyRing:
    def __init__(self, config: AuthConfig, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        keys = [ApiKey(item.key.encode(), item.models, item.mcp_servers) for item in config.api_keys]
        keys += [ApiKey(k.strip().encode(), ("*",)) for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
        self._keys = tuple(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key a request presents, or a 401. Every key is compared, so timing says nothing."""
        presented = _bearer(authorization).encode()
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(key.secret, presented):
                found = key
        if found is None:
            raise Unauthenticated("Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.")
        return found


def check_model_allowed(key: ApiKey | None, model: str) -> None:
    if key is not None and not key.allows(model):
        raise ModelNotAllowed(model)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
