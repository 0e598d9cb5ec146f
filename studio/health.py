"""``GET /health``: does every configured part of the studio answer?

Answers 200 when they all do, 503 otherwise, with ``failing`` naming the parts that did not.
Parts that are not configured in this mode (Redis in the embedded mode) never fail the
check, and neither does a missing GPU unless ``STUDIO_REQUIRE_GPU`` is set.

Anyone may ask (docker-compose's healthcheck does), but only staff see the details (hosts,
versions, error texts naming host:port); everyone else gets ``{status, failing}``.

Celery workers are inspected by one :class:`WorkerMonitor` per process and broker, on its
own thread with its own connection and a timeout, at most every ``HEALTH_CACHE_SECONDS``.
A request reads the monitor's last answer and never waits for an inspection, except the
very first one of a process (at most ``HEALTH_TIMEOUT``), which every concurrent caller
shares. Asking many times at once therefore costs one inspection, not one each.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

OK, ERROR, NOT_CONFIGURED, UNKNOWN = "ok", "error", "not configured", "unknown"


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"status": ERROR, "vendor": connection.vendor, "error": str(exc).strip()[:200]}
    return {"status": OK, "vendor": connection.vendor}


@functools.lru_cache(maxsize=4)
def _redis_client(url: str, timeout: float):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                health_check_interval=30)


def check_redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"status": NOT_CONFIGURED}
    import redis

    try:
        _redis_client(settings.REDIS_URL, settings.HEALTH_TIMEOUT).ping()
    except redis.RedisError as exc:
        return {"status": ERROR, "error": f"Redis does not answer: {exc}"}
    return {"status": OK}


@dataclass
class WorkerSnapshot:
    """What one inspection found: each live worker's queues, or why it could not tell."""

    taken_at: float
    queues: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


class WorkerMonitor:
    """Inspects the Celery workers of one broker, one inspection at a time, in the background."""

    def __init__(self, broker_url: str, transport_options: dict[str, Any], timeout: float, max_age: float):
        self.broker_url = broker_url
        self.transport_options = transport_options
        self.timeout = timeout
        self.max_age = max_age
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._snapshot: WorkerSnapshot | None = None
        self._refreshing = False
        self._app = None

    def snapshot(self, wait: float = 0.0) -> WorkerSnapshot | None:
        """The latest answer (starting a new inspection when it is old); waits only for the first."""
        with self._lock:
            current = self._snapshot
            stale = current is None or time.monotonic() - current.taken_at > self.max_age
            if stale:
                self._start_refresh()
        if current is None and wait > 0:
            self._first.wait(wait)
            current = self._snapshot
        return current

    def fresh(self, timeout: float) -> WorkerSnapshot | None:
        """An inspection begun now (not a cached one), or None if it takes over ``timeout``."""
        asked = time.monotonic()
        deadline = asked + timeout
        while time.monotonic() < deadline:
            with self._lock:
                current = self._snapshot
                if current is not None and current.taken_at >= asked:
                    return current
                self._start_refresh()
            time.sleep(0.05)
        return None

    def _start_refresh(self) -> None:
        """Begin an inspection on its own thread unless one runs; called with ``_lock`` held."""
        if not self._refreshing:
            self._refreshing = True
            threading.Thread(target=self._refresh, name="health-workers", daemon=True).start()

    def _refresh(self) -> None:
        try:
            snapshot = WorkerSnapshot(time.monotonic(), queues=self._inspect())
        except Exception as exc:  # any broker trouble is a health answer, not a crash
            snapshot = WorkerSnapshot(time.monotonic(), error=f"cannot reach the workers: {exc}")
        with self._lock:
            self._snapshot = snapshot
            self._refreshing = False
        self._first.set()

    def _inspect(self) -> dict[str, list[str]]:
        if self._app is None:
            from celery import Celery

            app = Celery("studio-health", broker=self.broker_url, set_as_current=False)
            app.conf.broker_transport_options = self.transport_options
            app.conf.broker_connection_timeout = self.timeout
            app.conf.broker_connection_retry = False
            self._app = app
        with self._app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=self.timeout)
            replies = self._app.control.inspect(timeout=self.timeout, connection=conn).active_queues() or {}
        return {host: sorted(q["name"] for q in queues) for host, queues in replies.items()}


_monitors: dict[tuple[str, str], WorkerMonitor] = {}
_monitors_lock = threading.Lock()


def worker_monitor() -> WorkerMonitor:
    """This process's monitor for the configured broker (``REDIS_URL``)."""
    url = settings.REDIS_URL
    options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    key = (url, options.get("global_keyprefix", ""))
    with _monitors_lock:
        monitor = _monitors.get(key)
        if monitor is None:
            monitor = _monitors[key] = WorkerMonitor(
                url, options, timeout=settings.HEALTH_TIMEOUT / 2,
                max_age=settings.HEALTH_CACHE_SECONDS)
        return monitor


def start_monitor() -> None:
    """Begin the first inspection now (the web process calls this at start-up)."""
    if not settings.STUDIO_EMBEDDED:
        worker_monitor().snapshot()


def check_workers(redis_status: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    if settings.STUDIO_EMBEDDED:
        from studio import embedded

        return {"status": OK, "embedded": True, "threads": embedded.executor().threads}, {}
    if redis_status != OK:
        return {"status": UNKNOWN, "error": "the broker (Redis) does not answer"}, {}
    monitor = worker_monitor()
    snapshot = monitor.snapshot(wait=settings.HEALTH_TIMEOUT)
    if snapshot is None:
        return {"status": UNKNOWN, "error": f"the workers did not answer within {settings.HEALTH_TIMEOUT:g} s"}, {}
    age = time.monotonic() - snapshot.taken_at
    if age > monitor.max_age + 4 * settings.HEALTH_TIMEOUT:
        return {"status": UNKNOWN, "error": f"the last worker inspection is {age:.0f} s old"}, {}
    if snapshot.error:
        return {"status": ERROR, "error": snapshot.error}, {}
    default = [host for host, names in snapshot.queues.items() if "default" in names]
    status = {"status": OK if default else ERROR, "embedded": False, "workers": snapshot.queues,
              "checked_s_ago": round(age, 1)}
    if not default:
        status["error"] = "no Celery worker consumes the 'default' queue"
    return status, snapshot.queues


@functools.cache
def local_accelerators() -> dict[str, Any]:
    """What torch sees in this process (probed once: importing torch takes a while)."""
    if importlib.util.find_spec("torch") is None:
        return {"torch": False, "cuda": False, "devices": []}
    import torch

    devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            devices.append({"name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}"})
    return {"torch": torch.__version__, "cuda": bool(devices), "devices": devices}


def realtime_sessions() -> dict[str, dict[str, int]]:
    """Open realtime sessions by backend and status (``{"local": {"streaming": 1, "queued": 2}}``)."""
    from django.db.models import Count

    from videogen.models import OPEN_SESSION, RealtimeSession

    counts: dict[str, dict[str, int]] = {}
    rows = RealtimeSession.objects.filter(status__in=OPEN_SESSION).values("backend", "status").annotate(n=Count("id"))
    for row in rows:
        counts.setdefault(row["backend"], {})[row["status"]] = row["n"]
    return counts


def check_gpu(worker_status: dict[str, Any], queues: dict[str, list[str]]) -> dict[str, Any]:
    """The GPU(s), the local pipeline each holds and what runs on it, the realtime sessions."""
    from videogen import gpu_worker
    from videogen.pipeline_host import host

    try:
        sessions = realtime_sessions()
    except Exception as exc:  # the database part reports the database
        sessions = {"error": str(exc)[:200]}
    if settings.STUDIO_EMBEDDED:
        report: dict[str, Any] = {"embedded": True, **local_accelerators(), "pipeline": host.describe(),
                                  "sessions": sessions}
        available = report["cuda"]
        pipelines = [report["pipeline"]]
    else:
        gpu_workers = sorted(name for name, names in queues.items() if "gpu" in names)
        try:
            states = gpu_worker.worker_states(gpu_workers)
        except Exception as exc:  # the cache is Redis: the redis part reports it
            states = {name: {"error": f"cannot read its state: {exc}"} for name in gpu_workers}
        report = {"embedded": False, "gpu_workers": gpu_workers, "pipelines": states, "sessions": sessions}
        available = bool(gpu_workers)
        pipelines = [state for state in states.values() if state]
        if worker_status["status"] == UNKNOWN:
            return {"status": UNKNOWN, **report}
    if settings.STUDIO_REQUIRE_GPU and not available:
        return {"status": ERROR, "error": "STUDIO_REQUIRE_GPU is set but no GPU is available", **report}
    if settings.STUDIO_REQUIRE_GPU and pipelines and all(p.get("state") == "failed" for p in pipelines):
        return {"status": ERROR, "error": f"the local pipeline cannot load: {pipelines[0].get('error')}", **report}
    return {"status": OK if available else NOT_CONFIGURED, **report}


def health_report() -> tuple[dict[str, Any], bool]:
    database = check_database()
    redis_part = check_redis()
    workers, queues = check_workers(redis_part["status"])
    gpu = check_gpu(workers, queues)
    parts = {"database": database, "redis": redis_part, "workers": workers, "gpu": gpu}
    failing = [name for name, part in parts.items() if part["status"] in (ERROR, UNKNOWN)
               and (name != "gpu" or settings.STUDIO_REQUIRE_GPU)]
    report = {
        "status": OK if not failing else ERROR,
        "mode": settings.STUDIO_MODE,
        **parts,
        "failing": failing,
        "version": settings.STUDIO_VERSION,
    }
    return report, not failing


@login_not_required
@never_cache
@require_GET
def health(request):
    report, healthy = health_report()
    if not healthy:
        logger.warning("health check failing: %s", ", ".join(report["failing"]))
    if not request.user.is_staff:
        report = {"status": report["status"], "failing": report["failing"]}
    return JsonResponse(report, status=200 if healthy else 503)
