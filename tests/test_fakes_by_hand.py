"""A person without keys: start the fakes from the command line, paste their .env lines,
and the studio makes videos with them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests
from django.conf import settings

from tests.support.processes import ROOT, free_port, wait_http
from tests.test_runstudio import login, start_studio, stop_like_ctrl_c

pytestmark = pytest.mark.skipif(not settings.STUDIO_EMBEDDED, reason="runs the embedded studio; once is enough")


def start_fake(module: str, *args: str) -> tuple[subprocess.Popen, dict[str, str]]:
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: dict[str, str] = {}
    for line in process.stdout:
        if line.startswith("#"):
            continue
        key, _, value = line.strip().partition("=")
        lines[key] = value
        if module.endswith("fal") and "FAL_REALTIME_URL" in lines:
            break
        if module.endswith("tenstorrent") and "CLOUD_VIDEO_GENERATION_AUTH_TOKEN" in lines:
            break
    return process, lines


def test_the_fakes_run_by_hand_stand_in_for_fal_and_tenstorrent(tmp_path):
    fal, fal_env = start_fake("tests.fakes.fal", "--port", str(free_port()), "--ws-port", str(free_port()),
                              "--processing-time", "0.1")
    tt, tt_env = start_fake("tests.fakes.tenstorrent", "--port", str(free_port()), "--mode", "media")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**fal_env, **tt_env}.items()))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    studio = start_studio(tmp_path / "data", port, env={"STUDIO_ENV_FILE": str(env_file),
                                                        "STUDIO_ADMIN_PASSWORD": "by-hand-42"})
    try:
        wait_http(f"{base}/health", status=200)
        session = login(base, "admin", "by-hand-42")
        headers = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{base}/"}
        for model in ("fal-ai/veo3.1/fast", "tenstorrent/wan2.2-t2v"):
            response = session.post(f"{base}/api/videos/generate", json={"model": model, "prompt": "by hand"},
                                    headers=headers, timeout=60)
            assert response.status_code == 200, response.text[:300]
            assert response.content[4:8] == b"ftyp"
        models = session.get(f"{base}/api/models/", timeout=10).json()["models"]
        assert all(m["configured"] for m in models)
    finally:
        stop_like_ctrl_c(studio)
        for fake in (fal, tt):
            fake.send_signal(signal.SIGINT)
            assert fake.wait(timeout=10) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(fal_env["FAL_QUEUE_URL"], timeout=2)


@pytest.mark.parametrize("module", ["tests.fakes.fal", "tests.fakes.tenstorrent"])
def test_it_says_in_one_line_that_pyav_is_missing_and_exits(tmp_path, module):
    # An ``av`` that cannot be imported, found before the installed one.
    (tmp_path / "av.py").write_text("raise ImportError(\"No module named 'av'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    port = free_port()
    try:
        result = subprocess.run([sys.executable, "-m", module, "--port", str(port)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{module} kept running without PyAV instead of stopping with a message")
    assert result.returncode != 0
    assert result.stdout == ""  # no .env lines: nothing was started
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PyAV" in lines[0] and "'av'" in lines[0]
    assert "bash scripts/bootstrap" in lines[0]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
