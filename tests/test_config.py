"""The routing-table config: loading, defaults, interpolation, and errors that say where and what."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ops.config import (
    ConfigError,
    GatewayConfig,
    default_config_path,
    load_config,
    parse_config,
)
from tests.support.config_lookup import backend_named, route_named

MINIMAL = """\
backends:
  - name: local-llama
    type: llamacpp
    url: http://127.0.0.1:8080
models:
  - name: gemma-3-270m
    backend: local-llama
"""


def write(folder: Path, text: str, name: str = "toolwire.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=environ or {})
    return str(raised.value)


def parse_error(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, source="toolwire.yaml", environ=environ or {})
    return str(raised.value)


def test_full_config(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    template = write(tmp_path / "templates", "{{ messages }}", "gemma.jinja")
    path = write(
        tmp_path,
        """\
listen:
  host: 0.0.0.0
  port: 9000
log_level: debug
backends:
  - name: local-llama
    type: llamacpp
    url: http://127.0.0.1:8080/
    api_key: ${LLAMA_API_KEY:-}
    timeouts: {connect: 2, read: 60.5}
    max_connections: 8
  - name: gpu
    type: vllm
    url: https://gpu.internal:8000/v1
    api_key: ${VLLM_KEY}
models:
  - name: gemma-3-270m
    backend: local-llama
    upstream_model: gemma3
    tool_format: hermes
    chat_template: templates/gemma.jinja
    bos_token: "<bos>"
    eos_token: "<eos>"
    stop: ["<end_of_turn>"]
    defaults: {temperature: 0.2, top_k: 40, seed: 7, max_tokens: 512}
    context_size: 4096
  - name: qwen
    backend: gpu
""",
    )
    config = load_config(path, environ={"VLLM_KEY": "sk-#secret:1"})

    assert (config.listen.host, config.listen.port, config.log_level) == ("0.0.0.0", 9000, "debug")
    local, gpu = config.backends
    assert local.url == "http://127.0.0.1:8080"  # trailing slash stripped
    assert local.api_key is None  # empty default means no key
    assert (local.timeouts.connect, local.timeouts.read, local.max_connections) == (2, 60.5, 8)
    assert (gpu.type, gpu.url, gpu.api_key) == ("vllm", "https://gpu.internal:8000/v1", "sk-#secret:1")
    assert backend_named(config, "gpu") is gpu

    gemma, qwen = config.models
    assert gemma.upstream_model == "gemma3"
    assert gemma.tool_format == "hermes"
    assert gemma.chat_template == template.resolve()
    assert (gemma.bos_token, gemma.eos_token, gemma.stop) == ("<bos>", "<eos>", ("<end_of_turn>",))
    sampling = gemma.defaults.model_dump(exclude_none=True)
    assert sampling == {"temperature": 0.2, "top_k": 40, "seed": 7, "max_tokens": 512}
    assert gemma.context_size == 4096
    assert route_named(config, "qwen") is qwen


def test_defaults_applied() -> None:
    config = parse_config(MINIMAL, environ={})

    assert (config.listen.host, config.listen.port, config.log_level) == ("127.0.0.1", 8000, "info")
    backend = backend_named(config, "local-llama")
    assert (backend.api_key, backend.timeouts.connect, backend.timeouts.read) == (None, 5, 300)
    assert backend.max_connections == 64
    (route,) = config.models
    assert route.upstream_model == "gemma-3-270m"  # defaults to the public name
    assert (route.tool_format, route.chat_template) == ("default", "backend")
    assert (route.bos_token, route.eos_token, route.stop, route.context_size) == (None, None, (), None)
    assert route.defaults.model_dump(exclude_none=True) == {}


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL, environ={})
    with pytest.raises(ValueError):
        config.log_level = "debug"  # type: ignore[misc]
    with pytest.raises(KeyError):
        backend_named(config, "nope")


def test_env_interpolation() -> None:
    text = MINIMAL.replace("http://127.0.0.1:8080", "http://${HOST}:${PORT:-8080}/${MISSING:-v1}") + (
        "    upstream_model: '${UPSTREAM:-a:b # not a comment}'\n"
        "    eos_token: ${EOS}\n"
        "    stop: ['$$HOME', 'cost: $$${PRICE}', 'plain $ sign']\n"
        "listen:\n  port: ${GATEWAY_PORT}\n"
    )
    environ = {"HOST": "gpu.lan", "PRICE": "5", "GATEWAY_PORT": "9100", "EOS": "# not: yaml"}
    config = parse_config(text, environ=environ)

    assert backend_named(config, "local-llama").url == "http://gpu.lan:8080/v1"
    (route,) = config.models
    assert route.upstream_model == "a:b # not a comment"
    assert route.eos_token == "# not: yaml"  # substituted after parsing, so never re-read as YAML
    assert route.stop == ("$HOME", "cost: $5", "plain $ sign")
    assert config.listen.port == 9100


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLWIRE_TEST_UPSTREAM", "from-os")
    config = parse_config(MINIMAL + "    upstream_model: ${TOOLWIRE_TEST_UPSTREAM}\n")
    assert config.models[0].upstream_model == "from-os"


def test_missing_env_var_names_key() -> None:
    message = parse_error(MINIMAL.replace("http://127.0.0.1:8080", "http://${LLAMA_HOST}:8080"))
    assert message == "toolwire.yaml: backends[0].url: environment variable 'LLAMA_HOST' is not set and has no default"


def test_malformed_placeholder() -> None:
    message = parse_error(MINIMAL + "    stop: ['ok', '${NOT CLOSED']\n")
    assert message.startswith("toolwire.yaml: models[0].stop[1]: malformed placeholder")


def test_unknown_backend_reference() -> None:
    message = parse_error(MINIMAL.replace("backend: local-llama", "backend: x"))
    assert message == "toolwire.yaml: models[0].backend: unknown backend 'x' (defined: local-llama)"


def test_duplicate_names() -> None:
    text = MINIMAL + MINIMAL.split("models:\n")[1] + "  - name: other\n    backend: local-llama\n"
    text = text.replace("models:", "  - name: local-llama\n    type: ollama\n    url: http://h:11434\nmodels:")
    message = parse_error(text)
    assert message.splitlines() == [
        "toolwire.yaml: backends[1].name: duplicate name 'local-llama' (also backends[0])",
        "toolwire.yaml: models[1].name: duplicate name 'gemma-3-270m' (also models[0])",
    ]


def test_bad_types_all_reported() -> None:
    text = MINIMAL.replace("type: llamacpp", "type: llamacpp\n    timeouts: {read: 0}") + "listen: {port: eighty}\n"
    text = text.replace("backend: local-llama", "backend: local-llama\n    stop: 5")
    lines = parse_error(text).splitlines()
    assert "toolwire.yaml: backends[0].timeouts.read: Input should be greater than 0" in lines
    assert any(line.startswith("toolwire.yaml: listen.port: Input should be a valid integer") for line in lines)
    assert any(line.startswith("toolwire.yaml: models[0].stop: ") for line in lines)
    assert len(lines) == 3


def test_bad_backend_type_and_missing_key() -> None:
    text = MINIMAL.replace("type: llamacpp", "type: llama").replace("    backend: local-llama\n", "")
    lines = parse_error(text).splitlines()
    assert lines[0].startswith("toolwire.yaml: backends[0].type: Input should be 'llamacpp', 'vllm'")
    assert lines[1] == "toolwire.yaml: models[0].backend: required key is missing"


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://host", "http://", "http://host:port"])
def test_bad_url(url: str) -> None:
    message = parse_error(MINIMAL.replace("http://127.0.0.1:8080", url))
    assert message.startswith("toolwire.yaml: backends[0].url: ")
    assert url in message


def test_unknown_key_rejected() -> None:
    message = parse_error(MINIMAL.replace("type: llamacpp", "type: llamacpp\n    timeouts: {raed: 10}"))
    assert message == "toolwire.yaml: backends[0].timeouts.raed: unknown key (allowed: connect, read)"
    message = parse_error(MINIMAL + "log_levle: debug\n")
    assert message == "toolwire.yaml: log_levle: unknown key (allowed: listen, responses, auth, limits, cors, debug, mcp, log_level, backends, models, router)"
    message = parse_error(MINIMAL + "    defaults: {temprature: 0.5}\n")
    assert message.startswith("toolwire.yaml: models[0].defaults.temprature: unknown key (allowed: temperature, ")


def test_template_path_relative_to_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    template = write(config_dir, "{{ bos_token }}", "chat.jinja")
    path = write(config_dir, MINIMAL + "    chat_template: chat.jinja\n")
    monkeypatch.chdir(tmp_path)  # the cwd is not the config folder: resolution must not use it

    route = load_config(Path("config/toolwire.yaml"), environ={}).models[0]
    assert route.chat_template == template.resolve()
    assert isinstance(route.chat_template, Path) and route.chat_template.is_absolute()

    absolute = write(config_dir, MINIMAL + f"    chat_template: {template}\n", "absolute.yaml")
    assert load_config(absolute, environ={}).models[0].chat_template == template.resolve()
    assert path.exists()


def test_responses_store_relative_to_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    monkeypatch.chdir(tmp_path)  # the cwd is not the config folder: the store must not land in it
    default = write(config_dir, MINIMAL)
    assert load_config(default, environ={}).responses.sqlite_path == config_dir.resolve() / "toolwire-responses.sqlite3"
    empty_section = write(config_dir, MINIMAL + "responses: {max_responses: 5}\n", "empty.yaml")
    assert load_config(empty_section, environ={}).responses.sqlite_path == config_dir.resolve() / "toolwire-responses.sqlite3"
    relative = write(config_dir, MINIMAL + "responses: {sqlite_path: data/store.db}\n", "relative.yaml")
    assert load_config(relative, environ={}).responses.sqlite_path == config_dir.resolve() / "data" / "store.db"
    absolute = write(config_dir, MINIMAL + f"responses: {{sqlite_path: '{tmp_path / 'abs.db'}'}}\n", "absolute.yaml")
    assert load_config(absolute, environ={}).responses.sqlite_path == (tmp_path / "abs.db").resolve()


async def test_default_store_file_is_created_beside_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.core.response_store import open_store

    config_dir = tmp_path / "config"
    config_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    settings = load_config(write(config_dir, MINIMAL), environ={}).responses
    store = open_store(redis_url=None, sqlite_path=settings.sqlite_path, max_responses=10, max_age_seconds=60)
    await store.put({"id": "resp_1", "output": []}, [])
    await store.close()
    assert (config_dir / "toolwire-responses.sqlite3").is_file()
    assert not (tmp_path / "toolwire-responses.sqlite3").exists()


def test_missing_template_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    chat_template: templates/missing.jinja\n")
    message = load_error(path)
    expected = tmp_path.resolve() / "templates" / "missing.jinja"
    assert message == f"{path}: models[0].chat_template: template file not found: {expected}"


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    stop: [unclosed\n")
    message = load_error(path)
    assert message.startswith(f"{path}: line ")
    assert "line 9" in message or "line 10" in message  # PyYAML reports where it noticed the problem
    message = parse_error("backends:\n  - name: a\n   type: b\n")
    assert message.startswith("toolwire.yaml: line 3: ")


def test_top_level_must_be_mapping() -> None:
    assert parse_error("") == "toolwire.yaml: expected a mapping of settings at the top level, got NoneType"
    assert parse_error("- a\n").endswith("got list")


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert load_error(path) == f"{path}: file not found"


def test_default_config_path() -> None:
    assert default_config_path({}) == Path("config/toolwire.yaml")
    assert default_config_path({"TOOLWIRE_CONFIG": "/etc/toolwire.yaml"}) == Path("/etc/toolwire.yaml")


def test_default_config_path_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLWIRE_CONFIG", "/srv/tw.yaml")
    assert default_config_path() == Path("/srv/tw.yaml")


def test_models_can_be_built_directly() -> None:
    backends = [{"name": "b", "type": "ollama", "url": "http://h:11434"}]
    config = GatewayConfig.model_validate({"backends": backends, "models": [{"name": "m", "backend": "b"}]})
    assert route_named(config, "m").upstream_model == "m"
