"""A Celery worker on queue ``gpu``: the pipeline loaded when the worker starts, its state
published for ``/health``.

- Loading: in the process that runs the tasks (a prefork child, ``worker_process_init``;
  the worker itself with ``--pool solo`` or ``threads``, ``worker_ready``), on a thread of
  its own, so the worker answers at once and a session that comes during the load waits for
  it (its client sees ``loading``). CUDA is never touched in a prefork parent.
  ``STUDIO_PIPELINE_PRELOAD=false`` loads on the first session instead.
- State: every ``HEARTBEAT_S`` the worker writes what ``PipelineHost.describe()`` says (the
  GPU and its memory, the pipeline, what runs, how many ran, out-of-memory errors) to the
  cache (Redis) under ``gpu-worker:<name>``; ``/health`` reads the keys of the GPU workers
  the broker knows.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery.signals import celeryd_init, worker_process_init, worker_ready
from django.conf import settings

logger = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STATE_TTL_S = 45
IN_PROCESS_POOLS = ("solo", "threads", "gevent", "eventlet")

worker: dict[str, Any] = {"name": None, "gpu": False, "in_process": False}
_started = threading.Event()


def state_key(name: str) -> str:
    return f"gpu-worker:{name}"


def state() -> dict[str, Any]:
    from videogen.local.host import host

    return {"worker": worker["name"], "pid": os.getpid(), "updated_at": round(time.time(), 1), **host.describe()}


def publish_state() -> None:
    from django.core.cache import cache

    if worker["name"]:
        cache.set(state_key(worker["name"]), state(), timeout=STATE_TTL_S)


def worker_states(names: list[str]) -> dict[str, dict[str, Any] | None]:
    """What each named GPU worker last published (None: nothing within ``STATE_TTL_S``)."""
    from django.core.cache import cache

    found = cache.get_many([state_key(name) for name in names])
    return {name: found.get(state_key(name)) for name in names}


def start() -> None:
    """Begin loading the pipeline and publishing the state (once per process)."""
    if _started.is_set():
        return
    _started.set()
    from videogen.local.host import host

    if settings.STUDIO_PIPELINE_PRELOAD:
        host.preload()

    def heartbeat() -> None:
        while True:
            try:
                publish_state()
            except Exception:  # Redis away for a moment: /health says the worker is silent
                logger.warning("cannot publish the GPU worker's state", exc_info=True)
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=heartbeat, name="gpu-worker-state", daemon=True).start()


@celeryd_init.connect
def _remember(sender: str | None = None, conf=None, options: dict | None = None, **kwargs) -> None:
    options = options or {}
    queues = options.get("queues") or []
    if isinstance(queues, str):
        queues = [q.strip() for q in queues.split(",")]
    pool = options.get("pool_cls") or options.get("pool") or (conf.worker_pool if conf is not None else "")
    pool_name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    worker.update(name=sender, gpu="gpu" in queues,
                  in_process=any(name in pool_name.lower() for name in IN_PROCESS_POOLS))


@worker_process_init.connect
def _in_pool_process(**kwargs) -> None:
    if worker["gpu"] and not worker["in_process"]:
        start()


@worker_ready.connect
def _in_worker(**kwargs) -> None:
    if worker["gpu"] and worker["in_process"]:
        start()
