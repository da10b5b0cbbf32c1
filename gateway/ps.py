"""`toolwire ps`: the llama-servers a running gateway launched, from its GET /health/models."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from .ops.config import GatewayConfig

_COLUMNS = ("BACKEND", "MODEL", "STATE", "PORT", "PID", "MEMORY", "IDLE", "IN FLIGHT", "LOADS", "RESTARTS")


def gateway_url(config: GatewayConfig) -> str:
    host = config.listen.host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: loopback reaches it
        host = "127.0.0.1"
    return f"http://{host}:{config.listen.port}"


def run_ps(base_url: str, out: TextIO = sys.stdout) -> int:
    url = base_url.rstrip("/").removesuffix("/v1") + "/health/models"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            models = json.load(response)["models"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
        print(f"toolwire ps: no gateway answered at {url}: {error}", file=sys.stderr)
        return 1
    rows = [_COLUMNS, *(_row(model) for model in models)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
    if not models:
        print("(no launched models: no backend in the config has a `launch:` block)", file=out)
    for model in models:
        if model.get("error"):
            print(f"{model['backend']}: {model['error']}", file=out)
    return 0


def _row(model: dict[str, Any]) -> tuple[str, ...]:
    name = str(model["model"])
    return (
        str(model["backend"]),
        Path(name).name if "/" in name else name,
        str(model["state"]),
        _or_dash(model.get("port")),
        _or_dash(model.get("pid")),
        "-" if model.get("rss_bytes") is None else f"{model['rss_bytes'] / 2**20:.0f} MiB",
        "-" if model.get("idle_seconds") is None else _duration(model["idle_seconds"]),
        str(model.get("in_flight", 0)),
        str(model.get("loads", 0)),
        str(model.get("restarts", 0)),
    )


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
