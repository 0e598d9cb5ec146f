"""PostgreSQL and Redis servers of a test's (or a benchmark's) own, on free ports, that it may
stop and start again (a database outage) and whose CPU it can read, never the machine's
shared ones."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import free_port, wait_for

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU time of ``pid`` (user + system), plus its reaped children's and its live
    children's when ``children`` (a postmaster's backends come and go)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    total = utime + stime + (cutime + cstime if children else 0)
    seconds = total / TICKS
    if children:
        for child in _children(pid):
            seconds += cpu_seconds(child, children=True)
    return seconds


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        pass
    return found


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in versions:
        if (folder / name).exists():
            return str(folder / name)
    raise FileNotFoundError(f"{name} (PostgreSQL's server tools) is not installed")


class PostgresServer:
    """``initdb`` + ``pg_ctl`` in a temporary folder, trust auth, on a free port."""

    def __init__(self, max_connections: int = 100) -> None:
        self.port = free_port()
        self.max_connections = max_connections
        self.folder = Path(tempfile.mkdtemp(prefix="studio-pg-"))
        self.data = self.folder / "data"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                     "--no-sync", "-E", "UTF8"]), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   f"-c max_connections={self.max_connections} -c fsync=off -c synchronous_commit=off")
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                                     str(self.folder / "log"), "-w", "start"]), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import psycopg

        wait_for(lambda: psycopg.connect(self.url(), connect_timeout=1).close() or True, 20, "PostgreSQL to start")
        return self

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def sql(self, statement: str, database: str = "postgres") -> list:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """A redis-server on a free port that keeps nothing on disk, or, ``persistent``, keeps an
    append-only file in a folder of its own (as compose's Redis does), so a restart finds
    what was there (queues, unacknowledged messages)."""

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="studio-redis-")) if persistent else None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        storage = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)] \
            if self.folder else ["--appendonly", "no"]
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         *storage], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        wait_for(lambda: redis.Redis(port=self.port, socket_connect_timeout=0.2).ping(), 10, "redis-server start")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def remove(self) -> None:
        self.stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def own_services(max_connections: int = 100) -> Iterator[tuple[PostgresServer, RedisServer]]:
    """A PostgreSQL and a Redis of the caller's own, removed afterwards."""
    postgres = PostgresServer(max_connections).start()
    redis_server = RedisServer().start()
    try:
        yield postgres, redis_server
    finally:
        redis_server.stop()
        postgres.remove()


def wait_seconds(seconds: float) -> None:
    time.sleep(seconds)
