"""Named locks across every process of the studio, whose waiters wake when the lock is free.

``with named_lock("upload:<sha256>", timeout=120):`` holds the lock for at most ``timeout``
seconds (a holder that dies frees it then). In the services mode the lock is a Redis key set
with ``NX``; releasing it pushes one token to a wake-up list that the next waiter blocks on
(``BLPOP``), so a waiter wakes as soon as the lock is released, not at its next poll. In the
embedded mode there is one process: a ``threading.Lock`` per name.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

from django.conf import settings

from runtime import workers


class LockTimeout(TimeoutError):
    """The lock stayed taken for longer than the caller would wait."""


_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()

# A release's wake-up token lives this long when nobody is waiting for it.
WAKE_TOKEN_TTL_S = 5
# Waiters also look again this often, in case the holder died without releasing.
RECHECK_S = 1


@contextlib.contextmanager
def named_lock(name: str, *, timeout: float, wait: float | None = None) -> Iterator[None]:
    """Hold the lock ``name`` (at most ``timeout`` s); wait up to ``wait`` s (default
    ``timeout``) for it, else ``LockTimeout``."""
    wait = timeout if wait is None else wait
    if settings.STUDIO_EMBEDDED:
        with _local_guard:
            lock = _local_locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=wait):
            raise LockTimeout(f"the lock {name} stayed taken for {wait:g} s")
        try:
            yield
        finally:
            lock.release()
        return
    client = workers.client()
    key = f"{settings.REDIS_KEY_PREFIX}:lock:{name}"
    wake = f"{key}:wake"
    holder = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while not client.set(key, holder, nx=True, px=int(timeout * 1000)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(f"the lock {name} stayed taken for {wait:g} s")
        client.blpop([wake], timeout=max(min(remaining, RECHECK_S), 0.01))
    try:
        yield
    finally:
        # Release only our own lock (it may have expired and been taken by someone else).
        if client.get(key) == holder.encode():
            client.delete(key)
        pipe = client.pipeline()
        pipe.rpush(wake, 1)
        pipe.expire(wake, WAKE_TOKEN_TTL_S)
        pipe.execute()
