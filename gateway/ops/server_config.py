"""The gateway's own sections: where it listens, API keys, limits, the Responses store, the router's
retries and shared state, CORS and debugging."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .config_section import Section


class ListenConfig(Section):
    host: str = "127.0.0.1"  # loopback by default: exposing the gateway must be a decision
    port: int = Field(default=8000, ge=1, le=65535)


class ResponsesConfig(Section):
    """Where `/v1/responses` keeps stored responses (for `previous_response_id`)."""

    store: Literal["sqlite", "redis"] = "sqlite"
    # The embedded store's file; relative paths (the default too) resolve against the config file's folder.
    sqlite_path: Path = Field(default=Path("toolwire-responses.sqlite3"), validate_default=True)
    # A Redis server shared by several gateway replicas, e.g. redis://127.0.0.1:6379/0.
    redis_url: str | None = None
    max_responses: int = Field(default=10_000, gt=0)  # oldest evicted beyond this
    max_age_hours: float = Field(default=720, gt=0)  # and after this long

    @field_validator("sqlite_path", mode="before")
    @classmethod
    def _resolve_store_path(cls, value: Any, info: ValidationInfo) -> Any:
        base_dir = (info.context or {}).get("base_dir") or Path.cwd()
        return (Path(base_dir) / Path(str(value)).expanduser()).resolve()

    @model_validator(mode="after")
    def _redis_needs_url(self) -> ResponsesConfig:
        if self.store == "redis" and not self.redis_url:
            raise ValueError("redis_url: required when store is 'redis'")
        return self


class ApiKeyConfig(Section):
    key: str = Field(min_length=1)
    models: tuple[str, ...] = ("*",)  # public model names (globs allowed) this key may use
    requests_per_minute: int | None = Field(default=None, gt=0)  # beyond it: 429
    tokens_per_minute: int | None = Field(default=None, gt=0)  # prompt + completion tokens
    mcp_servers: tuple[str, ...] = ("*",)  # labels (globs allowed) of the declared MCP servers it may use


class AuthConfig(Section):
    """Gateway API keys (bearer). With none configured, the gateway is open."""

    api_keys: tuple[ApiKeyConfig, ...] = ()

    @field_validator("api_keys", mode="before")
    @classmethod
    def _drop_empty(cls, value: Any) -> Any:
        # `key: ${TOOLWIRE_KEY:-}` with the variable unset means "no such key".
        if isinstance(value, list):
            return [item for item in value if not (isinstance(item, dict) and not item.get("key"))]
        return value


class LimitsConfig(Section):
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)  # larger bodies get 413
    request_timeout: float = Field(default=600.0, gt=0)  # a whole request, stream included
    shutdown_grace: float = Field(default=30.0, ge=0)  # SIGTERM: time for streams in flight to end
    max_loaded_models: int | None = Field(default=None, gt=0)  # launched servers at once; LRU idle one unloads
    max_output_chars: int = Field(default=8 * 1024 * 1024, gt=0)  # a non-streamed answer's text, at most


class BreakerConfig(Section):
    failures: int = Field(default=3, gt=0)  # consecutive failures that take a backend out
    cooldown: float = Field(default=10.0, gt=0)  # seconds out before one probe request is let through


class RetryConfig(Section):
    attempts: int = Field(default=3, gt=0)  # backends tried per request before its first byte
    backoff: float = Field(default=0.05, ge=0)  # seconds before the 2nd attempt, doubling after
    max_backoff: float = Field(default=1.0, ge=0)


class RouterConfig(Section):
    """Several backends per model: retries, circuit breaking, and state shared by replicas."""

    # With a Redis URL, breaker state, per-key rate limits and the affinity map are shared by
    # every gateway replica using it; without one they live in the process.
    redis_url: str | None = None
    breaker: BreakerConfig = BreakerConfig()
    retry: RetryConfig = RetryConfig()
    affinity_ttl: float = Field(default=3600.0, gt=0)  # seconds a session stays with its backend

    @field_validator("redis_url")
    @classmethod
    def _empty_url_is_none(cls, url: str | None) -> str | None:
        return url or None  # `${REDIS_URL:-}` unset means in-process state


class CorsConfig(Section):
    allow_origins: tuple[str, ...] = ()  # empty: no CORS headers at all


class DebugConfig(Section):
    log_prompts: bool = False  # log each request's rendered prompt and the model's raw output
    render_endpoint: bool = False  # POST /v1/debug/render: the prompt a request would send
