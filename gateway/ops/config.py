"""The routing table: a YAML file, `${VAR}`-interpolated, validated into frozen pydantic models.

Every problem, from a missing file to a typo in a key, surfaces as one `ConfigError` whose lines
read `<file>: <key path>: <what is wrong>`, so the user can go straight to the line to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..core.decoding import ConstrainMode
from ..core.routing import TEMPLATE_FROM_BACKEND, is_glob
from .backend_config import BackendConfig
from .config_section import Section
from .config_text import ConfigError, format_errors, interpolate
from .mcp_config import McpConfig
from .server_config import (
    AuthConfig,
    CorsConfig,
    DebugConfig,
    LimitsConfig,
    ListenConfig,
    ResponsesConfig,
    RouterConfig,
)

DEFAULT_CONFIG_PATH = Path("config/toolwire.yaml")
CONFIG_ENV_VAR = "TOOLWIRE_CONFIG"
LogLevel = Literal["debug", "info", "warning", "error"]


class SamplingDefaults(Section):
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


class BackendRef(Section):
    """One of several backends serving a model: its name, its own name for the model, its weight."""

    name: str = Field(min_length=1)
    upstream_model: str | None = Field(default=None, min_length=1)  # default: the route's
    weight: int = Field(default=1, gt=0)  # for `balance: weighted`


BalanceStrategy = Literal["least_in_flight", "round_robin", "weighted", "lowest_latency", "affinity"]


class ModelRoute(Section):
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

class GatewayConfig(Section):
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
    data = interpolate(data, "", os.environ if environ is None else environ, source)
    try:
        return GatewayConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        raise ConfigError(format_errors(error, source, GatewayConfig)) from None

