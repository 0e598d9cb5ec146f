"""``GET /health``: does every configured part of the studio answer?

Answers 200 when they all do, 503 otherwise, with ``failing`` naming the parts that did not.
Parts that are not configured in this mode (Redis in the embedded mode) never fail the
check, and neither does a missing GPU unless ``STUDIO_REQUIRE_GPU`` is set.

Anyone may ask (docker-compose's healthcheck does), but only staff see the details (hosts,
versions, error texts naming host:port); everyone else gets ``{status, failing}``.

Celery workers are counted from the census they write themselves (``runtime.workers``):
one Redis read, so asking many times at once costs a read each, never an inspection.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from runtime import embedded, workers

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


def check_redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"status": NOT_CONFIGURED}
    import redis

    try:
        workers.client().ping()
    except redis.RedisError as exc:
        return {"status": ERROR, "error": f"Redis does not answer: {exc}"}
    return {"status": OK}


def check_workers(redis_status: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    if settings.STUDIO_EMBEDDED:
        return {"status": OK, "embedded": True, "threads": embedded.executor().threads}, {}
    if redis_status != OK:
        return {"status": UNKNOWN, "error": "the broker (Redis) does not answer"}, {}
    found = workers.census()
    if found.error:
        return {"status": UNKNOWN, "error": found.error}, {}
    default = found.consuming("default")
    status = {"status": OK if default else ERROR, "embedded": False, "workers": found.workers,
              "seen_s_ago": found.seen_s_ago}
    if not default:
        status["error"] = "no Celery worker consumes the 'default' queue"
    return status, found.workers


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


def demo_notes() -> dict[str, str]:
    """Backends that run a stand-in for their models here (the local pipeline's tiny random
    model until Krea's weights are loaded), by name, with what to do about it."""
    from model_control import backends

    notes = {}
    for backend in backends.backends():
        note = backend.demo() if backend.missing() is None else None
        if note:
            notes[backend.name] = note
    return notes


def check_gpu(worker_status: dict[str, Any], queues: dict[str, list[str]]) -> dict[str, Any]:
    """The GPU(s), the local pipeline each holds and what runs on it, the realtime sessions,
    and which backends run a demo (``demo``: name -> note; empty when none)."""
    from videogen.local import gpu_worker
    from videogen.local.host import host

    try:
        sessions = realtime_sessions()
    except Exception as exc:  # the database part reports the database
        sessions = {"error": str(exc)[:200]}
    if settings.STUDIO_EMBEDDED:
        report: dict[str, Any] = {"embedded": True, **local_accelerators(), "pipeline": host.describe(),
                                  "sessions": sessions, "demo": demo_notes()}
        available = report["cuda"]
        pipelines = [report["pipeline"]]
    else:
        gpu_workers = sorted(name for name, names in queues.items() if "gpu" in names)
        try:
            states = gpu_worker.worker_states(gpu_workers)
        except Exception as exc:  # the cache is Redis: the redis part reports it
            states = {name: {"error": f"cannot read its state: {exc}"} for name in gpu_workers}
        report = {"embedded": False, "gpu_workers": gpu_workers, "pipelines": states, "sessions": sessions,
                  "demo": demo_notes()}
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
