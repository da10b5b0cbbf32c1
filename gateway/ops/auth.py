"""Gateway API keys: bearer tokens compared in constant time, each allowed a set of models."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.faults import ModelNotAllowed, Unauthenticated
from .server_config import AuthConfig

KEYS_ENV = "TOOLWIRE_API_KEYS"  # comma-separated keys that may use every model


@dataclass(frozen=True, slots=True)
class ApiKey:
    secret: bytes
    models: tuple[str, ...]
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    mcp_servers: tuple[str, ...] = ("*",)

    @property
    def key_id(self) -> str:
        """A name for the key in shared state that does not reveal it."""
        return hashlib.sha256(self.secret).hexdigest()[:24]

    def allows(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    @property
    def owner(self) -> str:
        """Who owns what this key stores: a digest of the key, so the store never holds the key."""
        return hashlib.sha256(b"toolwire-owner:" + self.secret).hexdigest()[:32]

    def allows_mcp(self, label: str) -> bool:
        return any(fnmatch.fnmatchcase(label, pattern) for pattern in self.mcp_servers)


class KeyRing:
    def __init__(self, config: AuthConfig, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        keys = [
            ApiKey(item.key.encode(), item.models, item.requests_per_minute, item.tokens_per_minute,
                   item.mcp_servers)
            for item in config.api_keys
        ]
        keys += [ApiKey(k.strip().encode(), ("*",)) for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
        self._keys = tuple(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> ApiKey:
        """The key a request presents (a bearer token or an `x-api-key` header), or a 401.
        Every key is compared with every presented value, so timing says nothing."""
        presented = [value.encode() for value in (_bearer(authorization), (api_key or "").strip()) if value]
        found: ApiKey | None = None
        for key in self._keys:
            for value in presented:
                if hmac.compare_digest(key.secret, value):
                    found = key
        if found is None:
            raise Unauthenticated(
                "Incorrect API key provided. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
            )
        return found


def owner_of(key: ApiKey | None) -> str:
    """The store's owner tag for a request: "" when the gateway runs without keys."""
    return "" if key is None else key.owner


def check_model_allowed(key: ApiKey | None, model: str) -> None:
    if key is not None and not key.allows(model):
        raise ModelNotAllowed(model)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
