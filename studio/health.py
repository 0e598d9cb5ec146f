"""``GET /health``: does every configured part of the studio answer?

Answers 200 when they all do, 503 otherwise, with ``failing`` naming the parts that did not.
Parts that are not configured in this mode (Redis in the embedded mode) are reported as
such and never fail the check.
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

    timeout = settings.HEALTH_TIMEOUT
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"status": ERROR, "error": f"Redis does not answer: {exc}"}
    finally:
        client.close()
    return {"status": OK}


@functools.lru_cache(maxsize=4)
def _control(broker_url: str):
    """A bare Celery app on ``broker_url`` for remote control (the configured REDIS_URL)."""
    from celery import Celery

    return Celery("studio-health", broker=broker_url, set_as_current=False).control


def worker_queues() -> dict[str, list[str]]:
    """Each live Celery worker's hostname and the queues it consumes."""
    inspect = _control(settings.REDIS_URL).inspect(timeout=settings.HEALTH_TIMEOUT / 2)
    replies = inspect.active_queues() or {}
    return {host: sorted(q["name"] for q in queues) for host, queues in replies.items()}


def check_workers(redis_status: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    if settings.STUDIO_EMBEDDED:
        from studio import embedded

        return {"status": OK, "embedded": True, "threads": embedded.executor().threads}, {}
    if redis_status != OK:
        return {"status": UNKNOWN, "error": "the broker (Redis) does not answer"}, {}
    try:
        queues = worker_queues()
    except Exception as exc:
        return {"status": ERROR, "error": f"cannot reach the workers: {exc}"}, {}
    default = [host for host, names in queues.items() if "default" in names]
    status = {"status": OK if default else ERROR, "embedded": False, "workers": queues}
    if not default:
        status["error"] = "no Celery worker consumes the 'default' queue"
    return status, queues


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


def check_gpu(worker_status: dict[str, Any], queues: dict[str, list[str]]) -> dict[str, Any]:
    if settings.STUDIO_EMBEDDED:
        report: dict[str, Any] = {"embedded": True, **local_accelerators()}
        available = report["cuda"]
    else:
        gpu_workers = sorted(host for host, names in queues.items() if "gpu" in names)
        report = {"embedded": False, "gpu_workers": gpu_workers}
        available = bool(gpu_workers)
        if worker_status["status"] == UNKNOWN:
            return {"status": UNKNOWN, **report}
    if settings.STUDIO_REQUIRE_GPU and not available:
        return {"status": ERROR, "error": "STUDIO_REQUIRE_GPU is set but no GPU is available", **report}
    return {"status": OK if available else NOT_CONFIGURED, **report}


def health_report() -> tuple[dict[str, Any], bool]:
    database = check_database()
    redis_part = check_redis()
    workers, queues = check_workers(redis_part["status"])
    gpu = check_gpu(workers, queues)
    parts = {"database": database, "redis": redis_part, "workers": workers, "gpu": gpu}
    failing = [name for name, part in parts.items() if part["status"] in (ERROR, UNKNOWN)]
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
    return JsonResponse(report, status=200 if healthy else 503)
