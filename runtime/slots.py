"""Counting semaphores across every process of the studio: at most ``size`` holders of a
named slot at once (the submits in flight to one provider, say), with a line of waiters.

A holder's slot is a lease of ``lease_s`` seconds that this process renews while the holder
works (one renewing thread per process), so the slot of a process that dies frees itself
within one lease, not after the longest call it might have made.

A caller that finds every slot taken may stand in line (``wait_as``: what it needs to be
woken, a job's id say) instead of coming back on a timer: the holder that releases a slot
hands it straight to the first in line (the slot stays counted, now leased to the waiter's
own holder name) and tells the caller through ``hand_on``, which starts the waiter again;
the waiter then finds the slot already its own. A slot is never free while someone waits
for it, so waiters go first, in order, and nobody polls. A handed slot that is never
picked up (its task lost) frees itself when its lease runs out, and ``hand_free`` (the
periodic sweep) hands slots freed that way to whoever still waits.

In the services mode a slot is a Redis sorted set (member: the holder, score: when its
lease ends, by Redis's own clock) and its line a Redis list, each change one round trip
(a script); in the embedded mode both live in this process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator

from django.conf import settings

from runtime import workers

logger = logging.getLogger(__name__)

# How long an untouched line of waiters is kept (each wait renews it): far longer than any
# wait, short enough that a line nobody serves any more does not stay in Redis for ever.
LINE_TTL_S = 24 * 3600

# Take a slot for ARGV[2]: already its own (handed to it) -> renewed; else a free one; else,
# when ARGV[4] is not empty, ARGV[4] ("holder:what") joins the line. 1 when held.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms + lease, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return 1
end
if ARGV[4] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
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
# Give back ARGV[1]'s slot (none when empty), then hand every free slot to the first in
# line, each leased to the waiter's own holder name. The entries handed ("holder:what").
_RELEASE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[3])
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local handed = {}
while redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) do
  local entry = redis.call('RPOP', KEYS[2])
  if not entry then break end
  local holder = string.match(entry, '^[^:]+')
  redis.call('ZADD', KEYS[1], now_ms + lease, holder)
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  handed[#handed + 1] = entry
end
return handed
"""

# The embedded mode's slots (holder -> lease end) and lines (oldest on the right).
_local: dict[str, dict[str, float]] = {}
_local_lines: dict[str, deque[str]] = {}
_local_lock = threading.Lock()

Handed = tuple[str, str]  # (what the waiter stood in line as, the holder name its slot is leased to)
HandOn = Callable[[str, str], None]


def _key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:slot:{name}"


def _line_key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:slot-line:{name}"



def new_holder() -> str:
    return uuid.uuid4().hex


def _entry(holder: str, what: str) -> str:
    return f"{holder}:{what}"


def _parse(entry: str | bytes) -> Handed:
    text = entry.decode() if isinstance(entry, bytes) else entry
    holder, _, what = text.partition(":")
    return what, holder


def acquire(name: str, size: int, holder: str, lease_s: float, *, wait_as: str | None = None) -> bool:
    """Take one of ``size`` slots called ``name`` for ``holder`` for ``lease_s`` seconds (a
    slot already handed to ``holder`` counts as taken). When none is free and ``wait_as`` is
    given, ``holder`` stands in line with it: a release hands it a slot (see ``release``)."""
    if ":" in holder:
        raise ValueError("a slot holder's name has no ':'")
    if settings.STUDIO_EMBEDDED:
        now = time.monotonic()
        with _local_lock:
            holders = _local.setdefault(name, {})
            for other, ends in list(holders.items()):
                if ends <= now:
                    del holders[other]
            if holder in holders or len(holders) < size:
                holders[holder] = now + lease_s
                return True
            if wait_as is not None:
                _local_lines.setdefault(name, deque()).appendleft(_entry(holder, wait_as))
            return False
    waiting = _entry(holder, wait_as) if wait_as is not None else ""
    return bool(workers.script(_TAKE)(keys=[_key(name), _line_key(name)],
                               args=[size, holder, int(lease_s * 1000), waiting, LINE_TTL_S]))


def renew(name: str, holder: str, lease_s: float) -> bool:
    """Extend ``holder``'s lease; False when it had run out (the slot may be someone else's)."""
    if settings.STUDIO_EMBEDDED:
        with _local_lock:
            holders = _local.get(name, {})
            if holder not in holders:
                return False
            holders[holder] = time.monotonic() + lease_s
            return True
    return bool(workers.script(_RENEW)(keys=[_key(name)], args=[holder, int(lease_s * 1000)]))


def release(name: str, holder: str, size: int, lease_s: float) -> list[Handed]:
    """Give ``holder``'s slot back (``""``: none) and hand every free slot to the first in
    line; returns who was handed one, ``(what it waited as, its holder name)``, in order.
    The caller wakes them; each handed slot is leased for ``lease_s`` seconds meanwhile."""
    if settings.STUDIO_EMBEDDED:
        now = time.monotonic()
        handed: list[Handed] = []
        with _local_lock:
            holders = _local.setdefault(name, {})
            holders.pop(holder, None)
            for other, ends in list(holders.items()):
                if ends <= now:
                    del holders[other]
            line = _local_lines.get(name)
            while line and len(holders) < size:
                what, waiter = _parse(line.pop())
                holders[waiter] = now + lease_s
                handed.append((what, waiter))
        return handed
    entries = workers.script(_RELEASE)(keys=[_key(name), _line_key(name)], args=[holder, size, int(lease_s * 1000)])
    return [_parse(entry) for entry in entries]


def hand_free(name: str, size: int, lease_s: float) -> list[Handed]:
    """Hand the slots that freed themselves (leases that ran out) to whoever waits for one."""
    return release(name, "", size, lease_s)


def holders(name: str) -> int:
    """Slots of ``name`` held now (leases not yet run out), handed ones included."""
    if settings.STUDIO_EMBEDDED:
        now = time.monotonic()
        with _local_lock:
            return sum(1 for ends in _local.get(name, {}).values() if ends > now)
    client = workers.client()
    key = _key(name)
    seconds, micros = client.time()
    return client.zcount(key, seconds * 1000 + micros // 1000, "+inf")


def waiting(name: str) -> int:
    """How many stand in line for a slot of ``name``."""
    if settings.STUDIO_EMBEDDED:
        with _local_lock:
            return len(_local_lines.get(name, ()))
    return workers.client().llen(_line_key(name))


class _Renewer:
    """One thread per process that renews every lease held here, every third of a lease."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
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


def pass_on(name: str, holder: str, size: int, lease_s: float, hand_on: HandOn | None) -> None:
    """Release ``holder``'s slot and wake whoever it went to (``hand_on``); a failure is
    logged, not raised: an unreleased slot frees itself within its lease, and a waiter not
    woken is handed one by the sweep (``hand_free``)."""
    try:
        handed = release(name, holder, size, lease_s)
    except Exception as exc:  # noqa: BLE001 - the lease runs out by itself
        logger.warning("cannot release slot %s: %s", name, exc)
        return
    for what, waiter in handed:
        if hand_on is None:
            continue
        try:
            hand_on(what, waiter)
        except Exception as exc:  # noqa: BLE001 - the sweep hands it again once its lease runs out
            logger.warning("cannot wake %s, handed a slot of %s: %s", what, name, exc)


@contextlib.contextmanager
def held(name: str, size: int, lease_s: float, *, holder: str | None = None, wait_as: str | None = None,
         hand_on: HandOn | None = None) -> Iterator[bool]:
    """Hold one of ``size`` slots ``name`` while the block runs, renewing its lease; yields
    False at once (nothing held) when every slot is taken, having put ``wait_as`` in line if
    given. ``holder``: the name a slot was handed to (from ``hand_on``), so this takes it.
    On the way out the slot goes to the first in line, woken through ``hand_on``."""
    holder = holder or new_holder()
    if not acquire(name, size, holder, lease_s, wait_as=wait_as):
        yield False
        return
    _renewer.add(name, holder, lease_s)
    try:
        yield True
    finally:
        _renewer.remove(name, holder)
        pass_on(name, holder, size, lease_s, hand_on)
