"""One pending alarm per name across the studio: whoever wants something to run in ``delay``
seconds sets it only when no alarm of that name is due as soon or sooner.

A provider's poller is woken this way: every submit, every finished run and the sweep ask
for a run at some time, and only the earliest of the requests pending at once becomes a
Celery message. ``claim`` returns the alarm's token (its due time) for the message to carry;
when the message runs it ``clear``\\s the alarm, but only if it is still that one, so a
stale message (one an earlier alarm overtook) leaves the pending one alone and runs as an
extra, harmless run instead of starting a second chain. An alarm whose message was lost
(a broker outage, a worker killed before it ran) lapses ``grace_s`` after it was due, and
the next request sets a new one.

In the services mode an alarm is a Redis key (its value: the due time by Redis's own clock,
in ms), each change one round trip; in the embedded mode alarms live in this process.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from runtime import workers

# Set KEYS[1] to now + ARGV[1] ms (expiring ARGV[2] ms after that) unless it already holds
# a time no more than ARGV[4] ms later and ARGV[3] is empty; returns the time set, or false.
_CLAIM = """
local now = redis.call('TIME')
local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local pending = tonumber(redis.call('GET', KEYS[1]))
if pending and pending <= at + tonumber(ARGV[4]) and ARGV[3] == '' then return false end
redis.call('SET', KEYS[1], string.format('%d', at), 'PX', tonumber(ARGV[1]) + tonumber(ARGV[2]))
return at
"""
_CLEAR = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_local: dict[str, tuple[int, float]] = {}  # name -> (due, in ms; lapses at, monotonic s)
_local_lock = threading.Lock()


def _key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:alarm:{name}"


def claim(name: str, delay_s: float, grace_s: float, *, slack_s: float = 0.0, force: bool = False) -> int | None:
    """Set the alarm ``name`` for ``delay_s`` seconds from now unless one is due by then, or
    at most ``slack_s`` later (``force``: whatever is pending); returns its token, or None
    (the pending alarm covers this request)."""
    delay_ms, grace_ms = max(int(delay_s * 1000), 0), max(int(grace_s * 1000), 1)
    slack_ms = max(int(slack_s * 1000), 0)
    if settings.STUDIO_EMBEDDED:
        now = time.monotonic()
        at = int(now * 1000) + delay_ms
        with _local_lock:
            pending = _local.get(name)
            if not force and pending is not None and pending[1] > now and pending[0] <= at + slack_ms:
                return None
            _local[name] = (at, now + (delay_ms + grace_ms) / 1000)
        return at
    at = workers.script(_CLAIM)(keys=[_key(name)], args=[delay_ms, grace_ms, "1" if force else "", slack_ms])
    return None if at is None else int(at)


def clear(name: str, token: int) -> None:
    """The alarm ``token`` went off: clear it, unless another has replaced it."""
    if settings.STUDIO_EMBEDDED:
        with _local_lock:
            if _local.get(name, (None,))[0] == token:
                del _local[name]
        return
    workers.script(_CLEAR)(keys=[_key(name)], args=[token])


def reset_local() -> None:
    """Forget the embedded mode's alarms (tests)."""
    with _local_lock:
        _local.clear()
