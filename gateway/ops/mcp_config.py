"""The `mcp:` section: which MCP servers the gateway may run tools on, and the bounds on doing so.

A gateway that connects to whatever URL a request names is an SSRF hole, so servers are declared
here (an HTTP URL or a stdio command) and requests refer to them; `allow_any_url` opens it up for
deployments whose every client is trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .config_section import Section


def check_http_url(url: str) -> str:
    """An http(s) URL with a host, as given (MCP endpoints are exact paths: no slash is trimmed)."""
    parts = urlsplit(url)
    try:
        _ = parts.port
    except ValueError as error:
        raise ValueError(f"invalid URL {url!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    return url


class McpServerConfig(Section):
    """One MCP server: reached over streamable HTTP (`url`) or started as a stdio subprocess (`command`)."""

    label: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")  # what requests call it (`server_label`)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # sent on every HTTP request to it (a request's own headers add to these)
    command: tuple[str, ...] = ()  # argv of a stdio server, e.g. [python, -m, my_server]
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for the stdio process
    cwd: Path | None = None  # its working directory, relative to the config file

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        return None if url is None else check_http_url(url)

    @field_validator("cwd", mode="before")
    @classmethod
    def _resolve_cwd(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        base_dir = (info.context or {}).get("base_dir") or Path.cwd()
        return (Path(base_dir) / Path(os.fspath(value)).expanduser()).resolve()

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.url is None) == (not self.command):
            raise ValueError("give either url (streamable HTTP) or command (stdio), not both or neither")
        if self.command and self.headers:
            raise ValueError("headers: only for url servers; a stdio server takes env")
        return self


class McpConfig(Section):
    servers: tuple[McpServerConfig, ...] = ()
    # Let requests name any server_url, not only the declared ones: only where every client is trusted.
    allow_any_url: bool = False
    connect_timeout: float = Field(default=10.0, gt=0)  # seconds to connect and list a server's tools
    call_timeout: float = Field(default=60.0, gt=0)  # seconds one tool call may take
    max_result_bytes: int = Field(default=256 * 1024, gt=0)  # a larger tool result is an error for the model
    max_rounds: int = Field(default=8, ge=1)  # generations in one response; the last may not call tools

    @field_validator("servers")
    @classmethod
    def _unique_labels(cls, servers: tuple[McpServerConfig, ...]) -> tuple[McpServerConfig, ...]:
        seen: set[str] = set()
        for index, server in enumerate(servers):
            if server.label in seen:
                raise ValueError(f"[{index}].label: duplicate label {server.label!r}")
            seen.add(server.label)
        return servers

    def server(self, label: str) -> McpServerConfig | None:
        return next((server for server in self.servers if server.label == label), None)

    def server_at(self, url: str) -> McpServerConfig | None:
        return next((server for server in self.servers if server.url == url), None)
