"""Gateway API keys: bearer tokens compared in constant time, each allowed a set of models."""

from __future__ import annotations

import fnmatch
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .config import AuthConfig
from .errors import ApiError

KEYS_ENV = "TOOLWIRE_API_KEYS"  # comma-separated keys that may use every model


@dataclass(frozen=True, slots=True)
class ApiKey:
    secret: bytes
    models: tuple[str, ...]

    def allows(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class KeyRing:
    def __init__(self, config: AuthConfig, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        keys = [ApiKey(item.key.encode(), item.models) for item in config.api_keys]
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
            raise ApiError(
                401,
                "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        return found


def check_model_allowed(key: ApiKey | None, model: str) -> None:
    if key is not None and not key.allows(model):
        raise ApiError(403, f"This API key may not use the model '{model}'.", param="model", code="model_not_allowed")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
