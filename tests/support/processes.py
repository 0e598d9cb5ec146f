"""Starting and stopping real processes the tests need (workers, redis-server, the studio)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s (last error: {last!r})")


def stop(process: subprocess.Popen, timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on a free port (so a test may stop it); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        import pytest

        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        wait_for(lambda: redis.Redis(port=port, socket_connect_timeout=0.2).ping(), 10, "redis-server start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


def worker_env() -> dict[str, str]:
    """Environment for a worker process that shares this test run's Redis and test database."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    env = {"STUDIO_ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "studio.settings", "REDIS_URL": settings.REDIS_URL or "",
           "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX}
    if db["ENGINE"].endswith("postgresql"):
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        env["DATABASE_URL"] = f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return env


def broker_transport_options(key_prefix: str | None = None) -> dict:
    """The studio's broker transport options for ``REDIS_KEY_PREFIX=key_prefix`` (default: this
    process's): Celery keys and pub/sub channels start with ``<prefix>:celery:`` (studio/settings.py)."""
    from django.conf import settings

    options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    if key_prefix is not None:
        options["global_keyprefix"] = f"{key_prefix}:celery:"
    return options


def control_app(broker_url: str, key_prefix: str | None = None):
    """A bare Celery app on ``broker_url`` that sees what a studio with that REDIS_KEY_PREFIX
    sends (tasks, remote control); close it after use (it is a context manager)."""
    from celery import Celery

    return Celery("studio-tests", broker=broker_url, set_as_current=False,
                  broker_transport_options=broker_transport_options(key_prefix))


@contextlib.contextmanager
def celery_worker(env: dict[str, str], queues: str = "default,gpu", app: str = "tests.support.tasks",
                  name: str = "test") -> Iterator[subprocess.Popen]:
    """A real ``celery worker`` process on the given queues, up and consuming when yielded."""
    worker_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    hostname = f"{name}-{os.getpid()}-{free_port()}@localhost"
    log = tempfile.NamedTemporaryFile("w+", prefix="celery-", suffix=".log", delete=False)  # noqa: SIM115 - outlives this block
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-c", "1", "--pool", "solo",
         "-n", hostname, "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # The worker listens under its REDIS_KEY_PREFIX: ping it through the same one.
        with control_app(worker_env["REDIS_URL"], worker_env.get("REDIS_KEY_PREFIX")) as control_celery:
            control = control_celery.control
            try:
                wait_for(lambda: process.poll() is None and control.ping(destination=[hostname], timeout=0.5),
                         40, f"celery worker {hostname} to answer", interval=0.3)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n--- worker log ---\n{Path(log.name).read_text()[-3000:]}") from None
        yield process
    finally:
        stop(process)
        log.close()
        os.unlink(log.name)


def studio_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def wait_http(url: str, timeout: float = 60, status: int | None = None) -> requests.Response:
    def ready():
        response = requests.get(url, timeout=2, allow_redirects=False)
        return response if status is None or response.status_code == status else None

    return wait_for(ready, timeout, f"{url} to answer", interval=0.25)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc (Linux), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]  # the name in (...) may hold spaces
    return state, int(ppid)


def child_pids(pid: int) -> list[int]:
    """The live children of a process (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[1] == pid and stat[0] != "Z":
                children.append(int(entry.name))
    return children


def is_running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an orphan's zombie may never be reaped)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def port_is_closed(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on the port any more (a connection is refused)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
