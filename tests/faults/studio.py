"""A whole studio of a fault test's own, to break on purpose.

PostgreSQL and Redis of its own (tests/support/servers.py: stopped and started again by the
test, never the machine's shared ones), daphne (``python -m studio.serve``), Celery workers
and celery beat as real processes, and the fake fal of the test process (it records every
submission). The studio processes run with short sweep and lease settings (``FAST``) so a
fault is recovered from in seconds, as production recovers in a minute or two.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.fakes.fal import FakeFal
from tests.support.processes import ROOT, free_port, wait_for, wait_http
from tests.support.servers import PostgresServer, RedisServer

MODEL = "fal-ai/fast-animatediff/text-to-video"
PREFIX = "faults"

# The studio's settings for a fault test: sweep every second, a job whose row has not moved
# for 6 s counts as stalled, messages stranded unacknowledged come back after a minute.
FAST = {
    "STUDIO_JOB_SWEEP_S": "1",
    "STUDIO_JOB_LEASE_S": "6",
    "STUDIO_JOB_PENDING_LEASE_S": "6",
    "STUDIO_BROKER_VISIBILITY_TIMEOUT_S": "60",
    "VIDEO_POLL_INTERVAL": "0.2",
    "JOB_WEBHOOK_POLL_INTERVAL": "2",
    "STUDIO_WORKER_HEARTBEAT_S": "1",
    "STUDIO_MAX_UNFINISHED_GENERATIONS": "100000",
    "STUDIO_THROTTLE_GENERATION": "1000000/hour",
}


class GatedFal(FakeFal):
    """The fake fal, whose submit answers can be held: the request is recorded (fal has it and
    will bill it) and the answer waits until ``release()``, so a test can kill a worker
    exactly while it waits inside the paid call."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_first = 1_000_000  # submits answered at once; later ones wait for the gate
        self._gate = threading.Event()
        self._gate.set()
        self._answered = 0
        self._count_lock = threading.Lock()

    def hold_after(self, answered: int) -> None:
        """Answer ``answered`` submits at once, then hold the rest until ``release()``."""
        self.answer_first = answered
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def _submit(self, request):
        reply = super()._submit(request)
        with self._count_lock:
            self._answered += 1
            hold = self._answered > self.answer_first
        if hold:
            self._gate.wait(30)
        return reply

    def submissions(self) -> dict[str, int]:
        """How many times fal was sent each prompt."""
        counts: dict[str, int] = {}
        for record in list(self.requests.values()):
            prompt = record["input"].get("prompt", "")
            counts[prompt] = counts.get(prompt, 0) + 1
        return counts


class FaultStudio:
    """The studio under test (see the module docstring); a context manager."""

    def __init__(self, fal: FakeFal, *, max_connections: int = 100, persistent_redis: bool = False,
                 users: int = 1, env: dict[str, str] | None = None) -> None:
        self.fal = fal
        self.folder = Path(tempfile.mkdtemp(prefix="studio-faults-"))
        self.postgres = PostgresServer(max_connections)
        self.redis = RedisServer(persistent=persistent_redis)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.users = users
        self.tokens: list[str] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "studio.settings",
                    "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": str(self.folder / "data"),
                    "REDIS_URL": self.redis.url(), "DATABASE_URL": self.postgres.url("studio"),
                    "REDIS_KEY_PREFIX": PREFIX, "LOG_LEVEL": "INFO", "DJANGO_SECRET_KEY": "faults-" + "k" * 50,
                    "STUDIO_PUBLIC_URL": self.base, "PYTHONUNBUFFERED": "1", **fal.settings(), **FAST,
                    **(env or {})}
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list[Path] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FaultStudio:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self, workers: int = 1, threads: int = 4) -> None:
        self.postgres.start()
        self.postgres.sql('CREATE DATABASE "studio"')
        self.redis.start()
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v", "0"], env=self.env, cwd=ROOT, check=True)
        script = ("from django.contrib.auth import get_user_model as u\n"
                  "from rest_framework.authtoken.models import Token\n"
                  f"for n in range({self.users}):\n"
                  "    user = u().objects.create_user(f'user{n}')\n"
                  "    print('token', Token.objects.create(user=user).key)\n")
        out = subprocess.run([*manage, "shell", "-c", script], env=self.env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        self.tokens = [line.split()[1] for line in out.splitlines() if line.startswith("token ")]
        self.spawn("web", [sys.executable, "-m", "studio.serve", "-b", "127.0.0.1", "-p", str(self.port),
                           "studio.asgi:application"])
        for n in range(workers):
            self.start_worker(f"worker{n}", threads)
        self.spawn("beat", [sys.executable, "-m", "celery", "-A", "studio", "beat", "--loglevel", "INFO"])
        wait_http(f"{self.base}/health", status=200, timeout=60)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.folder / f"{name}-{len(self._logs)}.log"
        self._logs.append(log)
        with log.open("w") as out:
            self.processes[name] = subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=out,
                                                    stderr=subprocess.STDOUT)
        return self.processes[name]

    def start_worker(self, name: str = "worker0", threads: int = 4) -> subprocess.Popen:
        """A ``celery worker`` on the default queue with ``threads`` task threads."""
        return self.spawn(name, [sys.executable, "-m", "celery", "-A", "studio", "worker", "-Q", "default",
                                 "--pool", "threads", "-c", str(threads), "-n", f"{name}-{free_port()}@%h",
                                 "--without-gossip", "--without-mingle", "--loglevel", "INFO"])

    def kill(self, name: str) -> None:
        """SIGKILL: no cleanup runs, as when the OOM killer or a power cut ends a process."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.redis.remove()
        self.postgres.remove()
        if os.environ.get("STUDIO_FAULTS_KEEP"):  # a developer reading what happened
            print(f"fault test logs kept in {self.folder}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- what a user does and sees ------------------------------------------------------------

    def post_job(self, prompt: str, user: int = 0, session: requests.Session | None = None) -> requests.Response:
        client = session or requests
        return client.post(f"{self.base}/api/jobs/", json={"model": MODEL, "prompt": prompt},
                           headers={"Authorization": f"Token {self.tokens[user]}"}, timeout=120)

    def post_jobs(self, prompts: list[str], *, concurrency: int = 1, users: int = 1) -> list[requests.Response]:
        """``POST /api/jobs/`` for each prompt, ``concurrency`` at once, spread over ``users``."""
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda n: self.post_job(prompts[n], n % users), range(len(prompts))))

    def wait_for_submissions(self, count: int, timeout: float = 30) -> None:
        """Until fal has been sent ``count`` jobs."""
        wait_for(lambda: len(self.fal.requests) >= count, timeout, f"{count} submissions to fal", interval=0.05)

    def counts(self) -> dict[str, int]:
        """Jobs per status, read from the database."""
        return dict(self.postgres.sql("SELECT status, count(*) FROM videogen_job GROUP BY status", "studio"))

    def wait_completed(self, jobs: int, timeout: float) -> float:
        """Seconds until ``jobs`` jobs are completed (AssertionError with the logs after ``timeout``)."""
        started = time.monotonic()
        try:
            wait_for(lambda: self.counts().get("completed", 0) >= jobs, timeout,
                     f"{jobs} jobs to complete", interval=0.25)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; jobs: {self.counts()}\n{self.logs()}") from None
        return time.monotonic() - started

    def connections(self) -> int:
        """Connections PostgreSQL holds for the studio's database now."""
        return self.postgres.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'studio'")[0][0]

    def logs(self, lines: int = 40) -> str:
        """The last lines of every process's log (for a failing assertion's message)."""
        parts = []
        for log in self._logs:
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {log.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)

