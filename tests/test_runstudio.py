"""`manage.py runstudio` from nothing: migrates, creates the admin, serves, stops on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.support.processes import (
    ROOT,
    child_pids,
    free_port,
    is_running,
    port_is_closed,
    wait_for,
    wait_http,
    worker_env,
)

pytestmark = pytest.mark.modes


def start_studio(tmp_path, port: int, *extra: str, env: dict | None = None) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return subprocess.Popen(
        [sys.executable, "manage.py", "runstudio", "--port", str(port), *extra], cwd=ROOT,
        env={**base, "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def read_until(process: subprocess.Popen, pattern: str, timeout: float = 90) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} never printed; output was:\n{''.join(seen)}")


def login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(f"{base}/accounts/login/", data={"username": username, "password": password,
                                                             "csrfmiddlewaretoken": csrf},
                            headers={"Referer": f"{base}/accounts/login/"}, timeout=10)
    assert response.url == f"{base}/", response.text[:500]
    return session


def stop_like_ctrl_c(process: subprocess.Popen) -> int:
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends to the whole group
    return process.wait(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_runstudio_serves_the_studio_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env, extra = {}, ()
    if not settings.STUDIO_EMBEDDED:
        env, extra = worker_env(), ("--with-workers",)
        # A database of its own, named after this run's test database (two runs never share it).
        env["DATABASE_URL"] += "_runstudio"
        _recreate_database(env["DATABASE_URL"])
    process = start_studio(tmp_path, port, *extra, env=env)
    try:
        password = read_until(process, r"Created admin user 'admin' with password: (\S+)").group(1)
        health = wait_http(f"{base}/health", status=200, timeout=90)
        assert health.json() == {"status": "ok", "failing": []}  # details are for staff

        anonymous = requests.get(f"{base}/", allow_redirects=False, timeout=10)
        assert anonymous.status_code == 302 and anonymous.headers["Location"] == "/accounts/login/?next=/"

        session = login(base, "admin", password)
        staff_health = session.get(f"{base}/health", timeout=10).json()
        assert staff_health["mode"] == ("embedded" if settings.STUDIO_EMBEDDED else "services")
        home = session.get(f"{base}/", timeout=10).text
        for href in ("/video-generation/", "/realtime/", "/gallery/"):
            assert f'href="{href}"' in home
        css = session.get(f"{base}/static/studio/studio.css", timeout=10)
        assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]
        docs = requests.get(f"{base}/api/docs/", timeout=10)
        assert docs.status_code == 200
    finally:
        code = stop_like_ctrl_c(process)
        if "DATABASE_URL" in env:
            _recreate_database(env["DATABASE_URL"], create=False)
    assert code == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health", timeout=2)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def child_running(parent: int, *words: str) -> int | None:
    """The pid of ``parent``'s live child whose command line has ``words`` in a row."""
    for pid in child_pids(parent):
        argv = cmdline(pid)
        if any(argv[i:i + len(words)] == list(words) for i in range(len(argv))):
            return pid
    return None


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_with_workers_a_worker_that_dies_is_started_again_and_beat_sweeps(tmp_path):
    if settings.STUDIO_EMBEDDED:
        pytest.skip("--with-workers is the services mode's")
    port = free_port()
    env = {**worker_env(), "STUDIO_JOB_SWEEP_S": "1", "STUDIO_WORKER_HEARTBEAT_S": "1",
           "STUDIO_ADMIN_PASSWORD": "restart-me-42"}
    env["DATABASE_URL"] += "_runstudio_restart"
    _recreate_database(env["DATABASE_URL"])
    process = start_studio(tmp_path, port, "--with-workers", env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", status=200, timeout=90)
        read_until(process, r"Sending due task sweep-jobs \(videogen.sweep_jobs\)")  # celery beat runs
        assert child_running(process.pid, "beat") is not None
        worker = wait_for(lambda: child_running(process.pid, "-Q", "default"), 30, "the default worker")
        os.kill(worker, signal.SIGKILL)
        read_until(process, r"worker exited with code -9; starting it again in 1 s")
        again = wait_for(lambda: child_running(process.pid, "-Q", "default"), 30, "the worker to start again")
        assert again != worker
        assert wait_http(f"http://127.0.0.1:{port}/health", status=200, timeout=60).json()["status"] == "ok"
        assert process.poll() is None  # the studio kept running
    finally:
        code = stop_like_ctrl_c(process)
        _recreate_database(env["DATABASE_URL"], create=False)
    assert code == 0


def test_runstudio_creates_the_admin_once_and_takes_the_password_from_env(tmp_path):
    port = free_port()
    env = {"STUDIO_ADMIN_PASSWORD": "correct-horse-42", "STUDIO_ADMIN_USERNAME": "boss"}
    process = start_studio(tmp_path, port, env=env)
    try:
        read_until(process, r"Created admin user 'boss' with the password from STUDIO_ADMIN_PASSWORD")
        wait_http(f"http://127.0.0.1:{port}/health", status=200)
        login(f"http://127.0.0.1:{port}", "boss", "correct-horse-42")
    finally:
        assert stop_like_ctrl_c(process) == 0
    again = start_studio(tmp_path, port, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", status=200)
    finally:
        stop_like_ctrl_c(again)
    assert "Created admin" not in again.stdout.read()


def test_runstudio_refuses_workers_without_redis(tmp_path):
    if not settings.STUDIO_EMBEDDED:
        pytest.skip("the embedded mode's refusal")
    result = subprocess.run([sys.executable, "manage.py", "runstudio", "--with-workers"], cwd=ROOT,
                            env={**os.environ, "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--with-workers needs REDIS_URL" in result.stderr


def _recreate_database(url: str, *, create: bool = True) -> None:
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(host=parts.hostname, port=parts.port, user=parts.username, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def test_a_long_generation_does_not_hold_up_other_requests(tmp_path):
    """Sync views run one thread per request under daphne: health answers mid-generation."""
    import threading

    if not settings.STUDIO_EMBEDDED:
        pytest.skip("runs the embedded studio; once is enough")

    from tests.fakes.fal import FakeFal

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeFal() as fal:
        fal.processing_time = 8
        process = start_studio(tmp_path, port, env={**fal.settings(), "STUDIO_ADMIN_PASSWORD": "patient-42"})
        try:
            wait_http(f"{base}/health", status=200)
            session = login(base, "admin", "patient-42")
            csrf = session.cookies["csrftoken"]
            result = {}

            def generate() -> None:
                result["response"] = session.post(
                    f"{base}/api/videos/generate", json={"model": "fal-ai/veo3.1/fast", "prompt": "slow"},
                    headers={"X-CSRFToken": csrf, "Referer": f"{base}/"}, timeout=60)

            worker = threading.Thread(target=generate)
            worker.start()
            wait_for_submit = time.monotonic() + 10
            while not fal.requests and time.monotonic() < wait_for_submit:
                time.sleep(0.05)
            assert fal.requests, "the generation never reached fal"
            assert requests.get(f"{base}/health", timeout=5).status_code == 200
            assert session.get(f"{base}/gallery/", timeout=5).status_code == 200
            assert worker.is_alive(), "the generation should still be running"
            worker.join(60)
            assert result["response"].status_code == 200
        finally:
            stop_like_ctrl_c(process)


def test_runstudio_fails_loudly_when_the_port_is_taken(tmp_path):
    import socket

    if not settings.STUDIO_EMBEDDED:
        pytest.skip("runs the embedded studio; once is enough")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_studio(tmp_path, port)
        output, _ = process.communicate(timeout=90)
    assert process.returncode != 0
    assert "web exited with code" in output
    assert "Address already in use" in output


def test_it_names_a_bad_setting_in_one_line_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "runstudio"], cwd=ROOT,
                            env={**os.environ, "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": str(tmp_path),
                                 "STUDIO_PORT": "eighty"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "STUDIO_PORT" in lines[0] and "'eighty'" in lines[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_it_takes_daphne_down_when_it_is_killed_and_starts_again_on_the_same_port(tmp_path):
    if not settings.STUDIO_EMBEDDED:
        pytest.skip("runs the embedded studio; once is enough")
    port = free_port()
    process = start_studio(tmp_path, port)
    again = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health", status=200)
        daphne = child_pids(process.pid)
        assert daphne, "runstudio has no child process"
        process.kill()  # SIGKILL: no cleanup code runs in runstudio
        process.wait(timeout=10)
        wait_for(lambda: not any(is_running(pid) for pid in daphne), 10, "daphne to die with runstudio")
        wait_for(lambda: port_is_closed(port), 5, f"port {port} to be free")

        again = start_studio(tmp_path, port)
        assert wait_http(f"http://127.0.0.1:{port}/health", status=200).json()["status"] == "ok"
    finally:
        for started in (process, again):
            if started is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started.pid, signal.SIGKILL)  # whatever is left of the group
                started.wait(timeout=10)
