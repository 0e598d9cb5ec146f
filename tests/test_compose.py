"""The compose file is valid and describes the production layout (no engine runs here)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.support.processes import ROOT


def compose_config() -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    checked = subprocess.run([binary, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    rendered = subprocess.run([binary, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "FAL_KEY": "from-dotenv"})
    return yaml.safe_load(rendered.stdout)


def test_docker_compose_config_passes_and_has_every_service():
    config = compose_config()
    services = config["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "gpu-worker"}
    for name in ("postgres", "redis", "web", "worker", "gpu-worker"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker", "gpu-worker"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["FAL_KEY"] == "from-dotenv"
        volumes = str(services[name]["volumes"])
        assert "media" in volumes and "models" in volumes


def test_the_gpu_worker_takes_one_gpu_and_one_task_at_a_time():
    gpu = compose_config()["services"]["gpu-worker"]
    command = gpu["command"]
    assert command[command.index("-Q") + 1] == "gpu"
    assert command[command.index("-c") + 1] == "1"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_the_default_worker_and_web_share_one_image_built_from_the_dockerfile():
    services = compose_config()["services"]
    assert services["web"]["image"] == services["worker"]["image"]
    assert (ROOT / "Dockerfile").exists()
    assert services["worker"]["command"][services["worker"]["command"].index("-Q") + 1] == "default"
