"""Counting semaphores across every process of the studio: at most ``size`` holders of a
named slot at once (the submits in flight to one provider, say).

A holder's slot is a lease of ``lease_s`` seconds that this process renews while the holder
works (one renewing thread per process), so the slot of a process that dies frees itself
within one lease, not after the longest call it might have made. In the services mode a
slot is a Redis sorted set (member: the holder, score: when its lease ends, by Redis's own
clock), taken and freed with one round trip each; in the embedded mode a dict in this
process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator

from django.conf import settings

logger = logging.getLogger(__name__)

_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
"""
_RENEW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local renewed = redis.call('ZADD', KEYS[1], 'XX', 'CH', now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return renewed
"""

_local: dict[str, dict[str, float]] = {}
_local_lock = threading.Lock()
_scripts: dict[str, object] = {}


def _key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:slot:{name}"


def _redis():
    from runtime.workers import client

    return client()


def _script(source: str):
    client = _redis()
    script = _scripts.get(source)
    if script is None or script.registered_client is not client:
        script = _scripts[source] = client.register_script(source)
    return script


def acquire(name: str, size: int, holder: str, lease_s: float) -> bool:
    """Take one of ``size`` slots called ``name`` for ``holder`` for ``lease_s`` seconds."""
    if settings.STUDIO_EMBEDDED:
        now = time.monotonic()
        with _local_lock:
            holders = _local.setdefault(name, {})
            for other, ends in list(holders.items()):
                if ends <= now:
                    del holders[other]
            if len(holders) >= size:
                return False
            holders[holder] = now + lease_s
            return True
    return bool(_script(_ACQUIRE)(keys=[_key(name)], args=[size, holder, int(lease_s * 1000)]))


def renew(name: str, holder: str, lease_s: float) -> bool:
    """Extend ``holder``'s lease; False when it had run out (the slot may be someone else's)."""
    if settings.STUDIO_EMBEDDED:
        with _local_lock:
            holders = _local.get(name, {})
            if holder not in holders:
                return False
            holders[holder] = time.monotonic() + lease_s
            return True
    return bool(_script(_RENEW)(keys=[_key(name)], args=[holder, int(lease_s * 1000)]))


def release(name: str, holder: str) -> None:
    if settings.STUDIO_EMBEDDED:
        with _local_lock:
            _local.get(name, {}).pop(holder, None)
        return
    _redis().zrem(_key(name), holder)


def holders(name: str) -> int:
    """Slots of ``name`` held now (leases not yet run out)."""
    if settings.STUDIO_EMBEDDED:
        now = time.monotonic()
        with _local_lock:
            return sum(1 for ends in _local.get(name, {}).values() if ends > now)
    client = _redis()
    key = _key(name)
    seconds, micros = client.time()
    return client.zcount(key, seconds * 1000 + micros // 1000, "+inf")


class _Renewer:
    """One thread per process that renews every lease held here, every third of a lease."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, name: str, holder: str, lease_s: float) -> None:
        with self.lock:
            self.held[(name, holder)] = lease_s
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="studio-slot-leases", daemon=True)
                self.thread.start()

    def remove(self, name: str, holder: str) -> None:
        with self.lock:
            self.held.pop((name, holder), None)

    def _run(self) -> None:
        while True:
            with self.lock:
                held = dict(self.held)
            if held:
                for (name, holder), lease_s in held.items():
                    try:
                        renew(name, holder, lease_s)
                    except Exception as exc:  # noqa: BLE001 - Redis down: the lease may run out
                        logger.warning("cannot renew the lease of slot %s: %s", name, exc)
                pause = min(held.values()) / 3
            else:
                pause = 1.0
            time.sleep(pause)


_renewer = _Renewer()


@contextlib.contextmanager
def held(name: str, size: int, lease_s: float) -> Iterator[bool]:
    """Hold one of ``size`` slots ``name`` while the block runs, renewing its lease; yields
    False at once (nothing held) when every slot is taken."""
    holder = uuid.uuid4().hex
    if not acquire(name, size, holder, lease_s):
        yield False
        return
    _renewer.add(name, holder, lease_s)
    try:
        yield True
    finally:
        _renewer.remove(name, holder)
        try:
            release(name, holder)
        except Exception as exc:  # noqa: BLE001 - the lease runs out by itself
            logger.warning("cannot release slot %s: %s", name, exc)
