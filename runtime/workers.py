"""Which Celery workers are alive and which queues each consumes, as the workers say it.

Each worker process (the main process of ``celery worker``) writes one field of a Redis hash
every ``STUDIO_WORKER_HEARTBEAT_S`` seconds: its name, its queues and when it wrote. A reader
(``/health``, a realtime socket asking how many GPU workers there are) reads the hash once,
a single round trip, and counts only the workers heard from within three heartbeats. No
broadcast, no waiting for replies, no thread in the reader. A worker that stops cleanly
removes its field at once; one that is killed ages out.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

logger = logging.getLogger(__name__)


def _key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:workers"


def _client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=settings.HEALTH_TIMEOUT,
                                socket_timeout=settings.HEALTH_TIMEOUT, health_check_interval=30)


_clients: dict[str, Any] = {}


def client():
    """One Redis client per process for the census (its pool keeps the connection)."""
    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = _client()
    return _clients[url]


_scripts: dict[str, object] = {}


def script(source: str):
    """The Lua ``source`` registered on this process's client (``client()``), once per
    client: slots and alarms run theirs through it (each change one round trip)."""
    redis = client()
    found = _scripts.get(source)
    if found is None or found.registered_client is not redis:
        found = _scripts[source] = redis.register_script(source)
    return found


@dataclass(frozen=True)
class Census:
    """The live workers (``name -> queues``) and when they were last heard from, or why not known."""

    workers: dict[str, list[str]] = field(default_factory=dict)
    seen_s_ago: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def consuming(self, queue: str) -> list[str]:
        return sorted(name for name, queues in self.workers.items() if queue in queues)


def stale_after() -> float:
    return 3 * settings.STUDIO_WORKER_HEARTBEAT_S


def census() -> Census:
    """The workers heard from within three heartbeats (one Redis read)."""
    try:
        entries = client().hgetall(_key())
    except Exception as exc:  # noqa: BLE001 - any Redis trouble is an answer, not a crash
        return Census(error=f"cannot read the worker census: {type(exc).__name__}: {exc}")
    now = time.time()
    workers: dict[str, list[str]] = {}
    ages: dict[str, float] = {}
    for name, raw in entries.items():
        try:
            entry = json.loads(raw)
            age = now - float(entry["seen"])
        except (ValueError, KeyError, TypeError):
            continue
        if age <= stale_after():
            key = name.decode() if isinstance(name, bytes) else str(name)
            workers[key] = sorted(entry.get("queues") or [])
            ages[key] = round(max(age, 0.0), 1)
    return Census(workers, ages)


class Heartbeat:
    """Writes this worker's census entry every ``STUDIO_WORKER_HEARTBEAT_S`` until stopped.

    A Redis outage only skips beats: the thread keeps going and the entry comes back with
    the broker."""

    def __init__(self, name: str, queues: list[str]) -> None:
        self.name = name
        self.queues = sorted(queues)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="studio-census", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        entry = json.dumps({"queues": self.queues, "pid": os.getpid(), "seen": time.time()})
        client().hset(_key(), self.name, entry)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001
                logger.warning("worker census: cannot write this worker's entry: %s", exc)
            if self._stop.wait(settings.STUDIO_WORKER_HEARTBEAT_S):
                return

    def stop(self) -> None:
        self._stop.set()
        try:
            client().hdel(_key(), self.name)
        except Exception as exc:  # noqa: BLE001
            logger.warning("worker census: cannot remove this worker's entry: %s", exc)


_heartbeat: Heartbeat | None = None


def _queues_of(consumer) -> list[str]:
    try:
        return [queue.name for queue in consumer.task_consumer.queues]
    except AttributeError:
        return list(consumer.app.amqp.queues.consume_from or consumer.app.amqp.queues)


@worker_ready.connect
def _announce(sender=None, **kwargs) -> None:
    global _heartbeat
    if settings.STUDIO_EMBEDDED or sender is None:
        return
    _heartbeat = Heartbeat(sender.hostname, _queues_of(sender))
    _heartbeat.start()


@worker_shutdown.connect
def _retire(**kwargs) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
