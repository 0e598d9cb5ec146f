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
    assert set(services) == {"postgres", "redis", "web", "worker", "gpu-worker", "beat"}
    for name in ("postgres", "redis", "web", "worker", "gpu-worker"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker", "gpu-worker", "beat"):
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


def test_the_gpu_worker_image_is_built_with_the_gpu_extras():
    services = compose_config()["services"]
    assert services["gpu-worker"]["build"]["args"]["INSTALL_GPU_EXTRAS"] == "true"
    assert services["gpu-worker"]["image"] != services["web"]["image"]
    assert "INSTALL_GPU_EXTRAS" not in str(services["web"].get("build", ""))  # the CPU image


def dockerfile_stages() -> tuple[dict[str, str], list[str], set[str]]:
    """(stage name -> its FROM image, every FROM's image, global ARG names) of the Dockerfile."""
    import re

    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()
             and not line.strip().startswith("#")]
    first_from = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    global_args = {re.split(r"[= ]", line[4:].strip())[0] for line in lines[:first_from] if line.startswith("ARG ")}
    stages, images = {}, []
    for line in lines:
        match = re.fullmatch(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line)
        if match:
            images.append(match.group(1))
            if match.group(2):
                stages[match.group(2)] = match.group(1)
    return stages, images, global_args


def test_the_dockerfile_stages_fit_together():
    """No engine runs here: the file's structure is checked instead (each image the final
    stage can start from exists, copies name real stages, FROM uses only global ARGs)."""
    import re

    stages, images, global_args = dockerfile_stages()
    text = (ROOT / "Dockerfile").read_text()
    final = images[-1]
    assert final == "base-${INSTALL_GPU_EXTRAS}"
    assert {"base-true", "base-false", "gpu-wheels"} <= set(stages)
    for image in images:
        for arg in re.findall(r"\$\{(\w+)\}", image):
            assert arg in global_args, f"FROM {image} uses {arg}, which is not declared before the first FROM"
    for source in re.findall(r"COPY --from=(\S+)", text):
        assert source in stages, source
    assert stages["gpu-wheels"] == "${CUDA_DEVEL_IMAGE}" and "devel" in text.split("CUDA_DEVEL_IMAGE=")[1].split()[0]
    # flash-attn is compiled against the image's own torch CUDA build
    assert "--no-build-isolation" in text and 'pip install "torch==${TORCH_VERSION}" --index-url "https://download' \
        ".pytorch.org/whl/${TORCH_CUDA}\"" in text
    assert text.count('"torch==${TORCH_VERSION}"') == 3  # the wheel builder, the GPU and the CPU base
    assert "|| echo" not in text  # a failed GPU build fails the image, not silently


def test_beat_runs_once_beside_the_workers_and_restarts_with_them():
    """celery beat sends the job sweep (videogen.sweep_jobs): one service, the studio's image,
    restarted when it dies, with the settings of every other studio process."""
    services = compose_config()["services"]
    beat = services["beat"]
    assert beat["command"][:4] == ["celery", "-A", "studio", "beat"]
    assert beat["image"] == services["web"]["image"] and beat["restart"] == "unless-stopped"
    assert "replicas" not in str(beat.get("deploy", ""))


def test_the_database_connections_fit_under_postgres_max_connections():
    """Every process's pool and task threads together stay under PostgreSQL's default 100
    (the sizing rule of docs/deployment.md: web pool + worker threads + main processes)."""
    defaults = dict(line.split("=", 1) for line in (ROOT / ".env.default").read_text().splitlines()
                    if line and not line.startswith("#"))
    services = compose_config()["services"]
    web = int(defaults["DATABASE_POOL_SIZE"])
    worker = int(defaults["STUDIO_WORKER_CONCURRENCY"]) + 1  # the children, and the main process's sweep
    gpu = int(services["gpu-worker"]["command"][services["gpu-worker"]["command"].index("-c") + 1]) + 1
    assert "-c" not in services["worker"]["command"]  # STUDIO_WORKER_CONCURRENCY sizes it
    assert web + worker + gpu < 100 - 3  # PostgreSQL keeps 3 for superusers
